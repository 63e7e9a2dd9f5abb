//! HTTP ↔ BAR mapping (SPEC §10) and the streaming exchange with the site.
//!
//! Request: method (HTTP `DELETE` ↔ BAR `DEL`), URI (path + query when `forward_path`, else
//! the configured path), headers lowercased with hop-by-hop headers dropped and the ticket
//! (cookie `__Host-bn1`, query/form `bn1`) stripped; repeated headers are joined (`, `, or `; `
//! for `cookie`); non-UTF-8 values travel as bytes. The head goes out as
//! `u32be len ‖ det-CBOR {m,u,h,b}` with `b` empty, then the body streams raw, then FIN.
//! Response: `{s,h,b}` → status + headers, body = `b` ‖ the rest of the stream.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use betanet_ticket::ticket::{COOKIE_NAME, PARAM_NAME};
use betanet_wire::bar::{self, HeaderValue as BarValue, Method};
use bytes::{Bytes, BytesMut};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::upstream::BoxSiteStream;

/// The body type of every response the gateway produces.
pub type GwBody = http_body_util::combinators::BoxBody<Bytes, io::Error>;

/// A full body from bytes.
pub fn full(b: impl Into<Bytes>) -> GwBody {
    http_body_util::Full::new(b.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A streaming body fed by a bounded channel; an `Err` item aborts the response (HTTP/1.1:
/// connection closed; HTTP/2: RST_STREAM).
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    exact_len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact_len {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fn is_hop_by_hop(name: &str, connection_listed: &[String]) -> bool {
    HOP_BY_HOP.contains(&name) || connection_listed.iter().any(|c| c == name)
}

fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Removes the `__Host-bn1` cookie from a `Cookie` value; `None` when nothing is left.
pub fn strip_ticket_cookie(value: &str) -> Option<String> {
    let kept: Vec<&str> = value
        .split(';')
        .map(|p| p.trim_matches([' ', '\t']))
        .filter(|p| !p.is_empty())
        .filter(|p| {
            p.split_once('=')
                .is_none_or(|(n, _)| n.trim_matches([' ', '\t']) != COOKIE_NAME)
        })
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("; "))
    }
}

/// Removes `bn1=` parameters from a query string or form body; `None` when nothing is left.
pub fn strip_ticket_param(form: &str) -> Option<String> {
    let kept: Vec<&str> = form
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| p.split('=').next() != Some(PARAM_NAME))
        .collect();
    if kept.is_empty() {
        None
    } else {
        Some(kept.join("&"))
    }
}

/// Builds the BAR request head (`b` empty; the body streams after it).
pub fn request_head(
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    forward_path: bool,
    upstream_path: &str,
) -> bar::Request {
    let m = if method == http::Method::DELETE {
        Method::Del
    } else {
        Method::parse(method.as_str())
    };
    let u = if forward_path {
        let path = uri.path();
        match uri.query().and_then(strip_ticket_param) {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        }
    } else {
        upstream_path.to_owned()
    };
    let listed = connection_tokens(headers);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for (name, value) in headers {
        let n = name.as_str(); // already lowercase in the http crate
        if is_hop_by_hop(n, &listed) {
            continue;
        }
        let mut v = value.as_bytes().to_vec();
        if name == http::header::COOKIE {
            match value.to_str().ok().map(strip_ticket_cookie) {
                Some(Some(s)) => v = s.into_bytes(),
                Some(None) => continue,
                None => {}
            }
        }
        match out.iter_mut().find(|(k, _)| k == n) {
            Some((_, existing)) => {
                existing.extend_from_slice(if n == "cookie" { b"; " } else { b", " });
                existing.extend_from_slice(&v);
            }
            None => out.push((n.to_owned(), v)),
        }
    }
    if let Some(a) = uri.authority()
        && !out.iter().any(|(k, _)| k == "host")
    {
        out.push(("host".to_owned(), a.as_str().as_bytes().to_vec()));
    }
    let headers = out
        .into_iter()
        .map(|(k, v)| {
            let value = match String::from_utf8(v) {
                Ok(s) => BarValue::Text(s),
                Err(e) => BarValue::Bytes(e.into_bytes()),
            };
            (k, value)
        })
        .collect();
    bar::Request {
        method: m,
        uri: u,
        headers,
        body: Vec::new(),
    }
}

use betanet_wire::bar::fast::{HeadReader, put_head as cbor_head, put_text as cbor_text};

/// The request head of [`request_head`], already encoded and framed for the stream
/// (`u32be len ‖ det-CBOR {b, h, m, u}`), written straight into one buffer: no intermediate
/// `bar::Request`, CBOR value tree or per-header `String`s (this runs once per forwarded
/// request). Byte-identical to `frame_head(&request_head(..).encode()?)` (property-tested).
/// `None` when the head exceeds [`bar::stream::MAX_HEAD_LEN`].
pub fn request_head_framed(
    method: &http::Method,
    uri: &http::Uri,
    headers: &HeaderMap,
    forward_path: bool,
    upstream_path: &str,
) -> Option<Vec<u8>> {
    // BAR spells DELETE `DEL`; every other method keeps its text (`Method::parse` ∘ `as_str`).
    let m = if method == http::Method::DELETE {
        "DEL"
    } else {
        method.as_str()
    };
    let listed = if headers.contains_key(http::header::CONNECTION) {
        connection_tokens(headers)
    } else {
        Vec::new()
    };
    // (name, value); values borrowed unless joined or stripped.
    let mut entries: Vec<(&str, std::borrow::Cow<'_, [u8]>)> =
        Vec::with_capacity(headers.keys_len() + 1);
    for name in headers.keys() {
        let n = name.as_str();
        if is_hop_by_hop(n, &listed) {
            continue;
        }
        let is_cookie = name == http::header::COOKIE;
        let mut joined: Option<std::borrow::Cow<'_, [u8]>> = None;
        for value in headers.get_all(name) {
            let v: std::borrow::Cow<'_, [u8]> = if is_cookie {
                match value.to_str().ok().map(strip_ticket_cookie) {
                    Some(Some(s)) => std::borrow::Cow::Owned(s.into_bytes()),
                    Some(None) => continue,
                    None => std::borrow::Cow::Borrowed(value.as_bytes()),
                }
            } else {
                std::borrow::Cow::Borrowed(value.as_bytes())
            };
            joined = Some(match joined {
                None => v,
                Some(prev) => {
                    let mut j = prev.into_owned();
                    j.extend_from_slice(if is_cookie { b"; " } else { b", " });
                    j.extend_from_slice(&v);
                    std::borrow::Cow::Owned(j)
                }
            });
        }
        if let Some(v) = joined {
            entries.push((n, v));
        }
    }
    if let Some(a) = uri.authority()
        && !entries.iter().any(|(k, _)| *k == "host")
    {
        entries.push(("host", std::borrow::Cow::Borrowed(a.as_str().as_bytes())));
    }
    // Deterministic CBOR orders map keys by their encoded bytes: for text keys that is
    // shorter first, then bytewise.
    entries.sort_unstable_by(|a, b| a.0.len().cmp(&b.0.len()).then_with(|| a.0.cmp(b.0)));
    let mut out = Vec::with_capacity(
        96 + uri.path().len()
            + uri.query().map_or(0, str::len)
            + entries
                .iter()
                .map(|(k, v)| k.len() + v.len() + 6)
                .sum::<usize>(),
    );
    out.extend_from_slice(&[0; 4]);
    cbor_head(&mut out, 5, 4);
    // "b": empty bytes (the body streams after the head).
    out.extend_from_slice(&[0x61, b'b', 0x40]);
    out.extend_from_slice(&[0x61, b'h']);
    cbor_head(&mut out, 5, entries.len() as u64);
    for (k, v) in &entries {
        cbor_text(&mut out, k.as_bytes());
        if std::str::from_utf8(v).is_ok() {
            cbor_text(&mut out, v);
        } else {
            cbor_head(&mut out, 2, v.len() as u64);
            out.extend_from_slice(v);
        }
    }
    out.extend_from_slice(&[0x61, b'm']);
    cbor_text(&mut out, m.as_bytes());
    out.extend_from_slice(&[0x61, b'u']);
    if forward_path {
        let path = uri.path();
        match uri.query().and_then(strip_ticket_param) {
            Some(q) => {
                cbor_head(&mut out, 3, (path.len() + 1 + q.len()) as u64);
                out.extend_from_slice(path.as_bytes());
                out.push(b'?');
                out.extend_from_slice(q.as_bytes());
            }
            None => cbor_text(&mut out, path.as_bytes()),
        }
    } else {
        cbor_text(&mut out, upstream_path.as_bytes());
    }
    let len = out.len() - 4;
    if len > bar::stream::MAX_HEAD_LEN {
        return None;
    }
    let len = u32::try_from(len).ok()?;
    out.get_mut(..4)?.copy_from_slice(&len.to_be_bytes());
    Some(out)
}

/// Maps a BAR response head to an HTTP status and headers. Invalid names/values are dropped;
/// a status that is not a final HTTP status is `None` (the caller answers 502).
pub fn response_head(resp: &bar::Response) -> Option<(StatusCode, HeaderMap, Option<u64>)> {
    let status = StatusCode::from_u16(resp.status).ok()?;
    if status.is_informational() {
        return None;
    }
    let mut map = HeaderMap::new();
    for (name, value) in &resp.headers {
        if HOP_BY_HOP.contains(&name.as_str()) {
            continue;
        }
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        let raw: &[u8] = match value {
            BarValue::Text(t) => t.as_bytes(),
            BarValue::Bytes(b) => b,
        };
        if let Ok(v) = HeaderValue::from_bytes(raw) {
            map.append(n, v);
        }
    }
    let len = map
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Some((status, map, len))
}

/// Decodes a BAR response head of the usual shape (a canonical map of exactly `b`, `h`, `s`)
/// without building a CBOR value tree; `None` means "ask the strict reference decoder"
/// (`bar::Response::decode`), which then gives the error or handles extra keys. Whatever this
/// accepts, the reference accepts with the same result (property-tested).
pub fn decode_response(buf: &[u8]) -> Option<bar::Response> {
    bar::fast::decode_response(buf)
}

/// HTTP parts of a response: status, headers, `content-length` if any, the head's `b`.
pub type ResponseParts = (StatusCode, HeaderMap, Option<u64>, Bytes);

/// Maps a BAR response head straight to HTTP parts, without intermediate strings: header
/// values and the body are slices of `head` (no copy). Equal to [`response_head`] of the
/// decoded head (and its `b`) whenever it returns `Some`; `None` when [`decode_response`]
/// would decline or the status is not a final HTTP status — the caller then takes the
/// reference path ([`response_parts`]).
pub fn response_parts_fast(head: &Bytes) -> Option<ResponseParts> {
    let mut r = HeadReader::new(head);
    if r.head(5)? != 3 {
        return None;
    }
    let mut prev = None;
    if r.key(&mut prev)? != "b" {
        return None;
    }
    let n = usize::try_from(r.head(2)?).ok()?;
    let start = r.pos();
    r.take(n)?;
    let body = head.slice(start..r.pos());
    if r.key(&mut prev)? != "h" {
        return None;
    }
    let n = r.header_count()?;
    let mut map = HeaderMap::with_capacity(n);
    let mut hprev = None;
    for _ in 0..n {
        let (name, _, raw) = r.header(&mut hprev)?;
        if HOP_BY_HOP.contains(&name) {
            continue;
        }
        let Ok(hn) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        // `raw` is a slice of `head`: share it instead of copying.
        let vstart = r.pos() - raw.len();
        if let Ok(v) = HeaderValue::from_maybe_shared(head.slice(vstart..r.pos())) {
            map.append(hn, v);
        }
    }
    if r.key(&mut prev)? != "s" {
        return None;
    }
    let status = u16::try_from(r.head(0)?).ok()?;
    if !r.at_end() {
        return None;
    }
    let status = StatusCode::from_u16(status).ok()?;
    if status.is_informational() {
        return None;
    }
    let len = map
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    Some((status, map, len, body))
}

/// HTTP parts of a BAR response head: [`response_parts_fast`], else the strict reference
/// decoder and [`response_head`]. `None`: not valid BAR, or not a final HTTP status.
pub fn response_parts(head: &Bytes) -> Option<ResponseParts> {
    if let Some(p) = response_parts_fast(head) {
        return Some(p);
    }
    let resp = bar::Response::decode(head).ok()?;
    let (status, headers, len) = response_head(&resp)?;
    Some((status, headers, len, Bytes::from(resp.body)))
}

/// Why an exchange failed before the response started.
#[derive(Debug)]
pub enum ExchangeError {
    /// Opening the stream, writing the head or reading the response head failed.
    Upstream(io::Error),
    /// The site's response head was not valid BAR.
    BadResponse,
}

/// Sizes and timers of one exchange.
#[derive(Clone, Copy, Debug)]
pub struct ExchangeLimits {
    /// Longest pause between request-body chunks.
    pub body_timeout: Duration,
    /// Time until the response head.
    pub response_timeout: Duration,
}

const CHUNK: usize = 64 * 1024;
/// Read size while waiting for the response head (small responses fit in one read).
const HEAD_READ: usize = 4 * 1024;
/// First read of a response head (on the stack).
const FIRST_HEAD_READ: usize = 512;

/// Runs one BAR exchange on `stream`: sends `framed` (the framed request head, see
/// [`request_head_framed`]) and streams `body`, returns the HTTP response whose body streams
/// from the site. `Err` means nothing was sent to the client yet (answer 502).
pub async fn exchange<B>(
    mut stream: BoxSiteStream,
    framed: Vec<u8>,
    body: B,
    limits: ExchangeLimits,
    started: Instant,
    bodyless: bool,
    latency: &prometheus_client::metrics::histogram::Histogram,
) -> Result<Response<GwBody>, ExchangeError>
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (abort_tx, abort_rx) = tokio::sync::oneshot::channel::<()>();
    let body_timeout = limits.body_timeout;
    if body.is_end_stream() {
        // No request body (GET and friends): write the head and FIN inline — no pump task,
        // no split of the stream.
        stream
            .write_all(&framed)
            .await
            .map_err(ExchangeError::Upstream)?;
        stream.shutdown().await.map_err(ExchangeError::Upstream)?;
        drop(abort_tx);
        return read_response(stream, None, abort_rx, limits, started, bodyless, latency).await;
    }
    let (rd, mut wr) = tokio::io::split(stream);
    let pump = tokio::spawn(async move {
        let mut body = body;
        let r: io::Result<()> = async {
            wr.write_all(&framed).await?;
            loop {
                let next = tokio::time::timeout(body_timeout, body.frame())
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "request body timeout"))?;
                match next {
                    None => break,
                    Some(Err(e)) => {
                        return Err(io::Error::other(format!("request body: {e}")));
                    }
                    Some(Ok(f)) => {
                        if let Ok(d) = f.into_data() {
                            wr.write_all(&d).await?;
                        }
                    }
                }
            }
            wr.shutdown().await
        }
        .await;
        if r.is_err() {
            let _ = abort_tx.send(());
        }
        // Keep the write half alive until the exchange ends so the site does not see an
        // early FIN on failure; dropping `wr` here is fine on success.
        r
    });
    read_response(rd, Some(pump), abort_rx, limits, started, bodyless, latency).await
}

