#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! One GET through the proxy (HTTP absolute form, keep-alive client) to a betanet-app site
//! over HTX/tcp12 on loopback, beside the same GET sent straight over an HTX stream (no
//! proxy), and the SOCKS5 request parser.

use std::sync::Arc;

use betanet_crypto::sign::SigningKey;
use betanet_proxy::socks::{Request, Target, parse_request};
use betanet_proxy::{Proxy, ProxyConfig, SiteConfig};
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let key = SigningKey::from_seed(&[1u8; 32]);
    let (proxy, site) = rt.block_on(async {
        let mut cfg = betanet_net::ServerConfig::new(key.clone());
        cfg.pq = betanet_net::PqMode::Classic;
        let listener = betanet_net::listen("127.0.0.1:0", cfg).await.unwrap();
        let site = listener.local_addr();
        let mut app = betanet_app::App::new();
        app.get("/", |_r: betanet_app::Request| async move { "hello\n" })
            .unwrap();
        let app: Arc<betanet_app::App> = app.into_shared();
        tokio::spawn(betanet_app::htx::serve_listener(app, listener, 16));
        let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
        cfg.classic_handshake = true;
        cfg.sites.push(
            SiteConfig::parse_flag(&format!(
                "demo.bn={site}={}",
                hex::encode(key.verifying_key().to_bytes())
            ))
            .unwrap(),
        );
        (Proxy::start(cfg).await.unwrap(), site)
    });
    let mut client = rt.block_on(async {
        let tcp = tokio::net::TcpStream::connect(proxy.local_addr())
            .await
            .unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        send
    });
    c.bench_function("proxy_get_http_absolute_form", |b| {
        b.iter(|| {
            rt.block_on(async {
                let req = hyper::Request::builder()
                    .uri("http://demo.bn/")
                    .header("host", "demo.bn")
                    .body(Empty::<Bytes>::new())
                    .unwrap();
                client.ready().await.unwrap();
                let r = client.send_request(req).await.unwrap();
                assert_eq!(r.status(), 200);
                let body = r.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"hello\n");
            })
        })
    });
    // Baseline: the same BAR exchange straight on an HTX stream of one connection.
    let conn = rt.block_on(async {
        let mut cfg = betanet_net::ClientConfig::new(SigningKey::from_seed(&[2u8; 32]));
        cfg.pq = betanet_net::PqMode::Classic;
        betanet_net::dial(&site.to_string(), &key.verifying_key(), &cfg)
            .await
            .unwrap()
    });
    let head = betanet_gateway::barmap::request_head_framed(
        &http::Method::GET,
        &"/".parse().unwrap(),
        &http::HeaderMap::new(),
        true,
        "/",
    )
    .unwrap();
    c.bench_function("direct_bar_get_over_htx_stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = conn.open_stream().unwrap();
                s.write_all(&head).await.unwrap();
                s.shutdown().await.unwrap();
                let mut out = Vec::new();
                s.read_to_end(&mut out).await.unwrap();
                assert!(out.windows(6).any(|w| w == b"hello\n"));
            })
        })
    });
    let req = Request {
        target: Target::Domain("demo.bn".into()),
        port: 80,
    }
    .encode();
    c.bench_function("socks5_parse_request", |b| {
        b.iter(|| parse_request(std::hint::black_box(&req)).unwrap())
    });
    rt.block_on(proxy.shutdown());
}

criterion_group!(benches, bench);
criterion_main!(benches);
