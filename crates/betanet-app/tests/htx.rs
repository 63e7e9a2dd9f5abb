#![cfg(feature = "htx")]
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! `betanet_app::htx` end to end over a real HTX/tcp12 connection on 127.0.0.1 (run with
//! `cargo test -p betanet-app --features htx`): the exchanges of one connection are served
//! concurrently inside the connection's task (a slow handler does not hold back a later
//! stream), a panicking handler costs only its own exchange (500), and the connection keeps
//! serving.

use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::sign::SigningKey;
use betanet_wire::bar::stream::{frame_head, split_head};
use betanet_wire::bar::{self, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

fn app(gate: Arc<Notify>) -> Arc<betanet_app::App> {
    let mut app = betanet_app::App::new();
    app.get("/slow", move |_req: betanet_app::Request| {
        let gate = gate.clone();
        async move {
            gate.notified().await;
            "slow done\n"
        }
    })
    .unwrap();
    app.get(
        "/fast",
        |_req: betanet_app::Request| async move { "fast\n" },
    )
    .unwrap();
    // Larger than the stream's initial credit: the exchange has to wait for WINDOW_UPDATEs,
    // so it moves from the connection's task to its own.
    app.get("/big", |_req: betanet_app::Request| async move {
        betanet_app::Response::new(200, bytes::Bytes::from(big_body()))
    })
    .unwrap();
    app.get("/panic", |_req: betanet_app::Request| async move {
        if std::hint::black_box(true) {
            panic!("handler bug");
        }
        "unreachable"
    })
    .unwrap();
    app.into_shared()
}

fn big_body() -> Vec<u8> {
    (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect()
}

async fn exchange(conn: &betanet_net::Connection, path: &str) -> (u16, Vec<u8>) {
    let mut s = conn.open_stream().unwrap();
    let req = bar::Request {
        method: Method::Get,
        uri: path.into(),
        headers: vec![("host".into(), bar::HeaderValue::Text("site.test".into()))],
        body: vec![],
    };
    s.write_all(&frame_head(&req.encode().unwrap()).unwrap())
        .await
        .unwrap();
    s.shutdown().await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let (head, used) = split_head(&buf).unwrap().unwrap();
    let resp = bar::Response::decode(head).unwrap();
    let mut body = resp.body;
    body.extend_from_slice(&buf[used..]);
    (resp.status, body)
}

#[tokio::test]
async fn streams_of_one_connection_are_served_concurrently() {
    let site_key = SigningKey::from_seed(&[7; 32]);
    let site_pub = site_key.verifying_key();
    let mut cfg = betanet_net::ServerConfig::new(site_key);
    cfg.pq = betanet_net::PqMode::Classic;
    let listener = betanet_net::listen("127.0.0.1:0", cfg).await.unwrap();
    let addr = listener.local_addr().to_string();
    let gate = Arc::new(Notify::new());
    let server = tokio::spawn(betanet_app::htx::serve_listener(
        app(gate.clone()),
        listener,
        4,
    ));
    let mut ccfg = betanet_net::ClientConfig::new(SigningKey::from_seed(&[9; 32]));
    ccfg.pq = betanet_net::PqMode::Classic;
    let conn = betanet_net::dial(&addr, &site_pub, &ccfg).await.unwrap();

    // Stream 1 waits in its handler; stream 2 on the same connection must still complete.
    let slow = exchange(&conn, "/slow");
    tokio::pin!(slow);
    let fast = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::select! {
            biased;
            _ = &mut slow => panic!("the slow exchange finished before it was released"),
            r = exchange(&conn, "/fast") => r,
        }
    })
    .await
    .expect("a later stream was held back by a slow one");
    assert_eq!(fast, (200, b"fast\n".to_vec()));
    gate.notify_one();
    let slow = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .unwrap();
    assert_eq!(slow, (200, b"slow done\n".to_vec()));

    // A panicking handler: 500 for that exchange, the connection keeps serving.
    let (status, _) = tokio::time::timeout(Duration::from_secs(10), exchange(&conn, "/panic"))
        .await
        .unwrap();
    assert_eq!(status, 500);
    for _ in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(10), exchange(&conn, "/fast"))
            .await
            .unwrap();
        assert_eq!(r, (200, b"fast\n".to_vec()));
    }
    // Two large responses at once on the same connection, and a small one beside them.
    let (a, b, c) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(
            exchange(&conn, "/big"),
            exchange(&conn, "/big"),
            exchange(&conn, "/fast")
        )
    })
    .await
    .unwrap();
    let want = big_body();
    assert_eq!(a.0, 200);
    assert!(a.1 == want, "first large body differs");
    assert!(b.1 == want, "second large body differs");
    assert_eq!(c, (200, b"fast\n".to_vec()));
    let (status, body) = exchange(&conn, "/nope").await;
    assert_eq!(status, 404);
    assert!(!body.is_empty());
    server.abort();
}