type Pump = tokio::task::JoinHandle<io::Result<()>>;

async fn read_response<R>(
    mut rd: R,
    pump: Option<Pump>,
    mut abort_rx: tokio::sync::oneshot::Receiver<()>,
    limits: ExchangeLimits,
    started: Instant,
    bodyless: bool,
    latency: &prometheus_client::metrics::histogram::Histogram,
) -> Result<Response<GwBody>, ExchangeError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let abort_pump = |p: &Option<Pump>| {
        if let Some(p) = p {
            p.abort();
        }
    };
    let mut buf = BytesMut::new();
    // Reads go through an initialised buffer: `read_buf` into spare capacity would make the
    // stream zero the whole spare capacity on every read (`ReadBuf::initialize_unfilled`).
    // The first read uses a small one (a typical response head fits: no large zeroing or
    // allocation per request); a larger head continues through a `HEAD_READ` buffer.
    let mut first = [0u8; FIRST_HEAD_READ];
    let mut more: Vec<u8> = Vec::new();
    let read_head = async {
        loop {
            if let Some((_, used)) =
                bar::stream::split_head(&buf).map_err(|_| ExchangeError::BadResponse)?
            {
                let rest = buf.split_off(used);
                // `buf` is now the 4 length bytes and the head.
                let framed = std::mem::take(&mut buf).freeze();
                let head = framed
                    .get(4..)
                    .map(|h| framed.slice_ref(h))
                    .unwrap_or_default();
                return Ok((head, rest));
            }
            let tmp: &mut [u8] = if buf.is_empty() {
                &mut first
            } else {
                if more.is_empty() {
                    more = vec![0u8; HEAD_READ];
                }
                &mut more
            };
            let n = rd.read(tmp).await.map_err(ExchangeError::Upstream)?;
            buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
            if n == 0 {
                return Err(ExchangeError::Upstream(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "site closed before the response head",
                )));
            }
        }
    };
    let (head, rest) = match tokio::time::timeout(limits.response_timeout, read_head).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            abort_pump(&pump);
            return Err(e);
        }
        Err(_) => {
            abort_pump(&pump);
            return Err(ExchangeError::Upstream(io::Error::new(
                io::ErrorKind::TimedOut,
                "site response timeout",
            )));
        }
    };
    latency.observe(started.elapsed().as_secs_f64());
    let Some((status, headers, exact_len, first)) = response_parts(&head) else {
        abort_pump(&pump);
        return Err(ExchangeError::BadResponse);
    };
    drop(head);
    let exact_len = if bodyless { None } else { exact_len };
    let rest = rest.freeze();
    let complete = match exact_len {
        Some(n) => first.len() as u64 + rest.len() as u64 == n,
        None => bodyless,
    };
    if pump.is_none() && complete {
        // Small response already complete: no streaming task needed.
        let body = if rest.is_empty() {
            first
        } else if first.is_empty() {
            rest
        } else {
            let mut b = BytesMut::with_capacity(first.len() + rest.len());
            b.extend_from_slice(&first);
            b.extend_from_slice(&rest);
            b.freeze()
        };
        let mut r = Response::new(full(body));
        *r.status_mut() = status;
        *r.headers_mut() = headers;
        return Ok(r);
    }
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(8);
    tokio::spawn(async move {
        let mut sent: u64 = 0;
        for b in [first, rest] {
            if !b.is_empty() {
                sent += b.len() as u64;
                if tx.send(Ok(b)).await.is_err() {
                    abort_pump(&pump);
                    return;
                }
            }
        }
        // Initialised once (see above); each chunk is copied out at its real length.
        let mut buf = vec![0u8; CHUNK];
        let mut abort_armed = true;
        loop {
            let r = tokio::select! {
                r = rd.read(&mut buf) => r,
                a = &mut abort_rx, if abort_armed => match a {
                    // The request side failed: abort the response too.
                    Ok(()) => Err(io::Error::other("request side failed")),
                    // The request side finished normally.
                    Err(_) => {
                        abort_armed = false;
                        continue;
                    }
                },
            };
            match r {
                Ok(0) => {
                    if exact_len.is_some_and(|n| n != sent) {
                        let _ = tx
                            .send(Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                "site stream ended before content-length",
                            )))
                            .await;
                    }
                    break;
                }
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(buf.get(..n).unwrap_or_default());
                    sent += chunk.len() as u64;
                    if tx.send(Ok(chunk)).await.is_err() {
                        abort_pump(&pump);
                        return;
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    abort_pump(&pump);
                    return;
                }
            }
        }
        // The response is complete; the request side may still be finishing.
        if let Some(p) = pump {
            let _ = p.await;
        }
    });
    let mut builder = Response::builder().status(status);
    if let Some(h) = builder.headers_mut() {
        *h = headers;
    }
    let body = ChannelBody { rx, exact_len };
    builder
        .body(body.boxed())
        .map_err(|_| ExchangeError::BadResponse)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    #[test]
    fn strips_ticket() {
        assert_eq!(
            strip_ticket_cookie("a=b; __Host-bn1=xyz; c=d").as_deref(),
            Some("a=b; c=d")
        );
        assert_eq!(strip_ticket_cookie("__Host-bn1=xyz"), None);
        assert_eq!(
            strip_ticket_param("a=1&bn1=zz&b=2").as_deref(),
            Some("a=1&b=2")
        );
        assert_eq!(strip_ticket_param("bn1=zz"), None);
    }

    #[test]
    fn head_mapping() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.insert("x-keep", HeaderValue::from_static("2"));
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        h.insert("cookie", HeaderValue::from_static("__Host-bn1=abc; s=1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let uri: http::Uri = "/p/q?x=1&bn1=t".parse().unwrap();
        let r = request_head(&http::Method::DELETE, &uri, &h, true, "/");
        assert_eq!(r.method, Method::Del);
        assert_eq!(r.uri, "/p/q?x=1");
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert!(!names.contains(&"x-drop") && !names.contains(&"connection"));
        assert!(!names.contains(&"transfer-encoding"));
        assert_eq!(
            bar::header(&r.headers, "accept"),
            Some(&BarValue::Text("a, b".into()))
        );
        assert_eq!(
            bar::header(&r.headers, "cookie"),
            Some(&BarValue::Text("s=1".into()))
        );
        let r2 = request_head(&http::Method::GET, &uri, &h, false, "/fixed");
        assert_eq!(r2.uri, "/fixed");
    }

    fn reference_framed(
        m: &http::Method,
        uri: &http::Uri,
        h: &HeaderMap,
        forward_path: bool,
    ) -> Vec<u8> {
        let head = request_head(m, uri, h, forward_path, "/fixed");
        bar::stream::frame_head(&head.encode().unwrap()).unwrap()
    }

    #[test]
    fn framed_head_matches_the_reference_encoder() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-drop"));
        h.insert("x-drop", HeaderValue::from_static("1"));
        h.append("accept", HeaderValue::from_static("a"));
        h.append("accept", HeaderValue::from_static("b"));
        h.append("cookie", HeaderValue::from_static("__Host-bn1=abc; s=1"));
        h.append("cookie", HeaderValue::from_static("t=2"));
        h.insert("x-bin", HeaderValue::from_bytes(b"\xff\xfe").unwrap());
        h.insert(
            "x-a-very-long-header-name-over-24-bytes",
            HeaderValue::from_static("v"),
        );
        let uri: http::Uri = "http://example.test/p/q?x=1&bn1=t".parse().unwrap();
        for m in [http::Method::GET, http::Method::DELETE, http::Method::PATCH] {
            for fp in [true, false] {
                let fast = request_head_framed(&m, &uri, &h, fp, "/fixed").unwrap();
                assert_eq!(fast, reference_framed(&m, &uri, &h, fp));
            }
        }
        // The decoded head carries the mapping (host from the authority, joined cookies).
        let fast = request_head_framed(&http::Method::DELETE, &uri, &h, true, "/").unwrap();
        let (head, used) = bar::stream::split_head(&fast).unwrap().unwrap();
        assert_eq!(used, fast.len());
        let r = bar::Request::decode(head).unwrap();
        assert_eq!(r.method, Method::Del);
        assert_eq!(r.uri, "/p/q?x=1");
        assert_eq!(
            bar::header(&r.headers, "cookie"),
            Some(&BarValue::Text("s=1; t=2".into()))
        );
        assert_eq!(
            bar::header(&r.headers, "host"),
            Some(&BarValue::Text("example.test".into()))
        );
        assert_eq!(
            bar::header(&r.headers, "x-bin"),
            Some(&BarValue::Bytes(vec![0xff, 0xfe]))
        );
    }

    proptest::proptest! {
        #[test]
        fn framed_head_equals_reference(
            method in proptest::sample::select(vec!["GET", "POST", "PUT", "DELETE", "DEL", "PATCH", "X-CUSTOM"]),
            path in "/[a-z0-9/]{0,40}",
            query in proptest::option::of("[a-z0-9=&]{0,30}(&bn1=[A-Za-z0-9_-]{1,20})?"),
            headers in proptest::collection::vec(
                (
                    proptest::sample::select(vec![
                        "accept", "cookie", "connection", "host", "x-a", "x-b", "te",
                        "user-agent", "x-twenty-five-bytes-name-x", "x-drop", "content-type",
                    ]),
                    proptest::collection::vec(proptest::sample::select(
                        b"abcXYZ019 =;,-_\t\x80\xff".to_vec()), 0..40),
                ),
                0..12,
            ),
            forward_path in proptest::bool::ANY,
        ) {
            let m = http::Method::from_bytes(method.as_bytes()).unwrap();
            let uri: http::Uri = match &query {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            }
            .parse()
            .unwrap_or_else(|_| "/".parse().unwrap());
            let mut h = HeaderMap::new();
            for (n, v) in &headers {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(*n, v);
                }
            }
            let fast = request_head_framed(&m, &uri, &h, forward_path, "/fixed").unwrap();
            proptest::prop_assert_eq!(fast, reference_framed(&m, &uri, &h, forward_path));
        }
    }

    #[test]
    fn response_mapping() {
        let resp = bar::Response {
            status: 404,
            headers: vec![
                ("content-type".into(), BarValue::Text("text/plain".into())),
                ("bad name".into(), BarValue::Text("x".into())),
                ("transfer-encoding".into(), BarValue::Text("chunked".into())),
                ("content-length".into(), BarValue::Text("3".into())),
            ],
            body: b"abc".to_vec(),
        };
        let (s, h, len) = response_head(&resp).unwrap();
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(h.len(), 2);
        assert_eq!(len, Some(3));
        let bad = bar::Response {
            status: 101,
            headers: vec![],
            body: vec![],
        };
        assert!(response_head(&bad).is_none());
    }

    #[test]
    fn fast_response_decode_matches_and_falls_back() {
        let resp = bar::Response {
            status: 200,
            headers: vec![
                ("x".into(), BarValue::Bytes(vec![1, 2])),
                ("content-type".into(), BarValue::Text("text/plain".into())),
            ],
            body: b"hello".to_vec(),
        };
        let enc = resp.encode().unwrap();
        assert_eq!(decode_response(&enc), bar::Response::decode(&enc).ok());
        assert!(decode_response(&enc).is_some());
        // Trailing bytes, truncation, a status above u16, an extra key: the fast path
        // declines and the reference decides.
        let mut t = enc.clone();
        t.push(0);
        assert_eq!(decode_response(&t), None);
        assert!(response_parts(&Bytes::from(t)).is_none());
        assert_eq!(decode_response(&enc[..enc.len() - 1]), None);
        use betanet_wire::cbor::{Value, encode};
        let big = encode(&Value::map([
            ("b", Value::bytes(vec![])),
            ("h", Value::Map(vec![])),
            ("s", Value::Uint(70_000)),
        ]))
        .unwrap();
        assert_eq!(decode_response(&big), None);
        assert!(response_parts(&Bytes::from(big)).is_none());
        let extra = encode(&Value::map([
            ("b", Value::bytes(vec![])),
            ("h", Value::Map(vec![])),
            ("s", Value::Uint(204)),
            ("z", Value::Null),
        ]))
        .unwrap();
        assert_eq!(decode_response(&extra), None);
        assert_eq!(response_parts_fast(&Bytes::from(extra.clone())), None);
        assert_eq!(response_parts(&Bytes::from(extra)).unwrap().0, 204);
    }

    proptest::proptest! {
        #[test]
        fn fast_response_decode_equals_reference(
            status in proptest::prelude::any::<u16>(),
            headers in proptest::collection::vec(
                ("[a-z][a-z0-9-]{0,30}", proptest::prop_oneof![
                    "[ -~]{0,300}".prop_map(BarValue::Text),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)
                        .prop_map(BarValue::Bytes),
                ]), 0..10),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
        ) {
            let mut hs: bar::Headers = Vec::new();
            for (n, v) in headers {
                if !hs.iter().any(|(x, _)| *x == n) {
                    hs.push((n, v));
                }
            }
            let enc = bar::Response { status, headers: hs, body }.encode().unwrap();
            let slow = bar::Response::decode(&enc).unwrap();
            proptest::prop_assert_eq!(decode_response(&enc), Some(slow));
        }

        #[test]
        fn response_parts_equal_the_reference_mapping(
            status in proptest::prop_oneof![
                proptest::prelude::Just(200u16),
                proptest::prelude::Just(101u16),
                proptest::prelude::Just(1000u16),
                proptest::prelude::any::<u16>(),
            ],
            headers in proptest::collection::vec(
                (proptest::prop_oneof![
                    "[a-z][a-z0-9-]{0,20}",
                    proptest::prelude::Just("connection".to_owned()),
                    proptest::prelude::Just("content-length".to_owned()),
                    proptest::prelude::Just("a b".to_owned()),
                ], proptest::prop_oneof![
                    "[ -~]{0,40}".prop_map(BarValue::Text),
                    "[0-9]{1,5}".prop_map(BarValue::Text),
                    "[\\x00-\\x7f]{0,10}".prop_map(BarValue::Text),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..20)
                        .prop_map(BarValue::Bytes),
                ]), 0..8),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100),
        ) {
            let mut hs: bar::Headers = Vec::new();
            for (n, v) in headers {
                if !hs.iter().any(|(x, _)| *x == n) {
                    hs.push((n, v));
                }
            }
            let resp = bar::Response { status, headers: hs, body };
            let enc = Bytes::from(resp.encode().unwrap());
            let reference = response_head(&bar::Response::decode(&enc).unwrap())
                .map(|(s, h, l)| (s, h, l, Bytes::from(resp.body.clone())));
            let fast = response_parts_fast(&enc);
            if reference.is_some() {
                proptest::prop_assert!(fast.is_some());
            }
            proptest::prop_assert_eq!(&fast, &reference);
            proptest::prop_assert_eq!(&response_parts(&enc), &reference);
        }

        #[test]
        fn fast_response_decode_never_disagrees(
            flips in proptest::collection::vec(
                (proptest::prelude::any::<usize>(), proptest::prelude::any::<u8>()), 0..4),
            cut in 0usize..3,
        ) {
            let mut enc = bar::Response {
                status: 302,
                headers: vec![
                    ("location".into(), BarValue::Text("/x".into())),
                    ("k".into(), BarValue::Bytes(vec![7; 30])),
                ],
                body: vec![9; 30],
            }
            .encode()
            .unwrap();
            for (i, b) in flips {
                let i = i % enc.len();
                enc[i] = b;
            }
            enc.truncate(enc.len() - cut);
            if let Some(fast) = decode_response(&enc) {
                proptest::prop_assert_eq!(Some(fast), bar::Response::decode(&enc).ok());
            }
            let enc = Bytes::from(enc);
            if let Some(fast) = response_parts_fast(&enc) {
                let reference = bar::Response::decode(&enc).ok().and_then(|r| {
                    response_head(&r).map(|(s, h, l)| (s, h, l, Bytes::from(r.body)))
                });
                proptest::prop_assert_eq!(Some(fast), reference);
            }
        }
    }
}
