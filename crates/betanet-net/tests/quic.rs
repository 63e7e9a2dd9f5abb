//! The QUIC v1 + HTTP/3 carriage on 127.0.0.1 (real quinn endpoints, real h3): HTX sessions,
//! the decoy for probes, the exporter binding, and the `auto` client (QUIC, then TLS).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use betanet_net::tls::{ClientTls, RustlsClient};
use betanet_net::{NetError, ServerConfig, Transport, dial, listen};
use bytes::{Buf, Bytes};
use common::{bidi_transfer, client_cfg, key, quiet, server, tls_pair};
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP/3 request to the front (a probe, or a browser): status and body.
async fn h3_probe(
    addr: SocketAddr,
    pin: &[u8],
    method: Method,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let crypto = RustlsClient::pinned(pin).unwrap().quic_config().unwrap();
    let mut ep = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    ep.set_default_client_config(quinn::ClientConfig::new(crypto));
    let conn = ep.connect(addr, "front.example").unwrap().await.unwrap();
    let (mut driver, mut send) = h3::client::new(h3_quinn::Connection::new(conn))
        .await
        .unwrap();
    let drive = tokio::spawn(async move {
        let _ = std::future::poll_fn(|cx| driver.poll_close(cx)).await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://front.example{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let mut s = send.send_request(req.body(()).unwrap()).await.unwrap();
    s.send_data(Bytes::from_static(b"hello?")).await.unwrap();
    s.finish().await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), s.recv_response())
        .await
        .unwrap()
        .unwrap();
    let mut body = Vec::new();
    while let Some(mut chunk) = s.recv_data().await.unwrap() {
        while chunk.has_remaining() {
            let c = chunk.chunk().to_vec();
            chunk.advance(c.len());
            body.extend_from_slice(&c);
        }
    }
    drive.abort();
    (resp.status(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htx_over_quic_and_http3() {
    let t = tls_pair();
    let mut l = server(Transport::Quic, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(Transport::Quic, quiet(), Some(t.client.clone()));
    let vk = key(2).verifying_key();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), l.accept());
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.stats().carriage, "quic");
    assert_eq!(s.stats().carriage, "quic");
    assert!(c.is_post_quantum());
    assert_eq!(c.peer_identity(), &vk);
    // Both ends derive the same exporter-bound BN-Ticket tokens.
    assert_eq!(c.bn_ticket_token("r1"), s.bn_ticket_token("r1"));
    let mut st = c.open_stream().unwrap();
    st.write_all(b"ping over h3").await.unwrap();
    st.shutdown().await.unwrap();
    let mut ss = s.accept_stream().await.unwrap();
    let mut got = Vec::new();
    ss.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping over h3");
    ss.write_all(b"pong").await.unwrap();
    ss.shutdown().await.unwrap();
    let mut back = Vec::new();
    st.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"pong");
    // 4 streams each way, 2 MiB per direction per stream, SHA-256 checked on both ends.
    bidi_transfer(&c, &s, 4, 2 << 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_probes_get_the_decoy() {
    let t = tls_pair();
    let pin = t.server.cert_der().to_vec();
    let path = t.server.path.clone();
    let mut l = server(Transport::Quic, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr();
    let (s, body) = h3_probe(addr, &pin, Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("Welcome"));
    let (s, body) = h3_probe(addr, &pin, Method::GET, "/robots.txt", None).await;
    assert_eq!(
        (s, body.as_slice()),
        (StatusCode::OK, &b"User-agent: *\nDisallow:\n"[..])
    );
    // The HTX path without a ticket, with a bad ticket, and another POST path: the same
    // decoy answer as over HTTP/2.
    let a = h3_probe(addr, &pin, Method::POST, &path, None).await;
    let b = h3_probe(
        addr,
        &pin,
        Method::POST,
        &path,
        Some("__Host-bn1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    let c = h3_probe(addr, &pin, Method::POST, "/somewhere/else", None).await;
    assert_eq!(a.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // None of them opened a session; a real client still gets in.
    let cfg = client_cfg(Transport::Quic, quiet(), Some(t.client.clone()));
    let vk = key(2).verifying_key();
    let a = addr.to_string();
    let (c, s) = tokio::join!(dial(&a, &vk, &cfg), l.accept());
    c.unwrap();
    s.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_key_or_ticket_key_fails_over_quic() {
    let t = tls_pair();
    let l = server(Transport::Quic, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    // The front is real but the inner identity is not the one we expect.
    let cfg = client_cfg(Transport::Quic, quiet(), Some(t.client.clone()));
    let e = dial(&addr, &key(9).verifying_key(), &cfg)
        .await
        .unwrap_err();
    assert!(matches!(e, NetError::AuthFailed { .. }), "{e}");
    // A ticket for another front: the decoy answers the POST.
    let other = tls_pair();
    let mut client = t.client.clone();
    client.ticket = other.client.ticket;
    let cfg = client_cfg(Transport::Quic, quiet(), Some(client));
    let e = dial(&addr, &key(2).verifying_key(), &cfg)
        .await
        .unwrap_err();
    assert!(
        matches!(e, NetError::Quic(ref m) if m.contains("405")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_prefers_quic_and_falls_back_to_tls() {
    let t = tls_pair();
    let vk = key(2).verifying_key();
    // TLS over TCP on port P, and QUIC on UDP port P: auto takes QUIC.
    let mut tls_l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let port = tls_l.local_addr().port();
    let mut qcfg = ServerConfig::new(key(2));
    qcfg.transport = Transport::Quic;
    qcfg.htx = quiet();
    qcfg.tls = Some(t.server.clone());
    let mut quic_l = listen(&format!("127.0.0.1:{port}"), qcfg).await.unwrap();
    let addr = format!("127.0.0.1:{port}");
    let mut cfg = client_cfg(Transport::QuicThenTls, quiet(), Some(t.client.clone()));
    cfg.connect_timeout = Duration::from_secs(1);
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), quic_l.accept());
    assert_eq!(c.unwrap().stats().carriage, "quic");
    s.unwrap();
    // No QUIC listener any more (UDP is "blocked"): after the QUIC attempt times out, auto
    // waits 200–1200 ms and comes in over TLS.
    drop(quic_l);
    let t0 = Instant::now();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), tls_l.accept());
    let took = t0.elapsed();
    assert_eq!(c.unwrap().stats().carriage, "tls");
    s.unwrap();
    assert!(
        took >= Duration::from_millis(1200) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // With cover origins configured the retry is surrounded by connections to them (SPEC
    // §4.8): both get a TCP connection (and a TLS ClientHello) around the retry, and the HTX
    // dial waits another 100–700 ms.
    let mut origins = Vec::new();
    let mut cover_listeners = Vec::new();
    for _ in 0..2 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        origins.push(l.local_addr().unwrap().to_string());
        cover_listeners.push(l);
    }
    let mut cfg_c = cfg.clone();
    cfg_c.cover_origins = origins;
    let t0 = Instant::now();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg_c), tls_l.accept());
    let took = t0.elapsed();
    assert_eq!(c.unwrap().stats().carriage, "tls");
    s.unwrap();
    assert!(took >= Duration::from_millis(1300), "{took:?}");
    for l in &cover_listeners {
        let (mut conn, _) = tokio::time::timeout(Duration::from_secs(3), l.accept())
            .await
            .expect("a cover connection")
            .unwrap();
        // The cover starts a TLS handshake: a ClientHello record (0x16 0x03 ..).
        let mut head = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(3), conn.read_exact(&mut head))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(head, [0x16, 0x03]);
    }
    // Plain `quic` does not fall back.
    let mut cfg = client_cfg(Transport::Quic, quiet(), Some(t.client.clone()));
    cfg.connect_timeout = Duration::from_secs(1);
    let e = dial(&addr, &vk, &cfg).await.unwrap_err();
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
}

#[test]
fn transport_names_parse() {
    assert_eq!("quic".parse::<Transport>().unwrap(), Transport::Quic);
    assert_eq!("auto".parse::<Transport>().unwrap(), Transport::QuicThenTls);
    assert_eq!(Transport::QuicThenTls.to_string(), "auto");
    assert!("h3".parse::<Transport>().is_err());
}
