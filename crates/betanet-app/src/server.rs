//! BAR over a byte stream: one request/response exchange per stream (SPEC §10, layout in
//! `betanet_wire::bar::stream`), and a plain-TCP listener that carries one exchange per
//! connection.
//!
//! Server side of an exchange:
//! 1. read `u32be head_len ‖ det-CBOR request head`; a malformed head → 400, a head that does
//!    not arrive within the stall timeout → 503;
//! 2. read the body continuation until the peer's FIN (limit [`crate::Limits::max_body`] →
//!    400; no progress for the stall timeout → 503); unknown methods are answered 400 without
//!    reading the body;
//! 3. dispatch through the [`App`];
//! 4. write the response head (bodies up to [`INLINE_BODY_MAX`] ride inside `b`), then the
//!    streamed body, then FIN. If the peer gives no credit (a write makes no progress) for the
//!    stall timeout, the exchange is aborted without FIN ([`AppError::Aborted`]; on TCP the
//!    connection is reset so a cut body never looks complete).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_wire::bar::stream::{frame_head, split_head};
use betanet_wire::bar::{self, HeaderValue, Method, status};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::timeout;

use crate::app::App;
use crate::body::Body;
use crate::config::AppConfig;
use crate::error::AppError;
use crate::plugin::PluginRegistry;
use crate::request::{PeerInfo, Request, RequestHead};
use crate::response::Response;
use crate::stats::NodeStats;

/// Response bodies up to this size travel inside the head's `b`; larger ones stream raw.
pub const INLINE_BODY_MAX: usize = 64 * 1024;

const READ_CHUNK: usize = 16 * 1024;

async fn write_all_timeout<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    stall: Duration,
) -> Result<(), AppError> {
    // A single write_all may legitimately take long for big chunks on slow links; what the
    // spec bounds is *no progress*, so time each partial write separately.
    let mut rest = data;
    while !rest.is_empty() {
        match timeout(stall, stream.write(rest)).await {
            Err(_) => return Err(AppError::Stalled(stall)),
            Ok(Ok(0)) => return Err(AppError::Io(std::io::ErrorKind::WriteZero.into())),
            Ok(Ok(n)) => rest = rest.get(n..).unwrap_or(&[]),
            Ok(Err(e)) => return Err(e.into()),
        }
    }
    Ok(())
}

fn bar_headers(headers: Vec<(String, String)>) -> bar::Headers {
    let mut out: bar::Headers = Vec::with_capacity(headers.len());
    for (n, v) in headers {
        let n = n.to_ascii_lowercase();
        if let Some(slot) = out.iter_mut().find(|(x, _)| *x == n) {
            slot.1 = HeaderValue::Text(v);
        } else {
            out.push((n, HeaderValue::Text(v)));
        }
    }
    out
}

/// Writes `resp` as a BAR response (head, streamed body, FIN) on `stream`.
pub async fn write_response<S: AsyncWrite + Unpin>(
    stream: &mut S,
    resp: Response,
    stall: Duration,
) -> Result<(), AppError> {
    let Response {
        status,
        mut headers,
        mut body,
    } = resp;
    let len = body.len_hint();
    let inline: Option<Bytes> = match &body {
        Body::Empty => Some(Bytes::new()),
        Body::Bytes(b) if b.len() <= INLINE_BODY_MAX => Some(b.clone()),
        _ => None,
    };
    if inline.is_some() {
        body = Body::Empty;
    }
    if let Some(len) = len {
        let bodiless = status == 204 || status == 304;
        if !bodiless && !headers.iter().any(|(n, _)| n == "content-length") {
            headers.push(("content-length".to_owned(), len.to_string()));
        }
    }
    let head = bar::Response {
        status,
        headers: bar_headers(headers),
        body: inline.map(|b| b.to_vec()).unwrap_or_default(),
    };
    let framed = frame_head(&head.encode()?)?;
    write_all_timeout(stream, &framed, stall).await?;
    let abort = |e: AppError| match e {
        AppError::Io(io) => AppError::Aborted(io),
        other => AppError::Aborted(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            other.to_string(),
        )),
    };
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(AppError::Aborted)?;
        write_all_timeout(stream, &chunk, stall)
            .await
            .map_err(abort)?;
    }
    match timeout(stall, async {
        stream.flush().await?;
        stream.shutdown().await
    })
    .await
    {
        Err(_) => Err(abort(AppError::Stalled(stall))),
        Ok(r) => r.map_err(AppError::Aborted),
    }
}

/// Reads and discards what the peer still sends (bounded: 1 s, 8 MiB), so that closing the
/// socket with unread input does not reset the connection before our answer is read.
async fn drain<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut buf = vec![0u8; READ_CHUNK];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut total = 0usize;
    while total < 8 << 20 {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => break,
        }
    }
}

async fn reply_error<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    msg: &str,
    stall: Duration,
) {
    // Best effort: the exchange already failed; the caller returns that error.
    let _ = write_response(stream, Response::error(status, msg), stall).await;
}

/// Serves one BAR exchange on `stream` (an HTX stream, a TCP connection, an in-memory
/// duplex): request head and body until FIN, dispatch, response head and body, FIN.
pub async fn serve_stream<S>(app: Arc<App>, mut stream: S, peer: PeerInfo) -> Result<(), AppError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let service = app.context().service.clone();
    let _guard = app.stats().stream_guard(&service);
    let result = exchange(&app, &mut stream, peer).await;
    if let Err(e) = &result {
        tracing::debug!(error = %e, "BAR exchange failed");
        // Server-side failures count as errors; peer mistakes (malformed head, body too
        // large) are 400s and were answered as such.
        if matches!(
            e,
            AppError::Aborted(_) | AppError::Io(_) | AppError::Stalled(_)
        ) {
            app.stats().record_error(&service);
        }
    }
    result
}

