//! Black-box cases mirroring netaio's own suite, plus the secure profile's attacks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use betanet_msg::compat::{HmacAuth, Sha256StreamCipher};
use betanet_msg::secure::{AeadCipher, MacAuth, PowAuth};
use betanet_msg::{
    Conn, Content, Message, MessageType, MsgError, Node, NodeBuilder, Peer, Plugins, Request, Uri,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const T: Option<Duration> = Some(Duration::from_secs(5));

fn lo() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

fn echo_server(b: NodeBuilder) -> (Node, Arc<AtomicUsize>) {
    let n = b.build();
    let calls = Arc::new(AtomicUsize::new(0));
    let c2 = calls.clone();
    n.on(
        (MessageType::REQUEST_URI, "echo"),
        move |Content(c): Content| {
            let calls = c2.clone();
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Message::new(MessageType::RESPOND_URI, &b"echo"[..], c)
            }
        },
    );
    n.on(MessageType::CREATE_URI, |Uri(u): Uri| async move {
        Message::new(MessageType::OK, u, &b"Resource saved."[..])
    });
    (n, calls)
}

async fn pair(
    server: NodeBuilder,
    client: NodeBuilder,
) -> (Node, Arc<AtomicUsize>, Node, Conn, SocketAddr) {
    let (s, calls) = echo_server(server);
    let addr = s.listen(lo()).await.unwrap();
    let c = client.build();
    let conn = c.connect(addr).await.unwrap();
    (s, calls, c, conn, addr)
}

#[tokio::test]
async fn request_response_and_create() {
    let (_s, calls, c, conn, _) = pair(NodeBuilder::compat(), NodeBuilder::compat()).await;
    let r = c
        .request(&conn, MessageType::REQUEST_URI, b"echo", b"hi", T)
        .await
        .unwrap();
    assert_eq!(
        (r.mtype, &r.body.content[..]),
        (MessageType::RESPOND_URI, &b"hi"[..])
    );
    let r = c.create(&conn, b"thing", b"x").await.unwrap();
    assert_eq!(
        (r.mtype, &r.body.uri[..], &r.body.content[..]),
        (MessageType::OK, &b"thing"[..], &b"Resource saved."[..])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn not_found_is_an_error_not_a_timeout() {
    let (_s, _, c, conn, _) = pair(NodeBuilder::compat(), NodeBuilder::compat()).await;
    let e = c
        .request(&conn, MessageType::REQUEST_URI, b"nope", b"", T)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MsgError::Remote { kind: MessageType::NOT_FOUND, ref content } if content == "not found"),
        "{e:?}"
    );
}

#[tokio::test]
async fn crc_error_gets_error_reply_and_connection_survives() {
    let (_s, _, _c, _conn, addr) = pair(NodeBuilder::compat(), NodeBuilder::compat()).await;
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let mut bad = Message::new(MessageType::REQUEST_URI, &b"echo"[..], &b"hello"[..])
        .encode()
        .unwrap();
    let n = bad.len();
    bad[n - 1] ^= 0xff;
    raw.write_all(&bad).await.unwrap();
    let want = Message::new(MessageType::ERROR, &b"ERROR"[..], &b"invalid message"[..])
        .encode()
        .unwrap();
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(got, want);
    raw.write_all(
        &Message::new(MessageType::REQUEST_URI, &b"echo"[..], &b"ok"[..])
            .encode()
            .unwrap(),
    )
    .await
    .unwrap();
    let want = Message::new(MessageType::RESPOND_URI, &b"echo"[..], &b"ok"[..])
        .encode()
        .unwrap();
    let mut got = vec![0u8; want.len()];
    raw.read_exact(&mut got).await.unwrap();
    assert_eq!(got, want);
}

