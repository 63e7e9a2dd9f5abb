#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! End to end on 127.0.0.1: a real betanet-app site served over HTX/tcp12, the proxy in
//! front of it, and clients speaking HTTP-proxy and SOCKS5 on real sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_crypto::identity::PeerId;
use betanet_crypto::sign::SigningKey;
use betanet_proxy::{Proxy, ProxyConfig, SiteConfig};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn site_app() -> Arc<betanet_app::App> {
    let mut app = betanet_app::App::new();
    app.get("/hello/{x}", |req: betanet_app::Request| async move {
        format!(
            "hello {} via {}\n",
            req.param("x").unwrap_or(""),
            req.header("host").unwrap_or("-")
        )
    })
    .unwrap();
    app.get("/big", |_req: betanet_app::Request| async move {
        (0..1_000_000u32)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect::<String>()
    })
    .unwrap();
    app.post("/sum", |req: betanet_app::Request| async move {
        let b = req.body();
        let sum: u64 = b.iter().map(|&x| u64::from(x)).sum();
        format!("len={} sum={sum}", b.len())
    })
    .unwrap();
    app.into_shared()
}

async fn start_site(key: SigningKey) -> SocketAddr {
    let mut cfg = betanet_net::ServerConfig::new(key);
    cfg.pq = betanet_net::PqMode::Classic;
    let listener = betanet_net::listen("127.0.0.1:0", cfg).await.unwrap();
    let addr = listener.local_addr();
    tokio::spawn(betanet_app::htx::serve_listener(site_app(), listener, 16));
    addr
}

fn config(site_addr: SocketAddr, key: &SigningKey) -> ProxyConfig {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.classic_handshake = true;
    cfg.connect_timeout_secs = 5;
    cfg.header_timeout_secs = 5;
    cfg.sites.push(SiteConfig {
        host: "demo.bn".into(),
        addr: site_addr.to_string(),
        public_key: hex::encode(key.verifying_key().to_bytes()),
        transport: "tcp12".into(),
        tls_server_name: None,
        tls_cert_sha256: None,
        tls_path: None,
        ticket_key: None,
    });
    cfg
}

async fn setup() -> (Proxy, SigningKey) {
    let key = SigningKey::from_seed(&[7u8; 32]);
    let site = start_site(key.clone()).await;
    let proxy = Proxy::start(config(site, &key)).await.unwrap();
    (proxy, key)
}

