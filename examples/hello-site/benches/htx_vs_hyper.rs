//! Requests/s of a small dynamic route (`GET /hello/{name}`) served over HTX by the site
//! framework, beside the same handler served by a plain hyper 1 HTTP/1.1 server, in the same
//! run, both on loopback TCP.
//!
//! * `serial/htx_stream`: one request at a time, each on a fresh HTX stream of one
//!   established `tcp12` connection (Noise XK + ChaCha20-Poly1305 frames) — what the gateway
//!   does per request with its pooled connection;
//! * `serial/hyper_keepalive`: one request at a time on one keep-alive HTTP/1.1 connection;
//! * `c32/htx_1conn`: 32 concurrent clients multiplexed on ONE HTX connection;
//! * `c32/hyper_32conn`: 32 concurrent clients, each with its own keep-alive connection
//!   (HTTP/1.1 cannot multiplex).
//!
//! Run: `cargo bench -p betanet-example-hello --bench htx_vs_hyper`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_app::client::{fetch, request};
use betanet_app::{App, Method, Plugin};
use betanet_crypto::sign::SigningKey;
use betanet_example_hello::HelloPlugin;
use betanet_net::{ClientConfig, Connection, ServerConfig};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

const CLIENTS: usize = 32;
const PER_CLIENT: usize = 16;

async fn hyper_handler(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let name = req.uri().path().strip_prefix("/hello/").unwrap_or("world");
    let body = format!("hello {name}");
    Ok(hyper::Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn start_hyper() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service_fn(hyper_handler))
                    .await;
            });
        }
    });
    addr
}

async fn hyper_client(addr: std::net::SocketAddr) -> Sender {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = s.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn hyper_get(sender: &mut Sender) {
    sender.ready().await.unwrap();
    let req = hyper::Request::get("/hello/rust")
        .header("host", "127.0.0.1")
        .body(Empty::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello rust");
}

async fn start_htx() -> Connection {
    let mut app = App::new();
    HelloPlugin::default().register(&mut app).unwrap();
    let app = app.into_shared();
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let public = key.verifying_key();
    let listener = betanet_net::listen("127.0.0.1:0", ServerConfig::new(key))
        .await
        .unwrap();
    let addr = listener.local_addr();
    tokio::spawn(betanet_app::htx::serve_listener(app, listener, 64));
    let client = ClientConfig::new(SigningKey::generate(&mut rand_core::OsRng));
    betanet_net::dial(&addr.to_string(), &public, &client)
        .await
        .unwrap()
}

async fn htx_get(conn: &Connection) {
    let mut s = conn.open_stream().unwrap();
    let resp = fetch(
        &mut s,
        &request(Method::Get, "/hello/rust", Vec::new()),
        1024,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(&resp.body[..], b"hello rust");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (conn, hyper_addr) = rt.block_on(async { (start_htx().await, start_hyper().await) });
    let conn = Arc::new(conn);

    let mut g = c.benchmark_group("serial");
    g.throughput(Throughput::Elements(1));
    g.bench_function("htx_stream", |b| {
        b.iter_custom(|iters| {
            let conn = conn.clone();
            rt.block_on(async move {
                let t = Instant::now();
                for _ in 0..iters {
                    htx_get(&conn).await;
                }
                t.elapsed()
            })
        });
    });
    let mut sender = rt.block_on(hyper_client(hyper_addr));
    g.bench_function("hyper_keepalive", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let t = Instant::now();
                for _ in 0..iters {
                    hyper_get(&mut sender).await;
                }
                t.elapsed()
            })
        });
    });
    g.finish();

    let mut g = c.benchmark_group("c32");
    g.throughput(Throughput::Elements((CLIENTS * PER_CLIENT) as u64));
    g.bench_function("htx_1conn", |b| {
        b.iter_custom(|iters| {
            let conn = conn.clone();
            rt.block_on(async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let t = Instant::now();
                    let tasks: Vec<_> = (0..CLIENTS)
                        .map(|_| {
                            let conn = conn.clone();
                            tokio::spawn(async move {
                                for _ in 0..PER_CLIENT {
                                    htx_get(&conn).await;
                                }
                            })
                        })
                        .collect();
                    for t in tasks {
                        t.await.unwrap();
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    });
    let senders: Vec<Sender> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..CLIENTS {
            v.push(hyper_client(hyper_addr).await);
        }
        v
    });
    let senders = Arc::new(tokio::sync::Mutex::new(senders));
    g.bench_function("hyper_32conn", |b| {
        b.iter_custom(|iters| {
            let senders = senders.clone();
            rt.block_on(async move {
                let mut total = Duration::ZERO;
                let mut pool = senders.lock().await;
                for _ in 0..iters {
                    let t = Instant::now();
                    let tasks: Vec<_> = pool
                        .drain(..)
                        .map(|mut s| {
                            tokio::spawn(async move {
                                for _ in 0..PER_CLIENT {
                                    hyper_get(&mut s).await;
                                }
                                s
                            })
                        })
                        .collect();
                    for t in tasks {
                        pool.push(t.await.unwrap());
                    }
                    total += t.elapsed();
                }
                total
            })
        });
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench
}
criterion_main!(benches);