#[tokio::test]
async fn hmac_auth_failure_leaves_handler_uncalled_and_connection_usable() {
    let sp = || {
        Plugins::none()
            .with_auth(HmacAuth::new("test"))
            .with_cipher(Sha256StreamCipher::new("test"))
    };
    let bad = Plugins::none()
        .with_auth(HmacAuth::new("wrong"))
        .with_cipher(Sha256StreamCipher::new("test"));
    let (s, calls, c, conn, addr) = pair(
        NodeBuilder::compat().plugins(sp()),
        NodeBuilder::compat().plugins(bad),
    )
    .await;
    let e = c
        .request(&conn, MessageType::REQUEST_URI, b"echo", b"x", T)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MsgError::Remote { kind: MessageType::AUTH_ERROR, ref content } if content == "HMAC auth failed"),
        "{e:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    // the same server still serves a good client; the bad connection stays open
    let good = NodeBuilder::compat().plugins(sp()).build();
    let gc = good.connect(addr).await.unwrap();
    let r = good
        .request(&gc, MessageType::REQUEST_URI, b"echo", b"y", T)
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"y");
    assert!(!conn.is_closed());
    assert_eq!(s.connections().len(), 2);
}

#[tokio::test]
async fn per_handler_auth_and_cipher() {
    let s = NodeBuilder::compat()
        .plugins(Plugins::none().with_auth(HmacAuth::new("outer")))
        .build();
    let inner = || {
        Plugins::none()
            .with_auth(HmacAuth::with_fields("inner", "camh", "n2", "ts2"))
            .with_cipher(Sha256StreamCipher::with_options("k2", "iv2", false))
    };
    s.on_with(
        (MessageType::REQUEST_URI, "secret"),
        inner(),
        |Content(c): Content| async move {
            assert_eq!(&c[..], b"psst");
            Message::new(
                MessageType::RESPOND_URI,
                &b"secret"[..],
                &b"Super secret data."[..],
            )
        },
    );
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat()
        .plugins(Plugins::none().with_auth(HmacAuth::new("outer")))
        .build();
    let conn = c.connect(addr).await.unwrap();
    let r = c
        .request_with(
            &conn,
            MessageType::REQUEST_URI,
            b"secret",
            b"psst",
            T,
            inner(),
        )
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"Super secret data.");
    // without the inner layer: inner auth fails -> AUTH_ERROR
    let e = c
        .request(&conn, MessageType::REQUEST_URI, b"secret", b"psst", T)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MsgError::Remote {
                kind: MessageType::AUTH_ERROR,
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn ephemeral_handler_runs_once() {
    let s = NodeBuilder::compat().build();
    s.once((MessageType::REQUEST_URI, "once"), || async {
        Message::new(MessageType::RESPOND_URI, &b"once"[..], &b"1"[..])
    });
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat().build();
    let conn = c.connect(addr).await.unwrap();
    assert_eq!(
        &c.request(&conn, MessageType::REQUEST_URI, b"once", b"", T)
            .await
            .unwrap()
            .body
            .content[..],
        b"1"
    );
    let e = c
        .request(&conn, MessageType::REQUEST_URI, b"once", b"", T)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        MsgError::Remote {
            kind: MessageType::NOT_FOUND,
            ..
        }
    ));
}

#[tokio::test]
async fn timeout_has_subsecond_precision() {
    let s = NodeBuilder::compat().build();
    s.on((MessageType::REQUEST_URI, "slow"), || async {
        tokio::time::sleep(Duration::from_secs(3)).await;
        Message::new(MessageType::RESPOND_URI, &b"slow"[..], &b""[..])
    });
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat().build();
    let conn = c.connect(addr).await.unwrap();
    let t0 = std::time::Instant::now();
    let e = c
        .request(
            &conn,
            MessageType::REQUEST_URI,
            b"slow",
            b"",
            Some(Duration::from_millis(150)),
        )
        .await
        .unwrap_err();
    assert!(matches!(e, MsgError::Timeout(_)));
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn secure_profile_roundtrip_concurrent_ids_and_chunking() {
    let s = NodeBuilder::secure(b"k").build();
    s.on(
        MessageType::REQUEST_URI,
        |Uri(u): Uri, Content(c): Content| async move {
            // answer out of order: later requests finish first
            let d = c.first().copied().unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(u64::from(20 - d.min(20)))).await;
            Message::new(MessageType::RESPOND_URI, u, c)
        },
    );
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::secure(b"k").build();
    let conn = c.connect(addr).await.unwrap();
    let futs: Vec<_> = (0u8..10)
        .map(|i| {
            let (c, conn) = (c.clone(), conn.clone());
            tokio::spawn(async move {
                c.request(&conn, MessageType::REQUEST_URI, b"same", &[i], T)
                    .await
            })
        })
        .collect();
    for (i, f) in futs.into_iter().enumerate() {
        assert_eq!(&f.await.unwrap().unwrap().body.content[..], &[i as u8]);
    }
    let big = vec![0x5au8; 300_000];
    let r = c
        .request(&conn, MessageType::REQUEST_URI, b"big", &big, T)
        .await
        .unwrap();
    assert_eq!(r.body.content.len(), big.len());
    assert!(r.body.content.iter().all(|b| *b == 0x5a));
    // wrong secret: AUTH_ERROR seen as an error
    let bad = NodeBuilder::secure(b"other").build();
    let bc = bad.connect(addr).await.unwrap();
    let e = bad
        .request(&bc, MessageType::REQUEST_URI, b"x", b"", T)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            MsgError::Remote {
                kind: MessageType::AUTH_ERROR,
                ..
            }
        ),
        "{e:?}"
    );
}

