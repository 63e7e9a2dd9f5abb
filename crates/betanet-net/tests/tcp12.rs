//! Loopback integration tests of the `tcp12` carriage.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use betanet_net::{ErrorCode, HtxConfig, NetError, Transport, dial};
use betanet_wire::frame::{Payload, StreamPayload};
use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn rekey_cfg() -> HtxConfig {
    // Small frames and a KEY_UPDATE every 1024 frames.
    HtxConfig {
        rekey_frames: 1024,
        max_frame_data: 4096,
        ..HtxConfig::default()
    }
}

async fn big_transfer(transport: Transport, per_stream: u64, streams: u64) {
    let tls = (transport == Transport::Tls).then(tls_pair);
    let mut l = server(
        transport,
        rekey_cfg(),
        tls.as_ref().map(|t| t.server.clone()),
    )
    .await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(transport, rekey_cfg(), tls.map(|t| t.client));
    let (client, server) = {
        let vk = key(2).verifying_key();
        tokio::join!(dial(&addr, &vk, &cfg), l.accept())
    };
    let (client, server) = (client.unwrap(), server.unwrap());
    let t0 = Instant::now();
    bidi_transfer(&client, &server, streams, per_stream).await;
    let el = t0.elapsed();
    let cs = client.stats();
    let ss = server.stats();
    let total = per_stream * streams;
    eprintln!(
        "{transport}: {} MiB each way over {streams} streams in {:.2} s ({:.0} MiB/s each way); rekeys client {} server {}, frames {} / {}",
        total >> 20,
        el.as_secs_f64(),
        (total >> 20) as f64 / el.as_secs_f64(),
        cs.htx.rekeys_sent,
        ss.htx.rekeys_sent,
        cs.htx.frames_sent,
        ss.htx.frames_sent
    );
    assert_eq!(cs.htx.stream_bytes_sent, total);
    assert_eq!(ss.htx.stream_bytes_received, total);
    assert!(cs.htx.rekeys_sent >= cs.htx.frames_sent / 1025 - 1);
    assert_eq!(ss.htx.rekeys_received, cs.htx.rekeys_sent);
    if total >= 1 << 30 {
        assert!(cs.htx.rekeys_sent + ss.htx.rekeys_sent >= 256);
    }
}