async fn exchange<S>(app: &App, stream: &mut S, peer: PeerInfo) -> Result<(), AppError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let stall = app.limits.stall_timeout;
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let (decoded, used) = loop {
        let split = split_head(&buf).map(|o| o.map(|(h, used)| (bar::Request::decode(h), used)));
        match split {
            Ok(Some(v)) => break v,
            Ok(None) => {}
            Err(e) => {
                reply_error(stream, status::BAD_REQUEST, "BAR head too large", stall).await;
                return Err(e.into());
            }
        }
        buf.reserve(READ_CHUNK);
        match timeout(stall, stream.read_buf(&mut buf)).await {
            Err(_) => {
                reply_error(
                    stream,
                    status::SERVICE_UNAVAILABLE,
                    "request stalled",
                    stall,
                )
                .await;
                return Err(AppError::Stalled(stall));
            }
            Ok(Ok(0)) if buf.is_empty() => return Ok(()),
            Ok(Ok(0)) => {
                reply_error(stream, status::BAD_REQUEST, "truncated BAR head", stall).await;
                return Err(AppError::Truncated);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    };
    let req = match decoded {
        Ok(r) => r,
        Err(e) => {
            reply_error(stream, status::BAD_REQUEST, "malformed BAR request", stall).await;
            return Err(e.into());
        }
    };
    let started = Instant::now();
    let rest = buf.split_off(used);
    let bar::Request {
        method,
        uri,
        headers,
        body: head_body,
    } = req;
    let head = RequestHead::new(method, &uri, headers, peer);
    let unknown_method = matches!(head.method, Method::Unknown(_));
    let body = if unknown_method {
        Bytes::new()
    } else {
        let max = app.limits.max_body;
        let mut body = BytesMut::with_capacity(head_body.len() + rest.len());
        body.extend_from_slice(&head_body);
        body.extend_from_slice(&rest);
        loop {
            if body.len() as u64 > max {
                app.stats().record_request(
                    &app.context().service,
                    &head.method,
                    400,
                    started.elapsed(),
                );
                reply_error(stream, status::BAD_REQUEST, "request body too large", stall).await;
                drain(stream).await;
                return Err(AppError::TooLarge { limit: max });
            }
            body.reserve(READ_CHUNK);
            match timeout(stall, stream.read_buf(&mut body)).await {
                Err(_) => {
                    // Counted once, as an error, by `serve_stream`.
                    reply_error(
                        stream,
                        status::SERVICE_UNAVAILABLE,
                        "request body stalled",
                        stall,
                    )
                    .await;
                    return Err(AppError::Stalled(stall));
                }
                Ok(Ok(0)) => break,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e.into()),
            }
        }
        body.freeze()
    };
    let resp = app
        .dispatch(Request::new(head, body, app.context().clone()))
        .await;
    write_response(stream, resp, stall).await?;
    if unknown_method {
        drain(stream).await;
    }
    Ok(())
}

/// Accepts TCP connections forever, one BAR exchange per connection (a development and test
/// transport; production sites listen on HTX).
pub async fn serve_tcp_bar(app: Arc<App>, listener: TcpListener) -> std::io::Result<()> {
    serve_tcp_bar_until(app, listener, std::future::pending()).await
}

/// Like [`serve_tcp_bar`] but returns when `shutdown` completes (exchanges in flight finish
/// on their own tasks). At most [`crate::Limits::max_connections`] run at once.
pub async fn serve_tcp_bar_until<F>(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()>,
{
    let sem = Arc::new(Semaphore::new(app.limits.max_connections.max(1)));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            () = &mut shutdown => return Ok(()),
            p = sem.clone().acquire_owned() => p.map_err(std::io::Error::other)?,
        };
        let accepted = tokio::select! {
            () = &mut shutdown => return Ok(()),
            a = listener.accept() => a,
        };
        match accepted {
            Ok((mut sock, addr)) => {
                let _ = sock.set_nodelay(true);
                let app = app.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let _conn = app.stats().connection_guard(&app.context().service);
                    let r = serve_stream(app.clone(), &mut sock, PeerInfo::tcp(addr)).await;
                    if matches!(r, Err(AppError::Aborted(_))) {
                        // Abort visibly: RST instead of a FIN that would look like a complete
                        // (truncated) body.
                        let _ = sock.set_zero_linger();
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// Builds the app from `config` and the plugin `registry` (reporting into `stats`) and serves
/// BAR over TCP on `listener` until `shutdown` completes. What `betanet serve` runs.
pub async fn run_site<F>(
    config: &AppConfig,
    registry: &PluginRegistry,
    stats: Arc<NodeStats>,
    listener: TcpListener,
    shutdown: F,
) -> Result<(), AppError>
where
    F: Future<Output = ()>,
{
    let app = App::from_config(config, registry, stats)?.into_shared();
    tracing::info!(
        addr = ?listener.local_addr().ok(),
        plugins = ?app.plugins(),
        "site server listening (BAR over TCP)"
    );
    serve_tcp_bar_until(app, listener, shutdown).await?;
    Ok(())
}