/// Capture a signed frame, then replay it and re-type it: both rejected, handler not re-run.
#[tokio::test]
async fn secure_rejects_replay_and_retyping() {
    let mk = || NodeBuilder::compat().plugins(Plugins::none().with_auth(MacAuth::new(b"k")));
    let s = mk().build();
    let reads = Arc::new(AtomicUsize::new(0));
    let deletes = Arc::new(AtomicUsize::new(0));
    let (r2, d2) = (reads.clone(), deletes.clone());
    s.on(MessageType::REQUEST_URI, move || {
        let r = r2.clone();
        async move {
            r.fetch_add(1, Ordering::SeqCst);
            Message::new(MessageType::RESPOND_URI, &b"a"[..], &b""[..])
        }
    });
    s.on(MessageType::DELETE_URI, move || {
        let d = d2.clone();
        async move {
            d.fetch_add(1, Ordering::SeqCst);
            Message::new(MessageType::OK, &b"a"[..], &b""[..])
        }
    });
    let addr = s.listen(lo()).await.unwrap();
    // a sealed frame as an on-path attacker would capture it
    let mut m = Message::new(MessageType::REQUEST_URI, &b"a"[..], &b""[..]);
    let mac = MacAuth::new(b"k");
    let mut rng = rand::thread_rng();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    betanet_msg::AuthPlugin::make(
        &mac,
        m.mtype,
        &mut m.auth,
        &m.body,
        &mut betanet_msg::PluginCx {
            now_ms: now,
            rng: &mut rng,
            peer: None,
        },
    )
    .unwrap();
    let frame = m.encode().unwrap();
    let mut retyped = frame.clone();
    retyped[0] = MessageType::DELETE_URI.0; // CRC covers only the body: still a valid frame
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let read_one = async |raw: &mut TcpStream| {
        let mut h = [0u8; 9];
        raw.read_exact(&mut h).await.unwrap();
        let n = betanet_msg::frame::frame_len(&h).unwrap() - 9;
        let mut rest = vec![0u8; n];
        raw.read_exact(&mut rest).await.unwrap();
        Message::decode(&[&h[..], &rest].concat()).unwrap()
    };
    raw.write_all(&frame).await.unwrap();
    assert_eq!(read_one(&mut raw).await.mtype, MessageType::RESPOND_URI);
    raw.write_all(&frame).await.unwrap();
    let r = read_one(&mut raw).await;
    assert_eq!(
        (r.mtype, &r.body.content[..]),
        (MessageType::AUTH_ERROR, &b"auth failed"[..])
    );
    raw.write_all(&retyped).await.unwrap();
    assert_eq!(read_one(&mut raw).await.mtype, MessageType::AUTH_ERROR);
    assert_eq!(reads.load(Ordering::SeqCst), 1);
    assert_eq!(deletes.load(Ordering::SeqCst), 0);
    let _ = mk;
}

