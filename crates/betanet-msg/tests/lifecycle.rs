//! Connection lifecycle: client reconnect (server restart on the same port, timeouts on a
//! silent link, server down for a while) and graceful shutdown of servers, clients and single
//! connections (ports freed, in-flight handlers finish, peers see a clean close, not a hang).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use betanet_msg::{
    Content, Message, MessageType, MsgError, Node, NodeBuilder, Reconnect, ShutdownStats,
};
use tokio::sync::mpsc;

const T: Option<Duration> = Some(Duration::from_secs(5));

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Echo server whose replies are prefixed with `tag` (to tell server generations apart).
fn tagged_echo(b: NodeBuilder, tag: &'static [u8]) -> Node {
    let n = b.build();
    n.on(
        (MessageType::REQUEST_URI, "echo"),
        move |Content(c): Content| async move {
            let mut v = tag.to_vec();
            v.extend_from_slice(&c);
            Message::new(MessageType::RESPOND_URI, &b"echo"[..], v)
        },
    );
    n
}

/// A server whose `slow` handler reports its start on `started` and takes `dur`.
fn slow_server(dur: Duration) -> (Node, mpsc::Receiver<()>) {
    let n = NodeBuilder::secure(b"k").build();
    let (tx, rx) = mpsc::channel(4);
    n.on(
        (MessageType::REQUEST_URI, "slow"),
        move |Content(c): Content| {
            let tx = tx.clone();
            async move {
                tx.send(()).await.unwrap();
                tokio::time::sleep(dur).await;
                Message::new(MessageType::RESPOND_URI, &b"slow"[..], c)
            }
        },
    );
    (n, rx)
}

fn quick_reconnect() -> Reconnect {
    Reconnect {
        attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(40),
        connect_timeout: Duration::from_secs(1),
        ..Reconnect::default()
    }
}

async fn echo(c: &Node, conn: &betanet_msg::Conn, body: &[u8]) -> betanet_msg::Result<Vec<u8>> {
    c.request(conn, MessageType::REQUEST_URI, b"echo", body, T)
        .await
        .map(|m| m.body.content.to_vec())
}

