#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use betanet_app::client::{fetch, read_response, request, send_request};
use betanet_app::{App, Body, Method, PeerInfo, Request, Response, serve_stream};
use betanet_wire::bar::stream::frame_head;
use bytes::Bytes;
use common::{call, hdr, start};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIG: usize = 20 * 1024 * 1024;

fn big_chunk(i: usize) -> Bytes {
    Bytes::from(
        (0..64 * 1024)
            .map(|j| ((i * 31 + j * 7) % 251) as u8)
            .collect::<Vec<u8>>(),
    )
}

fn demo_app() -> App {
    let mut app = App::new();
    app.get("/hello/{name}", |r: Request| async move {
        format!("hello {}", r.param("name").unwrap_or("world"))
    })
    .unwrap();
    app.post("/echo", |r: Request| async move {
        Response::new(200, r.body.clone()).with_header("x-len", r.body.len().to_string())
    })
    .unwrap();
    app.put("/json", |r: Request| async move {
        let v: serde_json::Value = r.json()?;
        Ok::<_, betanet_app::AppError>(betanet_app::json(&serde_json::json!({"got": v})))
    })
    .unwrap();
    app.get("/broken", |_r: Request| async move {
        let (tx, body) = Body::channel(2);
        tokio::spawn(async move {
            assert!(tx.send(Bytes::from(vec![7u8; 200_000])).await);
            tx.abort(std::io::Error::other("source failed")).await;
        });
        Response::with_body("application/octet-stream", body)
    })
    .unwrap();
    app.get("/big", |_r: Request| async move {
        let (tx, body) = Body::channel(4);
        tokio::spawn(async move {
            for i in 0..BIG / (64 * 1024) {
                if !tx.send(big_chunk(i)).await {
                    return;
                }
            }
        });
        Response::with_body("application/octet-stream", body)
    })
    .unwrap();
    app
}

#[tokio::test]
async fn hello_404_echo_json_and_unknown_method() {
    let (addr, app) = start(demo_app()).await;
    let r = call(addr, Method::Get, "/hello/rust", b"").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"hello rust"[..]));
    assert_eq!(hdr(&r, "content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(hdr(&r, "content-length"), Some("10"));

    let r = call(addr, Method::Get, "/nope", b"").await;
    assert_eq!(r.status, 404);

    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let r = call(addr, Method::Post, "/echo", &payload).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, payload);
    assert_eq!(hdr(&r, "x-len"), Some("300000"));

    let r = call(addr, Method::Put, "/json", br#"{"a":[1,2]}"#).await;
    assert_eq!(r.body, br#"{"got":{"a":[1,2]}}"#);
    let r = call(addr, Method::Put, "/json", b"{nope").await;
    assert_eq!(r.status, 400);

    let r = call(addr, Method::Unknown("PATCH".into()), "/echo", b"x").await;
    assert_eq!(r.status, 400);
    let r = call(addr, Method::Get, "/hello/x", b"body on GET").await;
    assert_eq!(r.status, 400);
    assert!(app.stats().snapshot().requests_total >= 7);
}

#[tokio::test]
async fn twenty_mib_download_streams_intact() {
    let (addr, _app) = start(demo_app()).await;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    send_request(&mut s, &request(Method::Get, "/big", Vec::new()))
        .await
        .unwrap();
    let (head, first) = betanet_app::client::read_response_head(&mut s)
        .await
        .unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty(), "streamed bodies are not inlined");
    let mut want = Sha256::new();
    for i in 0..BIG / (64 * 1024) {
        want.update(big_chunk(i));
    }
    let mut got = Sha256::new();
    got.update(&first);
    let mut n = first.len();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let k = s.read(&mut buf).await.unwrap();
        if k == 0 {
            break;
        }
        n += k;
        got.update(&buf[..k]);
    }
    assert_eq!(n, BIG);
    assert_eq!(got.finalize(), want.finalize());
}

#[tokio::test]
async fn malformed_and_truncated_heads_get_400() {
    let (addr, _app) = start(demo_app()).await;
    // A head that is not canonical CBOR.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&frame_head(&[0xa1, 0x61, 0x6d, 0x01]).unwrap())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let r = read_response(&mut s, 1 << 20).await.unwrap();
    assert_eq!(r.status, 400);
    // A length prefix promising more than arrives before FIN.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0, 0, 50, 1, 2]).await.unwrap();
    s.shutdown().await.unwrap();
    let r = read_response(&mut s, 1 << 20).await.unwrap();
    assert_eq!(r.status, 400);
    // A head length above the 1 MiB limit.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(&[0, 0x20, 0, 0]).await.unwrap();
    let r = read_response(&mut s, 1 << 20).await.unwrap();
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn stalled_request_body_gets_503_and_stalled_reader_is_aborted() {
    let mut app = demo_app();
    app.limits.stall_timeout = Duration::from_millis(300);
    let (addr, app) = start(app).await;
    // Head arrives, body never finishes (no FIN): 503.
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = request(Method::Post, "/echo", b"part".to_vec());
    s.write_all(&frame_head(&head.encode().unwrap()).unwrap())
        .await
        .unwrap();
    let r = read_response(&mut s, 1 << 20).await.unwrap();
    assert_eq!(r.status, 503);

    // A client that asks for 20 MiB and never reads: the server aborts the response.
    let before = app.stats().snapshot().errors_total;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    send_request(&mut s, &request(Method::Get, "/big", Vec::new()))
        .await
        .unwrap();
    let mut ok = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if app.stats().snapshot().errors_total > before {
            ok = true;
            break;
        }
    }
    assert!(ok, "stalled response was not aborted");
    // The stream was closed without a complete body.
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink).await;
    assert!(sink.len() < BIG);
}