#[tokio::test]
async fn aead_inner_layer_and_pow() {
    let s = NodeBuilder::compat()
        .plugins(Plugins::none().with_auth(PowAuth::new(10)))
        .build();
    s.on_with(
        (MessageType::REQUEST_URI, "e2e"),
        Plugins::none().with_cipher(AeadCipher::inner(b"room", "n2")),
        |Content(c): Content| async move { Message::new(MessageType::RESPOND_URI, &b"e2e"[..], c) },
    );
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat()
        .plugins(Plugins::none().with_auth(PowAuth::new(10)))
        .build();
    let conn = c.connect(addr).await.unwrap();
    let r = c
        .request_with(
            &conn,
            MessageType::REQUEST_URI,
            b"e2e",
            b"hello",
            T,
            Plugins::none().with_cipher(AeadCipher::inner(b"room", "n2")),
        )
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"hello");
    // no proof of work: rejected
    let lazy = NodeBuilder::compat().build();
    let lc = lazy.connect(addr).await.unwrap();
    let e = lazy
        .request(&lc, MessageType::REQUEST_URI, b"e2e", b"x", T)
        .await
        .unwrap_err();
    assert!(
        matches!(e, MsgError::Remote { kind: MessageType::AUTH_ERROR, ref content } if content.contains("proof of work")),
        "{e:?}"
    );
}