#[tokio::test]
async fn reconnects_after_server_restart_on_the_same_port() {
    let a = tagged_echo(NodeBuilder::secure(b"k"), b"A:");
    let addr = a.listen(lo()).await.unwrap();
    let client = NodeBuilder::secure(b"k")
        .reconnect(Some(quick_reconnect()))
        .build();
    let conn = client.connect(addr).await.unwrap();
    assert_eq!(conn.dial_addr(), Some(addr));
    assert_eq!(echo(&client, &conn, b"1").await.unwrap(), b"A:1");

    let st = a.shutdown(Duration::from_secs(2)).await;
    assert_eq!(
        st,
        ShutdownStats {
            listeners: 1,
            closed: 1,
            forced: 0
        }
    );
    // The client sees the close promptly (FIN), not at its next request.
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .expect("client did not see the server's close");
    assert!(conn.is_closed());

    // Server down: the request re-dials with backoff and fails with the connect error.
    let t0 = Instant::now();
    let e = echo(&client, &conn, b"2").await.unwrap_err();
    assert!(matches!(e, MsgError::Io(_)), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(conn.is_closed());

    // A new server on the same port: the next request reconnects and succeeds.
    let b = tagged_echo(NodeBuilder::secure(b"k"), b"B:");
    assert_eq!(b.listen(addr).await.unwrap(), addr);
    let id = conn.id();
    assert_eq!(echo(&client, &conn, b"3").await.unwrap(), b"B:3");
    assert!(!conn.is_closed());
    assert_eq!(conn.id(), id, "same Conn handle after reconnect");
    assert_eq!(b.connections().len(), 1);
    // and keeps working
    assert_eq!(echo(&client, &conn, b"4").await.unwrap(), b"B:4");
    b.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn without_reconnect_a_dropped_connection_stays_closed() {
    let a = tagged_echo(NodeBuilder::compat(), b"A:");
    let addr = a.listen(lo()).await.unwrap();
    let client = NodeBuilder::compat().reconnect(None).build();
    let conn = client.connect(addr).await.unwrap();
    assert_eq!(echo(&client, &conn, b"x").await.unwrap(), b"A:x");
    a.shutdown(Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .unwrap();
    let b = tagged_echo(NodeBuilder::compat(), b"B:");
    b.listen(addr).await.unwrap();
    let e = echo(&client, &conn, b"y").await.unwrap_err();
    assert!(matches!(e, MsgError::Closed), "{e:?}");
    assert!(b.connections().is_empty());
}

#[tokio::test]
async fn timeout_on_a_silent_link_redials_like_netaio_auto_reconnect() {
    // Raw listener: the first connection is a black hole, the second is served for real.
    let l = tokio::net::TcpListener::bind(lo()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let acc = accepts.clone();
    let server = tagged_echo(NodeBuilder::compat(), b"S:");
    let srv = server.clone();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        for i in 0..2 {
            let (s, a) = l.accept().await.unwrap();
            acc.fetch_add(1, Ordering::SeqCst);
            if i == 0 {
                held.push(s); // never answers
            } else {
                srv.serve(s, Some(a));
            }
        }
        held
    });
    let client = NodeBuilder::compat()
        .reconnect(Some(quick_reconnect()))
        .build();
    let conn = client.connect(addr).await.unwrap();
    let e = client
        .request(
            &conn,
            MessageType::REQUEST_URI,
            b"echo",
            b"1",
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MsgError::Timeout(_)), "{e:?}");
    assert!(conn.is_closed(), "silent link was not reset");
    assert_eq!(echo(&client, &conn, b"2").await.unwrap(), b"S:2");
    assert_eq!(accepts.load(Ordering::SeqCst), 2);
    let held = task.await.unwrap();
    assert_eq!(held.len(), 1);
}

#[tokio::test]
async fn timeout_on_a_live_link_does_not_reset_it_when_disabled() {
    let (s, mut started) = slow_server(Duration::from_millis(400));
    let addr = s.listen(lo()).await.unwrap();
    let client = NodeBuilder::secure(b"k")
        .reconnect(Some(Reconnect {
            on_timeout: false,
            ..quick_reconnect()
        }))
        .build();
    let conn = client.connect(addr).await.unwrap();
    let e = client
        .request(
            &conn,
            MessageType::REQUEST_URI,
            b"slow",
            b"",
            Some(Duration::from_millis(50)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MsgError::Timeout(_)));
    started.recv().await.unwrap();
    assert!(!conn.is_closed());
    let id_before = s.connections()[0].id();
    let r = client
        .request(&conn, MessageType::REQUEST_URI, b"slow", b"ok", T)
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"ok");
    assert_eq!(s.connections()[0].id(), id_before, "no new connection");
}

