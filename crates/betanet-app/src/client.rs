//! A minimal BAR client over any byte stream: used by tests, benches, the examples and as a
//! reference for the gateway.

use betanet_wire::bar::stream::{frame_head, split_head};
use betanet_wire::bar::{self, Headers, Method};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::AppError;
use crate::server::INLINE_BODY_MAX;

/// A request with no headers.
#[must_use]
pub fn request(method: Method, uri: &str, body: impl Into<Vec<u8>>) -> bar::Request {
    bar::Request {
        method,
        uri: uri.to_owned(),
        headers: Headers::new(),
        body: body.into(),
    }
}

/// Writes `req` (small bodies inline, large ones as raw continuation) and FIN.
pub async fn send_request<S: AsyncWrite + Unpin>(
    stream: &mut S,
    req: &bar::Request,
) -> Result<(), AppError> {
    if req.body.len() <= INLINE_BODY_MAX {
        stream.write_all(&frame_head(&req.encode()?)?).await?;
    } else {
        let head = bar::Request {
            method: req.method.clone(),
            uri: req.uri.clone(),
            headers: req.headers.clone(),
            body: Vec::new(),
        };
        stream.write_all(&frame_head(&head.encode()?)?).await?;
        stream.write_all(&req.body).await?;
    }
    stream.shutdown().await?;
    Ok(())
}

/// Reads a response head; returns it with the continuation bytes already read. The rest of
/// the body is whatever the stream yields until EOF.
pub async fn read_response_head<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<(bar::Response, Bytes), AppError> {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        if let Some((head, used)) = split_head(&buf)? {
            let resp = bar::Response::decode(head)?;
            let rest = buf.split_off(used).freeze();
            return Ok((resp, rest));
        }
        buf.reserve(16 * 1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(AppError::Truncated);
        }
    }
}

/// Reads a whole response; `body` is `b` plus the continuation (at most `max_body` bytes).
pub async fn read_response<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_body: u64,
) -> Result<bar::Response, AppError> {
    let (mut resp, rest) = read_response_head(stream).await?;
    resp.body.extend_from_slice(&rest);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if resp.body.len() as u64 > max_body {
            return Err(AppError::TooLarge { limit: max_body });
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(resp);
        }
        resp.body.extend_from_slice(chunk.get(..n).unwrap_or(&[]));
    }
}

/// One full exchange on `stream`.
pub async fn fetch<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    req: &bar::Request,
    max_body: u64,
) -> Result<bar::Response, AppError> {
    send_request(stream, req).await?;
    read_response(stream, max_body).await
}

/// One exchange over a fresh TCP connection to a [`crate::serve_tcp_bar`] listener.
pub async fn fetch_tcp(
    addr: std::net::SocketAddr,
    req: &bar::Request,
    max_body: u64,
) -> Result<bar::Response, AppError> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let _ = s.set_nodelay(true);
    fetch(&mut s, req, max_body).await
}