#[tokio::test]
async fn serve_stream_over_duplex() {
    let app = demo_app().into_shared();
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
    let r = fetch(
        &mut client,
        &request(Method::Post, "/echo", b"over duplex".to_vec()),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(r.body, b"over duplex");
    task.await.unwrap().unwrap();
    let snap = app.stats().snapshot();
    assert_eq!(snap.streams, 0);
    assert_eq!(snap.requests_total, 1);
}

#[tokio::test]
async fn failing_body_source_resets_instead_of_finishing() {
    let (addr, app) = start(demo_app()).await;
    let r =
        betanet_app::client::fetch_tcp(addr, &request(Method::Get, "/broken", Vec::new()), 1 << 20)
            .await;
    assert!(
        r.is_err(),
        "a cut body must not look complete: {:?}",
        r.map(|r| r.body.len())
    );
    let mut ok = false;
    for _ in 0..100 {
        if app.stats().snapshot().errors_total >= 1 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(ok);
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Arbitrary inbound bytes: the server answers (or closes) and never panics; any
        /// answer it gives is a well-formed BAR response with a 4xx status.
        #[test]
        fn arbitrary_inbound_bytes_get_a_clean_answer(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let app = demo_app().into_shared();
                let (mut client, server) = tokio::io::duplex(1 << 16);
                let input = data.clone();
                let client_side = async move {
                    client.write_all(&input).await.unwrap();
                    client.shutdown().await.unwrap();
                    let mut out = Vec::new();
                    client.read_to_end(&mut out).await.unwrap();
                    out
                };
                let (served, out) = tokio::join!(serve_stream(app, server, PeerInfo::local()), client_side);
                if data.is_empty() {
                    assert!(served.is_ok());
                    assert!(out.is_empty());
                } else if !out.is_empty() {
                    let mut cur = std::io::Cursor::new(out);
                    let r = read_response(&mut cur, 1 << 20).await.unwrap();
                    assert!((400..500).contains(&r.status), "status {}", r.status);
                }
            });
        }
    }
}

/// Request bodies through the server's growing read buffers: a body split between the head's
/// `b` and a raw continuation arriving in small pieces, a large raw body, and one over the
/// limit (400).
#[tokio::test]
async fn request_bodies_through_growing_buffers() {
    let mut app = demo_app();
    app.limits.max_body = 300 * 1024;
    let app = app.into_shared();
    let body: Vec<u8> = (0..250 * 1024).map(|i| (i * 13 % 251) as u8).collect();

    // 1. Part in `b`, the rest raw in 3 KiB writes through a small pipe.
    let (mut client, server) = tokio::io::duplex(4 * 1024);
    let task = tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
    let head = betanet_wire::bar::Request {
        method: Method::Post,
        uri: "/echo".into(),
        headers: vec![],
        body: body[..700].to_vec(),
    };
    let writer = {
        let body = body.clone();
        async move {
            client
                .write_all(&frame_head(&head.encode().unwrap()).unwrap())
                .await
                .unwrap();
            for c in body[700..].chunks(3 * 1024) {
                client.write_all(c).await.unwrap();
            }
            client.shutdown().await.unwrap();
            read_response(&mut client, 1 << 20).await.unwrap()
        }
    };
    let r = tokio::time::timeout(Duration::from_secs(20), writer)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(hdr(&r, "x-len"), Some("256000"));
    assert_eq!(Sha256::digest(&r.body), Sha256::digest(&body));
    task.await.unwrap().unwrap();

    // 2. All raw (the client puts bodies over 64 KiB after the head).
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
    let r = fetch(
        &mut client,
        &request(Method::Post, "/echo", body.clone()),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(Sha256::digest(&r.body), Sha256::digest(&body));
    task.await.unwrap().unwrap();

    // 3. Over the limit: 400, and the server reports TooLarge.
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let task = tokio::spawn(serve_stream(app.clone(), server, PeerInfo::local()));
    let big = vec![1u8; 301 * 1024];
    let r = fetch(&mut client, &request(Method::Post, "/echo", big), 1 << 20)
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(matches!(
        task.await.unwrap(),
        Err(betanet_app::AppError::TooLarge { .. })
    ));
}