#[tokio::test]
async fn server_shutdown_lets_inflight_handler_finish_and_frees_the_port() {
    let (s, mut started) = slow_server(Duration::from_millis(300));
    let addr = s.listen(lo()).await.unwrap();
    assert_eq!(s.listening(), vec![addr]);
    let client = NodeBuilder::secure(b"k").reconnect(None).build();
    let conn = client.connect(addr).await.unwrap();
    let (c2, k2) = (client.clone(), conn.clone());
    let inflight = tokio::spawn(async move {
        c2.request(&k2, MessageType::REQUEST_URI, b"slow", b"in flight", T)
            .await
    });
    started.recv().await.unwrap();
    let t0 = Instant::now();
    let st = s.shutdown(Duration::from_secs(3)).await;
    let took = t0.elapsed();
    assert_eq!(
        st,
        ShutdownStats {
            listeners: 1,
            closed: 1,
            forced: 0
        }
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(s.is_shut_down());
    assert!(s.connections().is_empty());
    assert!(s.listening().is_empty());
    // The in-flight request got its answer before the close.
    let r = inflight.await.unwrap().unwrap();
    assert_eq!(&r.body.content[..], b"in flight");
    // The client sees a clean close, and a request fails at once instead of hanging.
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .unwrap();
    let t0 = Instant::now();
    let e = client
        .request(&conn, MessageType::REQUEST_URI, b"slow", b"", T)
        .await
        .unwrap_err();
    assert!(matches!(e, MsgError::Closed), "{e:?}");
    assert!(t0.elapsed() < Duration::from_millis(500));
    // Nothing listens any more, and the port can be bound again.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    let again = std::net::TcpListener::bind(addr).expect("port still busy after shutdown");
    drop(again);
    // A shut-down node refuses new work.
    assert!(matches!(s.listen(lo()).await, Err(MsgError::Closed)));
    assert!(matches!(s.connect(addr).await, Err(MsgError::Closed)));
}

#[tokio::test]
async fn server_shutdown_cuts_handlers_that_exceed_the_grace_period() {
    let (s, mut started) = slow_server(Duration::from_secs(30));
    let addr = s.listen(lo()).await.unwrap();
    let client = NodeBuilder::secure(b"k").reconnect(None).build();
    let conn = client.connect(addr).await.unwrap();
    let (c2, k2) = (client.clone(), conn.clone());
    let t0 = Instant::now();
    let inflight = tokio::spawn(async move {
        c2.request(
            &k2,
            MessageType::REQUEST_URI,
            b"slow",
            b"",
            Some(Duration::from_secs(20)),
        )
        .await
    });
    started.recv().await.unwrap();
    let st = s.shutdown(Duration::from_millis(200)).await;
    assert_eq!(
        st,
        ShutdownStats {
            listeners: 1,
            closed: 0,
            forced: 1
        }
    );
    let e = tokio::time::timeout(Duration::from_secs(3), inflight)
        .await
        .expect("client request hung after the server was cut")
        .unwrap()
        .unwrap_err();
    assert!(matches!(e, MsgError::Closed), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    assert!(std::net::TcpListener::bind(addr).is_ok());
}

#[tokio::test]
async fn client_shutdown_waits_for_its_pending_request_then_closes() {
    let (s, mut started) = slow_server(Duration::from_millis(200));
    let addr = s.listen(lo()).await.unwrap();
    let client = NodeBuilder::secure(b"k").build();
    let conn = client.connect(addr).await.unwrap();
    let (c2, k2) = (client.clone(), conn.clone());
    let inflight = tokio::spawn(async move {
        c2.request(&k2, MessageType::REQUEST_URI, b"slow", b"answer", T)
            .await
    });
    started.recv().await.unwrap();
    let st = client.shutdown(Duration::from_secs(3)).await;
    assert_eq!(
        st,
        ShutdownStats {
            listeners: 0,
            closed: 1,
            forced: 0
        }
    );
    assert_eq!(
        &inflight.await.unwrap().unwrap().body.content[..],
        b"answer"
    );
    assert!(conn.is_closed());
    // Reconnect is on by default, but a shut-down node never re-dials.
    let e = client
        .request(&conn, MessageType::REQUEST_URI, b"slow", b"", T)
        .await
        .unwrap_err();
    assert!(matches!(e, MsgError::Closed), "{e:?}");
    // The server saw the client's FIN and dropped the connection.
    let mut gone = false;
    for _ in 0..100 {
        if s.connections().is_empty() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(gone, "server still holds the client's connection");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn closing_one_connection_keeps_the_node_running() {
    let a = tagged_echo(NodeBuilder::compat(), b"A:");
    let addr = a.listen(lo()).await.unwrap();
    let client = NodeBuilder::compat().build();
    let c1 = client.connect(addr).await.unwrap();
    let c2 = client.connect(addr).await.unwrap();
    let st = client.close(&c1, Duration::from_secs(1)).await;
    assert_eq!((st.closed, st.forced), (1, 0));
    assert!(c1.is_closed());
    // A closed-on-purpose connection does not re-dial, even with reconnect on.
    assert!(matches!(
        echo(&client, &c1, b"x").await.unwrap_err(),
        MsgError::Closed
    ));
    assert_eq!(echo(&client, &c2, b"y").await.unwrap(), b"A:y");
    assert_eq!(client.connections(), vec![c2.clone()]);
}

#[tokio::test]
async fn shutdown_over_an_in_memory_transport_closes_cleanly() {
    let server = tagged_echo(NodeBuilder::secure(b"k"), b"D:");
    let client = NodeBuilder::secure(b"k").build();
    let (a, b) = tokio::io::duplex(64 * 1024);
    server.serve(a, None);
    let conn = client.attach(b, None);
    assert_eq!(echo(&client, &conn, b"1").await.unwrap(), b"D:1");
    let st = server.shutdown(Duration::from_secs(1)).await;
    assert_eq!((st.listeners, st.closed, st.forced), (0, 1, 0));
    tokio::time::timeout(Duration::from_secs(2), conn.closed())
        .await
        .expect("duplex peer did not see the close");
    assert!(matches!(
        echo(&client, &conn, b"2").await.unwrap_err(),
        MsgError::Closed
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_race_request_right_after_restart_succeeds() {
    // The request is issued before the client has necessarily processed the old server's
    // FIN: it either re-dials first or is retried once on a fresh connection (a read).
    // Secure (request ids) and compat (first-in first-out matching per URI) profiles.
    for mk in [
        || NodeBuilder::secure(b"k"),
        NodeBuilder::compat as fn() -> NodeBuilder,
    ] {
        let client = mk().reconnect(Some(quick_reconnect())).build();
        let a = tagged_echo(mk(), b"0:");
        let addr = a.listen(lo()).await.unwrap();
        let conn = client.connect(addr).await.unwrap();
        assert_eq!(echo(&client, &conn, b"x").await.unwrap(), b"0:x");
        let mut old = a;
        for (i, tag) in [&b"1:"[..], b"2:", b"3:"].into_iter().enumerate() {
            old.shutdown(Duration::from_secs(1)).await;
            let tag: &'static [u8] = tag;
            let next = tagged_echo(mk(), tag);
            next.listen(addr).await.unwrap();
            for j in 0..3u8 {
                let got = echo(&client, &conn, &[b'a' + j]).await;
                let mut want = tag.to_vec();
                want.push(b'a' + j);
                assert_eq!(got.unwrap(), want, "restart {i}, request {j}");
            }
            old = next;
        }
        old.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn tcp_send_queue_is_bounded_and_order_is_kept() {
    // A peer that does not read: after the kernel buffers and the 4-frame queue fill up,
    // `send` waits (backpressure) instead of buffering without bound.
    let l = tokio::net::TcpListener::bind(lo()).await.unwrap();
    let addr = l.local_addr().unwrap();
    let client = NodeBuilder::compat().queue(4).reconnect(None).build();
    let conn = client.connect(addr).await.unwrap();
    let (mut peer, _) = l.accept().await.unwrap();
    let sent = Arc::new(AtomicUsize::new(0));
    let (c2, k2, s2) = (client.clone(), conn.clone(), sent.clone());
    let big = vec![7u8; 60_000];
    let sender = tokio::spawn(async move {
        for i in 0..2000u32 {
            let mut body = i.to_be_bytes().to_vec();
            body.extend_from_slice(&big);
            c2.send(&k2, Message::new(MessageType::PUBLISH_URI, &b"p"[..], body))
                .await
                .unwrap();
            s2.fetch_add(1, Ordering::SeqCst);
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stuck_at = sent.load(Ordering::SeqCst);
    assert!(
        stuck_at < 2000,
        "120 MB accepted without the peer reading: no backpressure"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sent.load(Ordering::SeqCst), stuck_at, "sender not blocked");
    // Now read everything: all frames arrive, complete and in order.
    use tokio::io::AsyncReadExt;
    let mut buf = bytes::BytesMut::new();
    let mut next = 0u32;
    let reader = async {
        while next < 2000 {
            while let Some(m) = betanet_msg::frame::decode_frame(&mut buf).unwrap() {
                let m = m.unwrap();
                assert_eq!(&m.body.content[..4], &next.to_be_bytes());
                assert_eq!(m.body.content.len(), 60_004);
                next += 1;
            }
            if next == 2000 || peer.read_buf(&mut buf).await.unwrap() == 0 {
                break;
            }
        }
    };
    let drained = tokio::time::timeout(Duration::from_secs(20), reader).await;
    assert!(drained.is_ok(), "frames did not drain: {next} of 2000");
    assert_eq!(next, 2000);
    sender.await.unwrap();
}
