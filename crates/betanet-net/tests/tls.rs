//! The TLS + HTTP/2 carriage: decoys for probes, the exporter binding against a
//! TLS-terminating middlebox, and the echo path.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_net::tls::{ClientTls, RustlsClient};
use betanet_net::{NetError, Transport, dial};
use bytes::Bytes;
use common::*;
use http::{Method, Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Sends one HTTP/2 request over TLS like any web client would; returns (status, body).
async fn probe(
    addr: &str,
    pin: &[u8],
    method: Method,
    path: &str,
    cookie: Option<&str>,
) -> (StatusCode, Vec<u8>) {
    let tls = RustlsClient::pinned(pin).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let sess = tls.connect(tcp, "front.example").await.unwrap();
    let (mut h2, conn) = h2::client::handshake(sess).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::builder()
        .method(method)
        .uri(format!("https://front.example{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    let (resp, mut send) = h2.send_request(req.body(()).unwrap(), false).unwrap();
    send.send_data(Bytes::from_static(b"hello?"), true).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), resp)
        .await
        .unwrap()
        .unwrap();
    let status = resp.status();
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        out.extend_from_slice(&chunk);
    }
    (status, out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_get_the_decoy() {
    let t = tls_pair();
    let pin = t.server.cert_der().to_vec();
    let path = t.server.path.clone();
    let l = server(Transport::Tls, quiet(), Some(t.server)).await;
    let addr = l.local_addr().to_string();
    let (s, body) = probe(&addr, &pin, Method::GET, "/", None).await;
    assert_eq!(s, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("Welcome"));
    // The HTX path without a ticket, with a bad ticket, and a random POST path: all the same
    // decoy answer.
    let a = probe(&addr, &pin, Method::POST, &path, None).await;
    let b = probe(
        &addr,
        &pin,
        Method::POST,
        &path,
        Some("__Host-bn1=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
    )
    .await;
    let c = probe(&addr, &pin, Method::POST, "/somewhere/else", None).await;
    assert_eq!(a.0, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // A real client still gets in afterwards.
    drop(l);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_tls_with_session_tokens() {
    let t = tls_pair();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
    let vk = key(2).verifying_key();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), l.accept());
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(c.stats().carriage, "tls");
    assert!(c.is_post_quantum());
    // Both ends derive the same BN-Ticket tokens (bound to this session).
    assert_eq!(c.bn_ticket_token("r1"), s.bn_ticket_token("r1"));
    let mut st = c.open_stream().unwrap();
    st.write_all(b"ping over h2").await.unwrap();
    st.shutdown().await.unwrap();
    let mut ss = s.accept_stream().await.unwrap();
    let mut got = Vec::new();
    ss.read_to_end(&mut got).await.unwrap();
    assert_eq!(got, b"ping over h2");
    ss.write_all(b"pong").await.unwrap();
    ss.shutdown().await.unwrap();
    let mut back = Vec::new();
    st.read_to_end(&mut back).await.unwrap();
    assert_eq!(back, b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forced_h2_priority_frame_keeps_the_session_working() {
    let t = tls_pair();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let vk = key(2).verifying_key();
    for (p, expect) in [(1.0, true), (0.0, false)] {
        let mut cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
        assert!((0.005..=0.03).contains(&cfg.h2_priority_probability));
        cfg.h2_priority_probability = p;
        let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), l.accept());
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.h2_priority_sent(), Some(expect));
        assert_eq!(s.h2_priority_sent(), None);
        // The HTX session and a later ticketed request on the same HTTP/2 connection work.
        let mut st = c.open_stream().unwrap();
        st.write_all(b"after PRIORITY").await.unwrap();
        st.shutdown().await.unwrap();
        let mut ss = s.accept_stream().await.unwrap();
        let mut got = Vec::new();
        ss.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"after PRIORITY");
        assert_eq!(
            c.ticketed_request("/x").await.unwrap(),
            http::StatusCode::NO_CONTENT
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_ticket_key_gets_decoy_status() {
    let t = tls_pair();
    let other = tls_pair();
    let l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let mut client = t.client.clone();
    client.ticket = other.client.ticket;
    let e = dial(
        &addr,
        &key(2).verifying_key(),
        &client_cfg(Transport::Tls, quiet(), Some(client)),
    )
    .await
    .unwrap_err();
    assert!(matches!(e, NetError::Carriage(_)), "{e}");
    assert!(e.to_string().contains("405"), "{e}");
}

/// A TLS-terminating middlebox: its own certificate towards the client (which trusts it,
/// as with a corporate CA), a fresh TLS session towards the real server, bytes copied between.
async fn middlebox(upstream: String, upstream_pin: Vec<u8>) -> (String, Vec<u8>) {
    let ck = rcgen::generate_simple_self_signed(vec!["front.example".to_owned()]).unwrap();
    let der = ck.cert.der().to_vec();
    let chain = vec![ck.cert.der().clone()];
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            let pin = upstream_pin.clone();
            tokio::spawn(async move {
                let Ok(mut down) = acceptor.accept(tcp).await else {
                    return;
                };
                let up_tcp = TcpStream::connect(&upstream).await.unwrap();
                let tls = RustlsClient::pinned(&pin).unwrap();
                let Ok(mut up) = tls.connect(up_tcp, "front.example").await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
            });
        }
    });
    (addr, der)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_terminating_middlebox_breaks_the_handshake() {
    let t = tls_pair();
    let pin = t.server.cert_der().to_vec();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let real = l.local_addr().to_string();
    tokio::spawn(async move {
        if let Ok(c) = l.accept().await {
            panic!("a connection through the middlebox was accepted: {c:?}");
        }
    });
    // Directly: works (sanity), through the middlebox: fails although the ticket, the HTTP/2
    // request and the server key are all right.
    let cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
    let (mitm_addr, mitm_der) = middlebox(real.clone(), pin).await;
    let mut client = t.client.clone();
    client.tls = Arc::new(RustlsClient::pinned(&mitm_der).unwrap());
    let t0 = Instant::now();
    let e = dial(
        &mitm_addr,
        &key(2).verifying_key(),
        &client_cfg(Transport::Tls, quiet(), Some(client)),
    )
    .await
    .unwrap_err();
    assert_eq!(
        e.close_code(),
        Some(betanet_net::ErrorCode::AuthFailed),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    let _ = cfg;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn later_requests_need_a_fresh_bn_ticket() {
    let t = tls_pair();
    let mut l = server(Transport::Tls, quiet(), Some(t.server.clone())).await;
    let addr = l.local_addr().to_string();
    let cfg = client_cfg(Transport::Tls, quiet(), Some(t.client.clone()));
    let vk = key(2).verifying_key();
    let (c, s) = tokio::join!(dial(&addr, &vk, &cfg), l.accept());
    let (c, s) = (c.unwrap(), s.unwrap());
    assert_eq!(
        c.ticketed_request("/api/v2/poll").await.unwrap(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        c.ticketed_request("/api/v2/poll").await.unwrap(),
        StatusCode::NO_CONTENT
    );
    // Replaying ctx r1, or a token of another session: the decoy answers (404 for this path).
    let tok = c.bn_ticket_token("r1").unwrap();
    let replay = betanet_wire::ticket_header::BnTicket {
        tok,
        ctx: Some("r1".into()),
    }
    .to_header_value()
    .unwrap();
    assert_eq!(
        c.request_with_ticket_header("/api/v2/poll", &replay)
            .await
            .unwrap(),
        StatusCode::NOT_FOUND
    );
    let forged = betanet_wire::ticket_header::BnTicket {
        tok: [7u8; 120],
        ctx: Some("r9".into()),
    }
    .to_header_value()
    .unwrap();
    assert_eq!(
        c.request_with_ticket_header("/api/v2/poll", &forged)
            .await
            .unwrap(),
        StatusCode::NOT_FOUND
    );
    // A malformed BN-Ticket closes the session with L2_TICKET_INVALID.
    let _ = c.request_with_ticket_header("/api/v2/poll", "v=v2").await;
    let why = tokio::time::timeout(Duration::from_secs(5), s.closed())
        .await
        .unwrap();
    assert_eq!(why.code(), betanet_net::ErrorCode::L2_TICKET_INVALID);
    let why = tokio::time::timeout(Duration::from_secs(5), c.closed())
        .await
        .unwrap();
    assert_eq!(why.code(), betanet_net::ErrorCode::L2_TICKET_INVALID);
}