type Client = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn h1_on(tcp: TcpStream) -> Client {
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

async fn call(c: &mut Client, method: &str, uri: &str, host: &str, body: Vec<u8>) -> (u16, Bytes) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", host)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    c.ready().await.unwrap();
    let r = tokio::time::timeout(Duration::from_secs(20), c.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = r.status().as_u16();
    let body = r.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

fn pattern(n: usize) -> (Vec<u8>, u64) {
    let v: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
    let s = v.iter().map(|&x| u64::from(x)).sum();
    (v, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_absolute_form_get_and_post() {
    let (proxy, _) = setup().await;
    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut c = h1_on(tcp).await;
    // Several requests on one keep-alive client connection, each its own HTX stream.
    for i in 0..3 {
        let (s, b) = call(
            &mut c,
            "GET",
            &format!("http://demo.bn/hello/a{i}"),
            "demo.bn",
            vec![],
        )
        .await;
        assert_eq!(s, 200, "{b:?}");
        assert_eq!(b, format!("hello a{i} via demo.bn\n").as_bytes());
    }
    let (body, sum) = pattern(300_000);
    let (s, b) = call(&mut c, "POST", "http://demo.bn/sum", "demo.bn", body).await;
    assert_eq!(s, 200, "{b:?}");
    assert_eq!(b, format!("len=300000 sum={sum}").as_bytes());
    // A 1 MB response streams back intact.
    let (s, b) = call(&mut c, "GET", "http://demo.bn/big", "demo.bn", vec![]).await;
    assert_eq!(s, 200);
    assert_eq!(b.len(), 1_000_000);
    assert!(
        b.iter()
            .enumerate()
            .all(|(i, &x)| x == b'a' + (i % 26) as u8)
    );
    // The site's own 404 comes through unchanged.
    let (s, _) = call(&mut c, "GET", "http://demo.bn/nope", "demo.bn", vec![]).await;
    assert_eq!(s, 404);
    proxy.shutdown().await;
}

async fn socks_connect(proxy: SocketAddr, host: &str, port: u16) -> (TcpStream, [u8; 10]) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&port.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    (s, rep)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socks5_tunnel_carries_http() {
    let (proxy, key) = setup().await;
    let (s, rep) = socks_connect(proxy.local_addr(), "demo.bn", 80).await;
    assert_eq!(rep, [5, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let mut c = h1_on(s).await;
    let (st, b) = call(&mut c, "GET", "/hello/socks", "demo.bn", vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(b, &b"hello socks via demo.bn\n"[..]);
    let (body, sum) = pattern(70_000);
    let (st, b) = call(&mut c, "POST", "/sum", "demo.bn", body).await;
    assert_eq!(st, 200);
    assert_eq!(b, format!("len=70000 sum={sum}").as_bytes());

    // The same site by its PeerID name.
    let peer = PeerId::from_ed25519(&key.verifying_key());
    let name = format!("{}.betanet", hex::encode(peer.digest()));
    let (s, rep) = socks_connect(proxy.local_addr(), &name, 80).await;
    assert_eq!(rep[1], 0);
    let mut c = h1_on(s).await;
    let (st, b) = call(&mut c, "GET", "/hello/id", &name, vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(b, format!("hello id via {name}\n").as_bytes());

    // HTTP CONNECT tunnel, then HTTP/1.1 inside it.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(b"CONNECT demo.bn:80 HTTP/1.1\r\nHost: demo.bn:80\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        s.read_exact(&mut b).await.unwrap();
        head.push(b[0]);
        assert!(head.len() < 1024);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let mut c = h1_on(s).await;
    let (st, b) = call(&mut c, "GET", "/hello/connect", "demo.bn", vec![]).await;
    assert_eq!(st, 200);
    assert_eq!(b, &b"hello connect via demo.bn\n"[..]);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_hosts_and_tls_are_refused() {
    let (proxy, _) = setup().await;
    let (mut s, rep) = socks_connect(proxy.local_addr(), "example.com", 80).await;
    assert_eq!(rep, [5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());
    // Port 443 of a known site: TLS can't be mapped.
    let (_, rep) = socks_connect(proxy.local_addr(), "demo.bn", 443).await;
    assert_eq!(rep[1], 2);
    // A SOCKS tunnel that starts with a TLS ClientHello is closed.
    let (mut s, rep) = socks_connect(proxy.local_addr(), "demo.bn", 8443).await;
    assert_eq!(rep[1], 0);
    s.write_all(&[0x16, 3, 1, 0, 5, 1, 2, 3, 4, 5])
        .await
        .unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).await.unwrap();
    assert!(rest.is_empty());

    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut c = h1_on(tcp).await;
    let (st, b) = call(&mut c, "GET", "http://example.com/", "example.com", vec![]).await;
    assert_eq!(st, 502);
    let text = String::from_utf8(b.to_vec()).unwrap();
    assert!(
        text.contains("example.com is not a configured Betanet site"),
        "{text}"
    );
    assert!(text.contains("no clearnet exit"), "{text}");

    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(b"CONNECT demo.bn:443 HTTP/1.1\r\nHost: demo.bn:443\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(b"CONNECT other.bn:80 HTTP/1.1\r\nHost: other.bn:80\r\n\r\n")
        .await
        .unwrap();
    let n = s.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    proxy.shutdown().await;
}

async fn expect_closed(addr: SocketAddr, bytes: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let _ = s.write_all(bytes).await;
    let _ = s.shutdown().await;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .expect("proxy must close the connection")
        .unwrap_or_default();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_without_harm() {
    let (proxy, _) = setup().await;
    let a = proxy.local_addr();
    assert!(expect_closed(a, &[0x16, 3, 1, 2, 0]).await.is_empty());
    assert!(
        expect_closed(a, &[4, 1, 0, 80, 127, 0, 0, 1, 0])
            .await
            .is_empty()
    );
    assert!(expect_closed(a, &[5, 0]).await.is_empty());
    // Only username/password offered: "no acceptable methods".
    assert_eq!(expect_closed(a, &[5, 1, 2]).await, vec![5, 0xFF]);
    // BIND: command not supported.
    assert_eq!(
        expect_closed(a, &[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80]).await,
        vec![5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0]
    );
    let r = expect_closed(a, b"GARBAGE\r\n\r\n").await;
    assert!(r.is_empty() || r.starts_with(b"HTTP/1.1 400"), "{r:?}");
    // Still serving afterwards.
    let tcp = TcpStream::connect(a).await.unwrap();
    let mut c = h1_on(tcp).await;
    let (st, _) = call(&mut c, "GET", "http://demo.bn/hello/x", "demo.bn", vec![]).await;
    assert_eq!(st, 200);
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn site_down_is_a_quick_502() {
    // A port with nothing listening: bind, note the port, drop.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let key = SigningKey::from_seed(&[8u8; 32]);
    let proxy = Proxy::start(config(dead, &key)).await.unwrap();
    let tcp = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut c = h1_on(tcp).await;
    let t = Instant::now();
    let (st, b) = call(&mut c, "GET", "http://demo.bn/", "demo.bn", vec![]).await;
    assert_eq!(st, 502);
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    let text = String::from_utf8(b.to_vec()).unwrap();
    assert!(text.contains("demo.bn is unreachable"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test]
async fn bad_config_is_refused_at_start() {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    cfg.pool_size = 0;
    let e = Proxy::start(cfg).await.unwrap_err().to_string();
    assert!(e.contains("pool_size"), "{e}");
}

/// Raw bytes, so the request line is exactly the absolute form a proxy client sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_absolute_form_request_line() {
    let (proxy, _) = setup().await;
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(
        b"GET http://demo.bn/hello/raw HTTP/1.1\r\nHost: demo.bn\r\nProxy-Connection: keep-alive\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello raw via demo.bn\n"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_clients_are_dropped_after_the_header_timeout() {
    let key = SigningKey::from_seed(&[9u8; 32]);
    let site = start_site(key.clone()).await;
    let mut cfg = config(site, &key);
    cfg.header_timeout_secs = 1;
    let proxy = Proxy::start(cfg).await.unwrap();
    let t = Instant::now();
    // Nothing at all, then half a SOCKS request.
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert!(out.is_empty());
    let mut s = TcpStream::connect(proxy.local_addr()).await.unwrap();
    s.write_all(&[5, 1, 0, 5, 1, 0, 3]).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out, vec![5, 0]);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "{:?}",
        t.elapsed()
    );
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_share_pooled_connections() {
    let (proxy, _) = setup().await;
    let addr = proxy.local_addr();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..12u32 {
        set.spawn(async move {
            let mut client = if c % 2 == 0 {
                h1_on(TcpStream::connect(addr).await.unwrap()).await
            } else {
                let (s, rep) = socks_connect(addr, "demo.bn", 80).await;
                assert_eq!(rep[1], 0);
                h1_on(s).await
            };
            for i in 0..6u32 {
                let uri = if c % 2 == 0 {
                    format!("http://demo.bn/hello/{c}-{i}")
                } else {
                    format!("/hello/{c}-{i}")
                };
                let (st, b) = call(&mut client, "GET", &uri, "demo.bn", vec![]).await;
                assert_eq!(st, 200);
                assert_eq!(b, format!("hello {c}-{i} via demo.bn\n").as_bytes());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connections_holds_later_clients_back() {
    let key = SigningKey::from_seed(&[10u8; 32]);
    let site = start_site(key.clone()).await;
    let mut cfg = config(site, &key);
    cfg.max_connections = 1;
    let proxy = Proxy::start(cfg).await.unwrap();
    let (first, rep) = socks_connect(proxy.local_addr(), "demo.bn", 80).await;
    assert_eq!(rep[1], 0);
    // The second client is not served while the first holds the only slot...
    let mut second = TcpStream::connect(proxy.local_addr()).await.unwrap();
    second
        .write_all(
            b"GET http://demo.bn/hello/2 HTTP/1.1\r\nHost: demo.bn\r\nConnection: close\r\n\r\n",
        )
        .await
        .unwrap();
    let mut b = [0u8; 1];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), second.read(&mut b))
            .await
            .is_err()
    );
    // ...and is once the first one leaves.
    drop(first);
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), second.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.ends_with("\r\n\r\nhello 2 via demo.bn\n"), "{text}");
    proxy.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_open_tunnels() {
    let (proxy, _) = setup().await;
    let addr = proxy.local_addr();
    let (mut socks, rep) = socks_connect(addr, "demo.bn", 80).await;
    assert_eq!(rep[1], 0);
    let mut connect = TcpStream::connect(addr).await.unwrap();
    connect
        .write_all(b"CONNECT demo.bn:80 HTTP/1.1\r\nHost: demo.bn:80\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = connect.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    tokio::time::timeout(Duration::from_secs(5), proxy.shutdown())
        .await
        .unwrap();
    for s in [&mut socks, &mut connect] {
        let mut out = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("tunnel must be closed on shutdown");
        assert!(r.is_err() || out.is_empty());
    }
    assert!(TcpStream::connect(addr).await.is_err());
}
