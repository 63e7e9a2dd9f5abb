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
use std::task::Poll;
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
/// First read buffer of an exchange: request heads are small, and a stream read zeroes the
/// spare capacity it is handed, so buffers start small and double up to [`READ_CHUNK`].
const FIRST_READ: usize = 1024;

/// Makes room for the next read: at least a quarter of [`FIRST_READ`] spare, growing
/// geometrically (so a large body still arrives in [`READ_CHUNK`] reads).
fn grow_for_read(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < FIRST_READ / 4 {
        buf.reserve(buf.len().clamp(FIRST_READ, READ_CHUNK));
    }
}

/// `timeout(stall, fut)`, but no timer is armed when `fut` is ready at its first poll (the
/// usual case for stream reads and writes whose data or credit is already there): a request
/// then costs no clock read and no timer entry per read and write.
async fn stall_timeout<F: Future>(
    stall: Duration,
    fut: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    let mut fut = std::pin::pin!(fut);
    match std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await {
        Poll::Ready(v) => Ok(v),
        // Boxed: a timer entry is large, and most exchanges never need one.
        Poll::Pending => Box::pin(timeout(stall, fut)).await,
    }
}

async fn write_all_timeout<S: AsyncWrite + Unpin>(
    stream: &mut S,
    data: &[u8],
    stall: Duration,
) -> Result<(), AppError> {
    // A single write_all may legitimately take long for big chunks on slow links; what the
    // spec bounds is *no progress*, so time each partial write separately.
    let mut rest = data;
    while !rest.is_empty() {
        match stall_timeout(stall, stream.write(rest)).await {
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
///
/// The head is encoded when called; the returned future holds the framed head and, for a
/// streamed or large body only, a boxed body pump — so it stays small (servers keep one per
/// exchange in flight).
pub fn write_response<'a, S: AsyncWrite + Unpin>(
    stream: &'a mut S,
    resp: Response,
    stall: Duration,
) -> impl Future<Output = Result<(), AppError>> + 'a {
    let prepared = frame_response(resp);
    async move {
        let (framed, body) = prepared?;
        write_all_timeout(stream, &framed, stall).await?;
        drop(framed);
        if let Some(body) = body {
            Box::pin(write_body(stream, body, stall)).await?;
        }
        match stall_timeout(stall, async {
            stream.flush().await?;
            stream.shutdown().await
        })
        .await
        {
            Err(_) => Err(abort(AppError::Stalled(stall))),
            Ok(r) => r.map_err(AppError::Aborted),
        }
    }
}

/// A failure after the head went out: the exchange is aborted, never finished cleanly.
fn abort(e: AppError) -> AppError {
    match e {
        AppError::Io(io) => AppError::Aborted(io),
        other => AppError::Aborted(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            other.to_string(),
        )),
    }
}

/// The framed response head (bodies up to [`INLINE_BODY_MAX`] inside it) and the body still
/// to stream after it, if any.
fn frame_response(resp: Response) -> Result<(Vec<u8>, Option<Body>), AppError> {
    let Response {
        status,
        mut headers,
        body,
    } = resp;
    let len = body.len_hint();
    let inline: Option<Bytes> = match &body {
        Body::Empty => Some(Bytes::new()),
        Body::Bytes(b) if b.len() <= INLINE_BODY_MAX => Some(b.clone()),
        _ => None,
    };
    let rest = if inline.is_some() { None } else { Some(body) };
    if let Some(len) = len {
        let bodiless = status == 204 || status == 304;
        if !bodiless && !headers.iter().any(|(n, _)| n == "content-length") {
            headers.push(("content-length".to_owned(), len.to_string()));
        }
    }
    // The direct encoder writes the framed head (inline body included) in one buffer; the
    // reference codec decides the rare cases it declines (non-ASCII header names).
    let framed = match crate::barcodec::encode_response_framed(
        status,
        &headers,
        inline.as_deref().unwrap_or_default(),
    ) {
        Some(f) => f,
        None => {
            let head = bar::Response {
                status,
                headers: bar_headers(headers),
                body: inline.map(|b| b.to_vec()).unwrap_or_default(),
            };
            frame_head(&head.encode()?)?
        }
    };
    Ok((framed, rest))
}

/// Streams a body that did not fit in the head.
async fn write_body<S: AsyncWrite + Unpin>(
    stream: &mut S,
    mut body: Body,
    stall: Duration,
) -> Result<(), AppError> {
    while let Some(chunk) = body.next_chunk().await {
        let chunk = chunk.map_err(AppError::Aborted)?;
        write_all_timeout(stream, &chunk, stall)
            .await
            .map_err(abort)?;
    }
    Ok(())
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
    // Best effort: the exchange already failed; the caller returns that error. Boxed: this
    // rare path would otherwise enlarge every exchange's future.
    let _ = Box::pin(write_response(stream, Response::error(status, msg), stall)).await;
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
    let mut buf = BytesMut::with_capacity(FIRST_READ);
    let (decoded, used) = loop {
        let split = split_head(&buf).map(|o| {
            o.map(|(h, used)| {
                let req = match crate::barcodec::decode_request(h) {
                    Some(r) => Ok(r),
                    None => bar::Request::decode(h),
                };
                (req, used)
            })
        });
        match split {
            Ok(Some(v)) => break v,
            Ok(None) => {}
            Err(e) => {
                reply_error(stream, status::BAD_REQUEST, "BAR head too large", stall).await;
                return Err(e.into());
            }
        }
        grow_for_read(&mut buf);
        match stall_timeout(stall, stream.read_buf(&mut buf)).await {
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
        let mut body = if head_body.is_empty() {
            rest
        } else {
            let mut b = BytesMut::with_capacity(head_body.len() + rest.len());
            b.extend_from_slice(&head_body);
            b.extend_from_slice(&rest);
            b
        };
        loop {
            if body.len() as u64 > max {
                app.stats().record_request(
                    &app.context().service,
                    &head.method,
                    400,
                    started.elapsed(),
                );
                reply_error(stream, status::BAD_REQUEST, "request body too large", stall).await;
                Box::pin(drain(stream)).await;
                return Err(AppError::TooLarge { limit: max });
            }
            grow_for_read(&mut body);
            match stall_timeout(stall, stream.read_buf(&mut body)).await {
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
        Box::pin(drain(stream)).await;
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
