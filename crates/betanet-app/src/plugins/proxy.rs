//! `proxy`: forwards requests under a prefix to a local HTTP application (hyper 1 client,
//! pooled keep-alive connections). Response bodies stream through without buffering.
//!
//! Mapping: BAR `DEL` ↔ HTTP `DELETE`; hop-by-hop headers are dropped both ways; `host` is the
//! upstream's; repeated upstream header names are joined with `", "` (BAR headers are a map).
//! An unreachable or slow upstream answers 503 (BAR has no 502/504).

use std::sync::Arc;
use std::time::Duration;

use betanet_wire::bar::{HeaderValue, Method, status};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::app::App;
use crate::body::Body;
use crate::config::{AppConfig, ProxyConfig};
use crate::error::AppError;
use crate::plugin::Plugin;
use crate::request::Request;
use crate::response::Response;

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Reverse proxy to `[proxy] upstream`.
#[derive(Debug, Clone)]
pub struct ProxyPlugin {
    cfg: ProxyConfig,
}

impl ProxyPlugin {
    /// Reads `[proxy]` from `cfg`; fails naming `proxy.upstream` when it is missing.
    pub fn from_config(cfg: &AppConfig) -> Result<Self, AppError> {
        let p = cfg.proxy.clone().ok_or_else(|| AppError::Config {
            key: "proxy.upstream".to_owned(),
            problem: "plugin `proxy` selected but no [proxy] table".to_owned(),
            fix: "add [proxy] upstream = \"http://127.0.0.1:3000\" or use --proxy URL".to_owned(),
        })?;
        Ok(ProxyPlugin { cfg: p })
    }

    /// A proxy with explicit settings.
    #[must_use]
    pub fn new(cfg: ProxyConfig) -> Self {
        ProxyPlugin { cfg }
    }
}

struct Target {
    client: HttpClient,
    upstream: String,
    prefix: String,
    strip: bool,
    timeout: Duration,
}

impl Plugin for ProxyPlugin {
    fn name(&self) -> &str {
        "proxy"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        let client: HttpClient = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build_http();
        let prefix = self.cfg.prefix.trim_end_matches('/').to_owned();
        let target = Arc::new(Target {
            client,
            upstream: self.cfg.upstream.trim_end_matches('/').to_owned(),
            prefix: prefix.clone(),
            strip: self.cfg.strip_prefix,
            timeout: Duration::from_secs(self.cfg.timeout_secs),
        });
        let pattern = format!("{prefix}/{{*proxy_path}}");
        for m in [Method::Get, Method::Put, Method::Post, Method::Del] {
            let t = target.clone();
            app.route(m, &pattern, move |req: Request| {
                let t = t.clone();
                async move { forward(&t, req).await }
            })?;
        }
        Ok(())
    }
}

async fn forward(t: &Target, req: Request) -> Response {
    let mut pq = req.head.uri.clone();
    if t.strip
        && !t.prefix.is_empty()
        && let Some(rest) = pq.strip_prefix(&t.prefix)
    {
        pq = rest.to_owned();
    }
    if !pq.starts_with('/') {
        pq.insert(0, '/');
    }
    let method = match req.method() {
        Method::Get => hyper::Method::GET,
        Method::Put => hyper::Method::PUT,
        Method::Post => hyper::Method::POST,
        Method::Del => hyper::Method::DELETE,
        Method::Unknown(_) => return Response::error(status::BAD_REQUEST, "unknown method"),
    };
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{pq}", t.upstream));
    for (n, v) in &req.head.headers {
        if HOP_BY_HOP.contains(&n.as_str()) || n == "content-length" {
            continue;
        }
        let raw: &[u8] = match v {
            HeaderValue::Text(s) => s.as_bytes(),
            HeaderValue::Bytes(b) => b,
        };
        if let (Ok(name), Ok(val)) = (
            hyper::header::HeaderName::from_bytes(n.as_bytes()),
            hyper::header::HeaderValue::from_bytes(raw),
        ) {
            b = b.header(name, val);
        }
    }
    b = b.header("x-forwarded-proto", "betanet");
    if let Some(id) = &req.head.peer.peer_id {
        b = b.header("x-betanet-peer", id.as_str());
    }
    let hreq = match b.body(Full::new(req.body.clone())) {
        Ok(r) => r,
        Err(_) => return Response::error(status::BAD_REQUEST, "request cannot be forwarded"),
    };
    let resp = match tokio::time::timeout(t.timeout, t.client.request(hreq)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "proxy upstream failed");
            return Response::error(status::SERVICE_UNAVAILABLE, "upstream unavailable");
        }
        Err(_) => return Response::error(status::SERVICE_UNAVAILABLE, "upstream timed out"),
    };
    let st = resp.status().as_u16();
    let mut out = Response::new(st, Body::Empty);
    for (name, value) in resp.headers() {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) {
            continue;
        }
        let Ok(v) = value.to_str() else { continue };
        match out.headers.iter_mut().find(|(x, _)| x == n) {
            Some(slot) => {
                slot.1.push_str(", ");
                slot.1.push_str(v);
            }
            None => out.headers.push((n.to_owned(), v.to_owned())),
        }
    }
    let (tx, body) = Body::channel(8);
    let mut incoming = resp.into_body();
    tokio::spawn(async move {
        while let Some(frame) = incoming.frame().await {
            match frame {
                Ok(f) => {
                    if let Ok(data) = f.into_data()
                        && !tx.send(data).await
                    {
                        break;
                    }
                }
                Err(e) => {
                    tx.abort(std::io::Error::other(e)).await;
                    break;
                }
            }
        }
    });
    out.body = body;
    out
}
