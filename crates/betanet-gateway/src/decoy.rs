//! The decoy: what everyone who is not admitted gets.
//!
//! * **Origin** (`decoy.origin`): a connection that is not admitted is relayed **byte for
//!   byte** to the decoy origin (the bytes already read are replayed first, then
//!   `copy_bidirectional`), so the origin's own HTTP server answers every probe — malformed
//!   requests, bad HTTP/2 prefaces, CONNECT, oversized heads, bad tickets — exactly as it would
//!   directly. Requests refused inside an HTTP/2 connection (where admission is per request)
//!   are reverse-proxied to the origin with a hyper client.
//! * **Static** (`decoy.static_dir`): the gateway itself serves the directory (GET/HEAD,
//!   `index.html` for directories, 404 otherwise).

use std::io;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::barmap::{GwBody, full};

/// The configured decoy.
#[derive(Debug)]
pub enum Decoy {
    /// Relay to / reverse-proxy to an origin.
    Origin {
        /// The origin's address.
        addr: SocketAddr,
        /// Client for per-request proxying (HTTP/2 connections).
        client: Box<Client<HttpConnector, GwBody>>,
    },
    /// Serve a directory.
    Static {
        /// The site root.
        dir: PathBuf,
    },
}

/// How long a client's half-close is held back from the decoy origin (see [`Decoy::relay`]).
pub const HALF_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(250);

/// Largest static file served.
const MAX_STATIC_FILE: u64 = 64 << 20;

impl Decoy {
    /// A relaying decoy for `addr`.
    pub fn origin(addr: SocketAddr) -> Self {
        let client = Box::new(Client::builder(TokioExecutor::new()).build_http());
        Decoy::Origin { addr, client }
    }

    /// Relays a whole client connection to the origin, replaying `prefix` (the bytes already
    /// read from the client) first. Returns when either side closes.
    pub async fn relay<S>(addr: SocketAddr, prefix: &[u8], client: S) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let mut origin = TcpStream::connect(addr).await?;
        origin.set_nodelay(true)?;
        if !prefix.is_empty() {
            origin.write_all(prefix).await?;
        }
        // Borrowed halves: unlike `into_split`, dropping the write half does not issue an
        // extra `shutdown(2)` — the socket's close at the end says the same to the origin.
        let (mut or, mut ow) = origin.split();
        let (mut cr, mut cw) = tokio::io::split(client);
        let down = async {
            let r = tokio::io::copy(&mut or, &mut cw).await;
            let _ = cw.shutdown().await;
            r
        };
        tokio::pin!(down);
        tokio::select! {
            up = tokio::io::copy(&mut cr, &mut ow) => {
                // The client half-closed (or failed). A request followed at once by FIN races
                // inside some origin servers (hyper without half-close support drops the
                // answer), so the FIN is passed on only when the origin has not finished
                // within a short grace period — the bytes the client sees stay the origin's.
                if up.is_err() {
                    return Ok(());
                }
                tokio::select! {
                    r = &mut down => return r.map(|_| ()),
                    _ = tokio::time::sleep(HALF_CLOSE_GRACE) => {}
                }
                let _ = ow.shutdown().await;
                down.await.map(|_| ())
            }
            r = &mut down => r.map(|_| ()),
        }
    }

    /// Answers one refused request (HTTP/2 connections, static mode).
    pub async fn answer(&self, req: Request<Incoming>) -> Response<GwBody> {
        match self {
            Decoy::Origin { addr, client } => {
                let (mut parts, body) = req.into_parts();
                let pq = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str().to_owned())
                    .unwrap_or_else(|| "/".to_owned());
                let authority = parts.uri.authority().map(|a| a.as_str().to_owned());
                let Ok(uri) = format!("http://{addr}{pq}").parse::<http::Uri>() else {
                    return status_only(StatusCode::BAD_REQUEST);
                };
                parts.uri = uri;
                parts.version = http::Version::HTTP_11;
                if !parts.headers.contains_key(http::header::HOST)
                    && let Some(a) = authority.and_then(|a| a.parse().ok())
                {
                    parts.headers.insert(http::header::HOST, a);
                }
                let body = body.map_err(io::Error::other).boxed();
                match client.request(Request::from_parts(parts, body)).await {
                    Ok(resp) => {
                        let (mut parts, body) = resp.into_parts();
                        for h in ["connection", "keep-alive", "transfer-encoding"] {
                            parts.headers.remove(h);
                        }
                        Response::from_parts(parts, body.map_err(io::Error::other).boxed())
                    }
                    Err(_) => status_only(StatusCode::BAD_GATEWAY),
                }
            }
            Decoy::Static { dir } => serve_static(dir, &req).await,
        }
    }
}

fn status_only(s: StatusCode) -> Response<GwBody> {
    let mut r = Response::new(full(Bytes::new()));
    *r.status_mut() = s;
    r
}

fn content_type(p: &Path) -> &'static str {
    match p.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "svg" => "image/svg+xml",
        "ico" => "image/x-icon",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves `dir` for a request: GET/HEAD only, no `..`, directories → `index.html`.
pub async fn serve_static<B>(dir: &Path, req: &Request<B>) -> Response<GwBody> {
    let not_found = || {
        let mut r = Response::new(full(Bytes::from_static(b"<h1>404 Not Found</h1>\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("text/html; charset=utf-8"),
        );
        r
    };
    let is_head = req.method() == http::Method::HEAD;
    if req.method() != http::Method::GET && !is_head {
        let mut r = status_only(StatusCode::METHOD_NOT_ALLOWED);
        r.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return r;
    }
    let rel = req.uri().path().trim_start_matches('/');
    let rel_path = Path::new(rel);
    if rel_path
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return not_found();
    }
    let mut path = dir.join(rel_path);
    if tokio::fs::metadata(&path).await.is_ok_and(|m| m.is_dir()) {
        path = path.join("index.html");
    }
    let Ok(meta) = tokio::fs::metadata(&path).await else {
        return not_found();
    };
    if !meta.is_file() || meta.len() > MAX_STATIC_FILE {
        return not_found();
    }
    let Ok(bytes) = tokio::fs::read(&path).await else {
        return not_found();
    };
    let len = bytes.len();
    let mut r = Response::new(if is_head {
        full(Bytes::new())
    } else {
        full(bytes)
    });
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type(&path)),
    );
    r.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    r
}