fn big() -> bool {
    std::env::var("BETANET_BIG").is_ok_and(|v| v == "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_32_streams_with_rekeys() {
    if big() {
        big_transfer(Transport::Tcp12, 32 << 20, 32).await;
    } else {
        big_transfer(Transport::Tcp12, 1 << 20, 32).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_32_streams_with_rekeys_tls() {
    if big() {
        big_transfer(Transport::Tls, 32 << 20, 32).await;
    } else {
        big_transfer(Transport::Tls, 512 << 10, 32).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_key_is_auth_failed_fast() {
    let l = server(Transport::Tcp12, quiet(), None).await;
    let addr = l.local_addr().to_string();
    let t0 = Instant::now();
    let r = dial(
        &addr,
        &key(99).verifying_key(),
        &client_cfg(Transport::Tcp12, quiet(), None),
    )
    .await;
    let e = r.unwrap_err();
    assert!(matches!(e, NetError::AuthFailed { .. }), "{e}");
    assert_eq!(e.close_code(), Some(ErrorCode::AuthFailed));
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("public key"));
}

#[tokio::test]
async fn refused_connection_is_clear() {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    drop(l);
    let e = dial(
        &addr,
        &key(2).verifying_key(),
        &client_cfg(Transport::Tcp12, quiet(), None),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NetError::Refused { .. }), "{e}");
    assert!(e.to_string().contains("refused"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_after_handshake_is_close_7_quickly_and_memory_stays_flat() {
    let mut l = server(Transport::Tcp12, quiet(), None).await;
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            // Hold each connection until it ends (dropping it would close it with code 0).
            tokio::spawn(async move { c.closed().await });
        }
    });
    let mut before = 0;
    for i in 0..60 {
        if i == 10 {
            before = rss();
        }
        let mut raw = RawClient::connect(addr).await;
        let t0 = Instant::now();
        let junk: Vec<u8> = (0..200u32).map(|x| (x * 7 + i) as u8).collect();
        raw.tcp.write_all(&junk).await.unwrap();
        assert_eq!(
            raw.close_code(Duration::from_secs(1)).await,
            Some(ErrorCode::MalformedFrame)
        );
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    let growth = rss().saturating_sub(before);
    assert!(
        growth < 16 << 20,
        "RSS grew by {growth} bytes over 50 bad connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_violation_is_close_5() {
    let mut l = server(Transport::Tcp12, quiet(), None).await;
    let addr = l.local_addr();
    tokio::spawn(async move {
        while let Ok(c) = l.accept().await {
            // Hold each connection until it ends (dropping it would close it with code 0).
            tokio::spawn(async move { c.closed().await });
        }
    });
    let mut raw = RawClient::connect(addr).await;
    let f = raw.frame(
        &Payload::Stream(StreamPayload {
            fin: false,
            offset: 0,
            data: Bytes::from(vec![0u8; 40_000]),
        }),
        1,
    );
    raw.tcp.write_all(&f).await.unwrap();
    assert_eq!(
        raw.close_code(Duration::from_secs(1)).await,
        Some(ErrorCode::FlowControlViolation)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_detected_by_ping_timeout() {
    // A peer that completes the handshake and then goes silent (socket open, no answers).
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let server_key = key(2);
    let silent = tokio::spawn(async move {
        let (mut tcp, _) = l.accept().await.unwrap();
        let mut hs = betanet_crypto::handshake::HandshakeConfig::new(server_key, 1_780_000_000);
        hs.pq = betanet_crypto::handshake::PqMode::Classic;
        let st = betanet_crypto::handshake::Responder::new(hs).unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tcp.read(&mut buf).await.unwrap();
        let (m1, _) = betanet_crypto::handshake::split_prefixed(&buf[..n]).unwrap();
        let (_st, m2) = st.read_msg1(m1, &mut rand_core::OsRng).unwrap();
        tcp.write_all(&m2).await.unwrap();
        // Read and ignore everything, never answer.
        loop {
            if tcp.read(&mut buf).await.unwrap_or(0) == 0 {
                break;
            }
        }
    });
    let mut cfg = client_cfg(Transport::Tcp12, quiet(), None);
    cfg.pq = betanet_net::PqMode::Classic;
    let conn = dial(&addr, &key(2).verifying_key(), &cfg).await.unwrap();
    let t0 = Instant::now();
    assert!(conn.ping());
    let why = tokio::time::timeout(Duration::from_secs(8), conn.closed())
        .await
        .unwrap();
    assert_eq!(why, betanet_htx::ConnectionError::PingTimeout);
    let el = t0.elapsed();
    assert!(
        el >= Duration::from_millis(4900) && el < Duration::from_secs(7),
        "{el:?}"
    );
    drop(conn);
    silent.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_does_not_slow_2000_streams() {
    async fn run(stall: bool) -> Duration {
        let mut l = server(Transport::Tcp12, quiet(), None).await;
        let addr = l.local_addr().to_string();
        let cfg = client_cfg(Transport::Tcp12, quiet(), None);
        let (c, s) = {
            let vk = key(2).verifying_key();
            tokio::join!(dial(&addr, &vk, &cfg), l.accept())
        };
        let (c, s) = (c.unwrap(), s.unwrap());
        const N: usize = 2000;
        const PER: usize = 32 * 1024;
        let reader = tokio::spawn(async move {
            let mut handles = Vec::new();
            let mut stalled = None;
            for i in 0..N {
                let mut st = s.accept_stream().await.unwrap();
                if stall && i == 0 {
                    stalled = Some(st);
                    continue;
                }
                handles.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; PER];
                    st.read_exact(&mut buf).await.unwrap();
                    buf.iter().all(|b| *b == 0xab)
                }));
            }
            for h in handles {
                assert!(h.await.unwrap());
            }
            (stalled, s)
        });
        let t0 = Instant::now();
        let mut writers = Vec::new();
        for _ in 0..N {
            let mut st = c.open_stream().unwrap();
            writers.push(tokio::spawn(async move {
                st.write_all(&vec![0xabu8; PER]).await.unwrap();
                st
            }));
        }
        let mut keep = Vec::new();
        for w in writers {
            keep.push(w.await.unwrap());
        }
        let (stalled, _s) = tokio::time::timeout(Duration::from_secs(60), reader)
            .await
            .unwrap()
            .unwrap();
        let el = t0.elapsed();
        assert_eq!(stalled.is_some(), stall);
        drop(keep);
        el
    }
    let base = run(false).await;
    let stalled = run(true).await;
    // Throughput of the streams that are read: 2000 of them without a stall, 1999 with one.
    let tp_base = 2000.0 / base.as_secs_f64();
    let tp_stalled = 1999.0 / stalled.as_secs_f64();
    let ratio = tp_stalled / tp_base;
    eprintln!(
        "2000 streams: {base:?} without a stalled reader, {stalled:?} with one: the others keep {:.0} % throughput",
        100.0 * ratio
    );
    // The target is >= 90 %; CI machines are shared, so only a gross regression fails here.
    assert!(
        ratio >= 0.5,
        "throughput with a stalled reader fell to {:.0} %",
        100.0 * ratio
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_is_seen_by_peer() {
    let mut l = server(Transport::Tcp12, quiet(), None).await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(Transport::Tcp12, quiet(), None);
    let (c, s) = {
        let vk = key(2).verifying_key();
        tokio::join!(dial(&addr, &vk, &cfg), l.accept())
    };
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(*s.peer_identity(), key(1).verifying_key());
    c.close(ErrorCode::PolicyRejected, "bye");
    let why = tokio::time::timeout(Duration::from_secs(3), s.closed())
        .await
        .unwrap();
    assert_eq!(why.code(), ErrorCode::PolicyRejected);
    assert!(c.open_stream().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_tcp11_is_opt_in_and_works() {
    big_transfer_tcp11().await;
    // A tcp12 client cannot talk to a tcp11-only listener: no common L2 id.
    let l = server(Transport::Tcp11, quiet(), None).await;
    let addr = l.local_addr().to_string();
    let e = dial(
        &addr,
        &key(2).verifying_key(),
        &client_cfg(Transport::Tcp12, quiet(), None),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.close_code(),
        Some(ErrorCode::VersionNegotiationFailed),
        "{e}"
    );
}

async fn big_transfer_tcp11() {
    let mut l = server(Transport::Tcp11, rekey_cfg(), None).await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(Transport::Tcp11, rekey_cfg(), None);
    let vk = key(2).verifying_key();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), l.accept());
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.selection().l2, "betanet/htx/1.1.0");
    assert_eq!(c.stats().carriage, "tcp11");
    bidi_transfer(&c, &s, 8, 512 << 10).await;
    assert!(c.stats().htx.rekeys_sent >= 1);
}
