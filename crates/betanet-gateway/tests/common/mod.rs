//! Test harness: a BAR-over-TCP site server, a hyper decoy origin, ticket helpers, clients.
#![allow(dead_code)]

use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use betanet_gateway::barmap::{GwBody, full};
use betanet_gateway::{Gateway, GatewayConfig, TcpBarConnector};
use betanet_ticket::ticket::RenderedCarrier;
use betanet_ticket::{Carrier, CarrierPolicy, SiteInfo, SiteTicketKey, make_ticket};
use betanet_wire::bar::{self, HeaderValue};
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::JoinSet;

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub fn pattern(i: u64) -> u8 {
    (i % 251) as u8
}

// ---------------------------------------------------------------- BAR site server

pub struct Site {
    pub addr: SocketAddr,
    task: Option<tokio::task::JoinHandle<()>>,
}

fn hv(s: impl Into<String>) -> HeaderValue {
    HeaderValue::Text(s.into())
}

async fn write_head(s: &mut TcpStream, resp: &bar::Response) -> io::Result<()> {
    let framed = bar::stream::frame_head(&resp.encode().unwrap()).unwrap();
    s.write_all(&framed).await
}

async fn site_conn(mut s: TcpStream) -> io::Result<()> {
    let mut buf = Vec::new();
    let (req, used) = loop {
        if let Some((h, used)) = bar::stream::split_head(&buf).unwrap() {
            break (bar::Request::decode(h).unwrap(), used);
        }
        let mut tmp = [0u8; 16384];
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            return Ok(()); // health check
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let mut body = req.body.clone();
    body.extend_from_slice(&buf[used..]);
    let path = req.uri.split('?').next().unwrap_or("").to_owned();
    let query = req.uri.split_once('?').map(|x| x.1.to_owned());
    if path == "/upload" {
        let mut hasher_data = body;
        let mut tmp = vec![0u8; 65536];
        loop {
            let n = s.read(&mut tmp).await?;
            if n == 0 {
                break;
            }
            hasher_data.extend_from_slice(&tmp[..n]);
        }
        let resp = bar::Response {
            status: 200,
            headers: vec![
                ("x-len".into(), hv(hasher_data.len().to_string())),
                (
                    "x-sha256".into(),
                    hv(hex::encode(betanet_crypto::hash::sha256(&hasher_data))),
                ),
                ("content-length".into(), hv("0")),
            ],
            body: vec![],
        };
        write_head(&mut s, &resp).await?;
        return s.shutdown().await;
    }
    // Everything else reads the whole request first.
    let mut tmp = vec![0u8; 65536];
    loop {
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&tmp[..n]);
    }
    let n: u64 = query
        .as_deref()
        .and_then(|q| q.strip_prefix("n="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    match path.as_str() {
        "/download" => {
            let resp = bar::Response {
                status: 200,
                headers: vec![("content-length".into(), hv(n.to_string()))],
                body: vec![],
            };
            write_head(&mut s, &resp).await?;
            let mut i = 0u64;
            let mut chunk = Vec::with_capacity(65536);
            while i < n {
                chunk.clear();
                let end = (i + 65536).min(n);
                chunk.extend((i..end).map(pattern));
                s.write_all(&chunk).await?;
                i = end;
            }
            s.shutdown().await
        }
        "/slow" => {
            let resp = bar::Response {
                status: 200,
                headers: vec![("content-length".into(), hv(n.to_string()))],
                body: vec![],
            };
            write_head(&mut s, &resp).await?;
            let half: Vec<u8> = (0..n / 2).map(pattern).collect();
            s.write_all(&half).await?;
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        "/hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
        "/missing" => {
            let resp = bar::Response {
                status: 404,
                headers: vec![
                    ("content-type".into(), hv("text/plain")),
                    ("content-length".into(), hv("4")),
                ],
                body: b"nope".to_vec(),
            };
            write_head(&mut s, &resp).await?;
            s.shutdown().await
        }
        _ => {
            let get = |name: &str| match bar::header(&req.headers, name) {
                Some(HeaderValue::Text(t)) => t.clone(),
                Some(HeaderValue::Bytes(b)) => hex::encode(b),
                None => "-".into(),
            };
            let names: Vec<&str> = req.headers.iter().map(|(k, _)| k.as_str()).collect();
            let resp = bar::Response {
                status: 200,
                headers: vec![
                    ("x-method".into(), hv(req.method.as_str())),
                    ("x-uri".into(), hv(req.uri.clone())),
                    ("x-cookie".into(), hv(get("cookie"))),
                    ("x-custom".into(), hv(get("x-custom"))),
                    ("x-names".into(), hv(names.join(","))),
                    ("x-site".into(), hv("yes")),
                    ("set-cookie".into(), hv("s=1; Path=/")),
                    ("content-length".into(), hv(body.len().to_string())),
                ],
                body: vec![],
            };
            write_head(&mut s, &resp).await?;
            s.write_all(&body).await?;
            s.shutdown().await
        }
    }
}

impl Site {
    pub async fn start(addr: SocketAddr) -> Site {
        let mut tries = 0;
        let l = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 100, "bind {addr}: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        };
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut set = JoinSet::new();
            loop {
                while set.try_join_next().is_some() {}
                let Ok((s, _)) = l.accept().await else {
                    continue;
                };
                let _ = s.set_nodelay(true);
                set.spawn(async move {
                    let _ = site_conn(s).await;
                });
            }
        });
        Site {
            addr,
            task: Some(task),
        }
    }

    /// Kills the server: listener and every connection dropped at once.
    pub async fn kill(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

// ---------------------------------------------------------------- decoy origin

pub const DECOY_BODY: &str = "<html><body>Welcome to the bakery</body></html>\n";

/// A small hyper HTTP/1.1 origin: `/` → 200 page, anything else → 404.
pub async fn decoy_origin() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let (status, body) = if req.uri().path() == "/" {
                        (200, DECOY_BODY)
                    } else {
                        (404, "not found\n")
                    };
                    let mut r = Response::new(full(Bytes::from_static(body.as_bytes())));
                    *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    r.headers_mut()
                        .insert("server", http::HeaderValue::from_static("bakery/1.0"));
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .half_close(true)
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

// ---------------------------------------------------------------- gateway

pub struct Env {
    pub key: SiteTicketKey,
    pub decoy: SocketAddr,
    pub site: Site,
    pub gw: Gateway,
    pub rng: StdRng,
}

pub fn config_text(
    key: &SiteTicketKey,
    decoy: SocketAddr,
    site: SocketAddr,
    extra: &str,
) -> String {
    // The secret is not exported by SiteTicketKey; tests build keys from known secrets.
    let _ = key;
    format!(
        r#"listen = "127.0.0.1:0"
{extra}
[decoy]
origin = "{decoy}"
[site]
addr = "{site}"
connect_timeout_ms = 500
response_timeout_ms = 10000
health_interval_ms = 200
"#
    )
}

pub fn test_key(seed: u8) -> ([u8; 32], [u8; 8], SiteTicketKey) {
    let secret = [seed; 32];
    let id = [seed ^ 0x5a; 8];
    let k = SiteTicketKey::from_secret(betanet_crypto::dh::X25519Secret::from_bytes(secret), id)
        .unwrap();
    (secret, id, k)
}

pub struct Opts {
    pub extra_top: String,
    pub ticket_extra: String,
    pub limits: String,
    pub voucher: String,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            extra_top: String::new(),
            ticket_extra: "per_prefix_burst = 1000000\nper_prefix_per_sec = 1000000\n".into(),
            limits: String::new(),
            voucher: String::new(),
        }
    }
}

pub fn full_config(
    secret: &[u8; 32],
    id: &[u8; 8],
    decoy: SocketAddr,
    site: SocketAddr,
    o: &Opts,
) -> GatewayConfig {
    let text = format!(
        r#"listen = "127.0.0.1:0"
{top}
[decoy]
origin = "{decoy}"
[site]
addr = "{site}"
connect_timeout_ms = 500
response_timeout_ms = 10000
health_interval_ms = 200
[ticket]
secret_hex = "{s}"
key_id_hex = "{i}"
{t}
[limits]
{l}
{v}
"#,
        top = o.extra_top,
        s = hex::encode(secret),
        i = hex::encode(id),
        t = o.ticket_extra,
        l = o.limits,
        v = o.voucher,
    );
    GatewayConfig::from_toml(&text).unwrap()
}

pub async fn start_env(o: Opts) -> Env {
    let (secret, id, key) = test_key(7);
    let decoy = decoy_origin().await;
    let site = Site::start("127.0.0.1:0".parse().unwrap()).await;
    let cfg = full_config(&secret, &id, decoy, site.addr, &o);
    let gw = Gateway::start(cfg, Arc::new(TcpBarConnector::new(site.addr)))
        .await
        .unwrap();
    Env {
        key,
        decoy,
        site,
        gw,
        rng: StdRng::seed_from_u64(42),
    }
}

pub fn ticket(key: &SiteTicketKey, carrier: Carrier, at: u64, rng: &mut StdRng) -> RenderedCarrier {
    let site = SiteInfo {
        keys: key.keys(),
        policy: CarrierPolicy::only(carrier),
    };
    make_ticket(&site, at, rng).unwrap().render()
}

pub fn cookie(key: &SiteTicketKey, rng: &mut StdRng) -> String {
    match ticket(key, Carrier::Cookie, now(), rng) {
        RenderedCarrier::Cookie(c) => c,
        _ => unreachable!(),
    }
}

// ---------------------------------------------------------------- clients

pub async fn connect_from(src: Option<IpAddr>, addr: SocketAddr) -> TcpStream {
    let sock = TcpSocket::new_v4().unwrap();
    if let Some(ip) = src {
        sock.bind(SocketAddr::new(ip, 0)).unwrap();
    }
    let s = sock.connect(addr).await.unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Sends raw bytes, half-closes, reads until EOF (or `limit`); returns (bytes, closed).
pub async fn raw(addr: SocketAddr, bytes: &[u8], limit: Duration) -> (Vec<u8>, bool) {
    let mut s = connect_from(None, addr).await;
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    let r = tokio::time::timeout(limit, async {
        let mut tmp = [0u8; 65536];
        loop {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&tmp[..n]),
            }
        }
    })
    .await;
    (out, r.is_ok())
}

/// Raw request without half-close: writes, reads one response (until EOF; `Connection: close`).
pub async fn raw_keep(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = connect_from(None, addr).await;
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// Drops `Date:` header lines.
pub fn strip_date(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = b;
    while !rest.is_empty() {
        let end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|p| p + 2)
            .unwrap_or(rest.len());
        let line = &rest[..end];
        if !line.to_ascii_lowercase().starts_with(b"date:") {
            out.extend_from_slice(line);
        }
        rest = &rest[end..];
    }
    out
}

pub fn status_of(resp: &[u8]) -> u16 {
    let s = String::from_utf8_lossy(resp);
    s.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

pub type Sender = hyper::client::conn::http1::SendRequest<GwBody>;

pub async fn h1(src: Option<IpAddr>, addr: SocketAddr) -> Sender {
    let s = connect_from(src, addr).await;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

pub async fn send(
    s: &mut Sender,
    req: Request<GwBody>,
) -> Result<Response<Incoming>, hyper::Error> {
    s.ready().await?;
    s.send_request(req).await
}

pub fn get(path: &str, cookie: Option<&str>) -> Request<GwBody> {
    let mut b = Request::builder().uri(path).header("host", "bakery.test");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    b.body(full(Bytes::new())).unwrap()
}
