//! Requests/s of a small dynamic route (`GET /hello/{name}`) served by betanet-app over BAR,
//! beside the same handler served by a plain hyper 1 HTTP/1.1 server, in the same run.
//!
//! * `bar_duplex_stream`: one `serve_stream` exchange per fresh in-process duplex pipe — what a
//!   site does per HTX stream (HTX multiplexes streams on one connection, so no handshake).
//! * `hyper_duplex_keepalive`: hyper server + client on one persistent in-process duplex pipe.
//! * `bar_tcp_fresh_conn` / `hyper_tcp_fresh_conn`: a fresh loopback TCP connection per request.
//! * `hyper_tcp_keepalive`: hyper on one persistent loopback TCP connection.
//! * `bar_duplex_stream_spawned`: like `bar_duplex_stream` with the server on its own task
//!   (the hyper variants also run server and client connection on separate tasks).
//! * `throughput_c32/*`: 32 concurrent clients × 32 requests per iteration (requests/s).
//!
//! Run: `cargo bench -p betanet-app --bench app`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use betanet_app::client::{fetch, fetch_tcp, request};
use betanet_app::{App, Method, PeerInfo, Request, serve_stream, serve_tcp_bar};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

fn hello(name: &str) -> String {
    format!("hello {name}")
}

fn app() -> Arc<App> {
    let mut app = App::new();
    app.get("/hello/{name}", |r: Request| async move {
        hello(r.param("name").unwrap_or("world"))
    })
    .unwrap();
    app.into_shared()
}

async fn hyper_handler(
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let name = req
        .uri()
        .path()
        .strip_prefix("/hello/")
        .unwrap_or("world")
        .to_owned();
    Ok(hyper::Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(hello(&name))))
        .unwrap())
}

fn serve_hyper<IO>(io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(io), service_fn(hyper_handler))
            .await;
    });
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn hyper_client<IO>(io: IO) -> Sender
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    sender
}

async fn hyper_get(sender: &mut Sender) {
    sender.ready().await.unwrap();
    let req = hyper::Request::builder()
        .uri("/hello/bench")
        .header("host", "localhost")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello bench");
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = app();
    let req = request(Method::Get, "/hello/bench", Vec::new());

    let mut g = c.benchmark_group("dynamic_route");
    g.sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));

    g.bench_function("bar_duplex_stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (mut client, server) = tokio::io::duplex(16 * 1024);
                let (served, resp) = tokio::join!(
                    serve_stream(app.clone(), server, PeerInfo::local()),
                    fetch(&mut client, &req, 1 << 20)
                );
                served.unwrap();
                assert_eq!(resp.unwrap().body, b"hello bench");
            })
        })
    });

    g.bench_function("bar_duplex_stream_spawned", |b| {
        b.iter(|| {
            rt.block_on(async {
                let (mut client, server) = tokio::io::duplex(16 * 1024);
                let srv = tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
                let resp = fetch(&mut client, &req, 1 << 20).await.unwrap();
                assert_eq!(resp.body, b"hello bench");
                srv.await.unwrap().unwrap();
            })
        })
    });

    let mut sender = rt.block_on(async {
        let (client, server) = tokio::io::duplex(16 * 1024);
        serve_hyper(server);
        hyper_client(client).await
    });
    g.bench_function("hyper_duplex_keepalive", |b| {
        b.iter(|| rt.block_on(hyper_get(&mut sender)))
    });

    let bar_addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(serve_tcp_bar(app.clone(), l));
        a
    });
    g.bench_function("bar_tcp_fresh_conn", |b| {
        b.iter(|| {
            rt.block_on(async {
                let r = fetch_tcp(bar_addr, &req, 1 << 20).await.unwrap();
                assert_eq!(r.body, b"hello bench");
            })
        })
    });

    let hyper_addr = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let a = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = l.accept().await.unwrap();
                let _ = s.set_nodelay(true);
                serve_hyper(s);
            }
        });
        a
    });
    g.bench_function("hyper_tcp_fresh_conn", |b| {
        b.iter(|| {
            rt.block_on(async {
                let s = tokio::net::TcpStream::connect(hyper_addr).await.unwrap();
                let _ = s.set_nodelay(true);
                let mut sender = hyper_client(s).await;
                hyper_get(&mut sender).await;
            })
        })
    });

    let mut tcp_sender = rt.block_on(async {
        let s = tokio::net::TcpStream::connect(hyper_addr).await.unwrap();
        let _ = s.set_nodelay(true);
        hyper_client(s).await
    });
    g.bench_function("hyper_tcp_keepalive", |b| {
        b.iter(|| rt.block_on(hyper_get(&mut tcp_sender)))
    });
    g.finish();

    // Concurrency 32, 1024 requests per iteration: requests/s under load.
    let mut t = c.benchmark_group("throughput_c32");
    t.throughput(Throughput::Elements(1024))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    t.bench_function("bar_duplex_stream", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..32 {
                    let app = app.clone();
                    let req = req.clone();
                    set.spawn(async move {
                        for _ in 0..32 {
                            let (mut client, server) = tokio::io::duplex(16 * 1024);
                            let srv =
                                tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
                            let r = fetch(&mut client, &req, 1 << 20).await.unwrap();
                            assert_eq!(r.body, b"hello bench");
                            srv.await.unwrap().unwrap();
                        }
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.unwrap();
                }
            })
        })
    });
    let mut senders: Vec<Sender> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..32 {
            let (client, server) = tokio::io::duplex(16 * 1024);
            serve_hyper(server);
            v.push(hyper_client(client).await);
        }
        v
    });
    t.bench_function("hyper_duplex_keepalive", |b| {
        b.iter(|| {
            let taken = std::mem::take(&mut senders);
            senders = rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for mut s in taken {
                    set.spawn(async move {
                        for _ in 0..32 {
                            hyper_get(&mut s).await;
                        }
                        s
                    });
                }
                let mut back = Vec::new();
                while let Some(r) = set.join_next().await {
                    back.push(r.unwrap());
                }
                back
            });
        })
    });
    t.bench_function("bar_tcp_fresh_conn", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for _ in 0..32 {
                    let req = req.clone();
                    set.spawn(async move {
                        for _ in 0..32 {
                            let r = fetch_tcp(bar_addr, &req, 1 << 20).await.unwrap();
                            assert_eq!(r.body, b"hello bench");
                        }
                    });
                }
                while let Some(r) = set.join_next().await {
                    r.unwrap();
                }
            })
        })
    });
    let mut tcp_senders: Vec<Sender> = rt.block_on(async {
        let mut v = Vec::new();
        for _ in 0..32 {
            let s = tokio::net::TcpStream::connect(hyper_addr).await.unwrap();
            let _ = s.set_nodelay(true);
            v.push(hyper_client(s).await);
        }
        v
    });
    t.bench_function("hyper_tcp_keepalive", |b| {
        b.iter(|| {
            let taken = std::mem::take(&mut tcp_senders);
            tcp_senders = rt.block_on(async {
                let mut set = tokio::task::JoinSet::new();
                for mut s in taken {
                    set.spawn(async move {
                        for _ in 0..32 {
                            hyper_get(&mut s).await;
                        }
                        s
                    });
                }
                let mut back = Vec::new();
                while let Some(r) = set.join_next().await {
                    back.push(r.unwrap());
                }
                back
            });
        })
    });
    t.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