#[tokio::test]
async fn subscribe_notify_unsubscribe_broadcast() {
    let s = NodeBuilder::secure(b"k").build();
    s.on(MessageType::SUBSCRIBE_URI, |r: Request| async move {
        r.node.subscribe(&r.msg.body.uri, &r.conn);
        Message::new(
            MessageType::CONFIRM_SUBSCRIBE,
            r.msg.body.uri.clone(),
            &b""[..],
        )
    });
    s.on(MessageType::UNSUBSCRIBE_URI, |r: Request| async move {
        r.node.unsubscribe(&r.msg.body.uri, &r.conn);
        Message::new(
            MessageType::CONFIRM_UNSUBSCRIBE,
            r.msg.body.uri.clone(),
            &b""[..],
        )
    });
    let addr = s.listen(lo()).await.unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u8, Vec<u8>)>(16);
    let mut clients = Vec::new();
    for i in 0..2u8 {
        let c = NodeBuilder::secure(b"k").build();
        let tx = tx.clone();
        c.on(MessageType::NOTIFY_URI, move |Content(b): Content| {
            let tx = tx.clone();
            async move {
                tx.send((i, b.to_vec())).await.unwrap();
            }
        });
        let conn = c.connect(addr).await.unwrap();
        clients.push((c, conn));
    }
    // subscribe both (the handler is keyed on type only, so use raw request/OK semantics via send)
    for (c, conn) in &clients {
        c.send(
            conn,
            Message::new(MessageType::SUBSCRIBE_URI, &b"news"[..], &b""[..]),
        )
        .await
        .unwrap();
    }
    for _ in 0..50 {
        if s.subscribers(b"news").len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        s.notify(
            b"news",
            Message::new(MessageType::NOTIFY_URI, &b"news"[..], &b"n1"[..])
        )
        .await
        .unwrap(),
        2
    );
    let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    got.sort();
    assert_eq!(got, vec![(0, b"n1".to_vec()), (1, b"n1".to_vec())]);
    // unknown unsubscribe does not close anything; real unsubscribe works
    s.unsubscribe(b"nothing", &clients[0].1);
    let (c0, conn0) = &clients[0];
    c0.send(
        conn0,
        Message::new(MessageType::UNSUBSCRIBE_URI, &b"news"[..], &b""[..]),
    )
    .await
    .unwrap();
    for _ in 0..50 {
        if s.subscribers(b"news").len() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.subscribers(b"news").len(), 1);
    // broadcast reaches every connection
    assert_eq!(
        s.broadcast(Message::new(
            MessageType::NOTIFY_URI,
            &b"all"[..],
            &b"b"[..]
        ))
        .await
        .unwrap(),
        2
    );
    let mut got = vec![rx.recv().await.unwrap().1, rx.recv().await.unwrap().1];
    got.sort();
    assert_eq!(got, vec![b"b".to_vec(), b"b".to_vec()]);
    // a closed client is removed from subscriptions
    drop(clients);
    for _ in 0..100 {
        if s.subscribers(b"news").is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn tcp_peer_exchange_and_disconnect() {
    let p = |id: u8| Peer::new(vec![id; 16], Peer::encode_data(&[("pubkey", &[id; 32])]));
    let s = NodeBuilder::compat()
        .peer(
            p(1),
            b"app",
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
        .build();
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat()
        .peer(
            p(2),
            b"app",
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
        .build();
    let _conn = c.connect(addr).await.unwrap();
    for _ in 0..100 {
        if !s.peers().is_empty() && !c.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(&s.peers()[0].id[..], &[2u8; 16]);
    assert_eq!(&c.peers()[0].id[..], &[1u8; 16]);
    assert_eq!(c.disconnect_peers().await, 1);
    for _ in 0..100 {
        if s.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(s.peers().is_empty());
}

#[tokio::test]
async fn udp_unicast_discovery_request_and_ipv6() {
    let p = |id: u8| Peer::new(vec![id; 16], Vec::new());
    let a = NodeBuilder::secure(b"k")
        .peer(
            p(1),
            b"netaio",
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .build();
    let b = NodeBuilder::secure(b"k")
        .peer(
            p(2),
            b"netaio",
            Duration::from_secs(20),
            Duration::from_millis(300),
        )
        .build();
    let aa = a.bind_udp(lo()).await.unwrap();
    let _ba = b.bind_udp(lo()).await.unwrap();
    b.on(MessageType::REQUEST_URI, |Content(c): Content| async move {
        tokio::task::yield_now().await; // async UDP handlers are awaited
        Message::new(MessageType::RESPOND_URI, &b"u"[..], c)
    });
    let _ = aa;
    b.advertise_to(aa).await.unwrap();
    for _ in 0..100 {
        if !a.peers().is_empty() && !b.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(a.peers().len(), 1);
    assert_eq!(b.peers().len(), 1);
    let to_b = a.udp_conn(a.peers()[0].addrs[0]).unwrap();
    let r = a
        .request(&to_b, MessageType::REQUEST_URI, b"u", b"dgram", T)
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"dgram");
    // sub-second peer timeout
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.expire_peers(), 1);
    assert!(a.peers().is_empty());
    // IPv6 (skip quietly if the host has no ::1)
    let v6: SocketAddr = "[::1]:0".parse().unwrap();
    if std::net::UdpSocket::bind(v6).is_ok() {
        let s = NodeBuilder::compat().build();
        s.on(MessageType::REQUEST_URI, || async {
            Message::new(MessageType::RESPOND_URI, &b""[..], &b"v6"[..])
        });
        let addr = s.listen(v6).await.unwrap();
        let c = NodeBuilder::compat().build();
        let conn = c.connect(addr).await.unwrap();
        assert_eq!(
            &c.request(&conn, MessageType::REQUEST_URI, b"", b"", T)
                .await
                .unwrap()
                .body
                .content[..],
            b"v6"
        );
    } else {
        eprintln!("SKIP ipv6 part: ::1 not available");
    }
}

#[tokio::test]
async fn several_udp_nodes_share_a_port() {
    let a = NodeBuilder::compat().build();
    let b = NodeBuilder::compat().build();
    let addr = a.bind_udp(lo()).await.unwrap();
    let addr_b = b.bind_udp(addr).await.unwrap();
    assert_eq!(addr, addr_b);
}

#[tokio::test]
async fn transport_abstraction_over_duplex() {
    let s = NodeBuilder::secure(b"k").build();
    s.on((MessageType::REQUEST_URI, "echo"), |Content(c): Content| async move { Message::new(MessageType::RESPOND_URI, &b"echo"[..], c) });
    let c = NodeBuilder::secure(b"k").build();
    let (x, y) = tokio::io::duplex(1 << 16);
    s.serve(x, None);
    let conn = c.attach(y, None);
    let r = c
        .request(
            &conn,
            MessageType::REQUEST_URI,
            b"echo",
            b"over any stream",
            T,
        )
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"over any stream");
    let e = c
        .request(&conn, MessageType::REQUEST_URI, b"missing", b"", T)
        .await
        .unwrap_err();
    assert!(matches!(
        e,
        MsgError::Remote {
            kind: MessageType::NOT_FOUND,
            ..
        }
    ));
}

#[tokio::test]
async fn x25519_inner_cipher_after_peer_exchange() {
    use betanet_msg::compat::X25519Cipher;
    let ks = X25519Cipher::from_seed(&[1; 32]);
    let kc = X25519Cipher::from_seed(&[2; 32]);
    let ps = Peer::new(
        vec![1u8; 16],
        Peer::encode_data(&[("pubkey", &ks.public_key())]),
    );
    let pc = Peer::new(
        vec![2u8; 16],
        Peer::encode_data(&[("pubkey", &kc.public_key())]),
    );
    let s = NodeBuilder::compat()
        .peer(
            ps,
            b"netaio",
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
        .build();
    s.on_with(
        (MessageType::REQUEST_URI, "box"),
        Plugins::none().with_cipher(ks),
        |Content(c): Content| async move { Message::new(MessageType::RESPOND_URI, &b"box"[..], c) },
    );
    let addr = s.listen(lo()).await.unwrap();
    let c = NodeBuilder::compat()
        .peer(
            pc,
            b"netaio",
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
        .build();
    let conn = c.connect(addr).await.unwrap();
    for _ in 0..100 {
        if !s.peers().is_empty() && !c.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let r = c
        .request_with(
            &conn,
            MessageType::REQUEST_URI,
            b"box",
            b"sealed",
            T,
            Plugins::none().with_cipher(kc),
        )
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"sealed");
}

#[tokio::test]
async fn e2e_relay_cannot_read_inner_layer() {
    let relay = NodeBuilder::secure(b"hop").build();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    relay.on((MessageType::PUBLISH_URI, "room"), move |r: Request| {
        let seen_tx = seen_tx.clone();
        async move {
            seen_tx.send(r.msg.body.content.to_vec()).await.unwrap();
            let mut m = Message::new(
                MessageType::NOTIFY_URI,
                &b"room"[..],
                r.msg.body.content.clone(),
            );
            m.auth
                .set_bytes("e2e", r.msg.auth.get_bytes("e2e").unwrap().to_vec());
            r.node.broadcast(m).await.unwrap();
        }
    });
    let addr = relay.listen(lo()).await.unwrap();
    let e2e = || Plugins::none().with_cipher(AeadCipher::inner(b"room key", "e2e"));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    let bob = NodeBuilder::secure(b"hop").build();
    bob.on_with(
        (MessageType::NOTIFY_URI, "room"),
        e2e(),
        move |Content(c): Content| {
            let tx = tx.clone();
            async move { tx.send(c.to_vec()).await.unwrap() }
        },
    );
    let _bc = bob.connect(addr).await.unwrap();
    let alice = NodeBuilder::secure(b"hop").build();
    let ac = alice.connect(addr).await.unwrap();
    alice
        .send_with(
            &ac,
            Message::new(MessageType::PUBLISH_URI, &b"room"[..], &b"top secret"[..]),
            &e2e(),
        )
        .await
        .unwrap();
    let at_relay = seen_rx.recv().await.unwrap();
    assert!(!at_relay.windows(10).any(|w| w == b"top secret"));
    assert_eq!(rx.recv().await.unwrap(), b"top secret".to_vec());
}

#[tokio::test]
async fn handler_keyed_by_peer_address_wins_over_uri_key() {
    let s = NodeBuilder::compat().build();
    s.on((MessageType::REQUEST_URI, "who"), || async {
        Message::new(MessageType::RESPOND_URI, &b"who"[..], &b"anyone"[..])
    });
    let addr = s.listen(lo()).await.unwrap();
    let (c1, c2) = (NodeBuilder::compat().build(), NodeBuilder::compat().build());
    let k1 = c1.connect(addr).await.unwrap();
    let ask = |c: Node, k: Conn| async move {
        c.request(&k, MessageType::REQUEST_URI, b"who", b"", T)
            .await
            .unwrap()
            .body
            .content
    };
    assert_eq!(&ask(c1.clone(), k1.clone()).await[..], b"anyone");
    let first = s.connections()[0].remote().unwrap();
    s.on((MessageType::REQUEST_URI, "who", first), || async {
        Message::new(MessageType::RESPOND_URI, &b"who"[..], &b"you"[..])
    });
    let k2 = c2.connect(addr).await.unwrap();
    assert_eq!(&ask(c1, k1).await[..], b"you");
    assert_eq!(&ask(c2, k2).await[..], b"anyone");
}
