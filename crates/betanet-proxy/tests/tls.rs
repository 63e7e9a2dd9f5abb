#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The TLS and QUIC carriages: a real site behind `betanet_net`'s `auto` listener (TLS 1.3 +
//! HTTP/2 on TCP and QUIC + HTTP/3 on UDP, pinned self-signed certificate, access tickets),
//! reached through the proxy configured with the pin and the ticket key over `tls`, `quic`
//! and `auto`; and a wrong pin is a 502.

use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::sign::SigningKey;
use betanet_net::ticket::TicketKeys;
use betanet_net::tls::TlsServer;
use betanet_proxy::{Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(proxy: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(
        format!("GET http://tls.bn{path} HTTP/1.1\r\nHost: tls.bn\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_site_through_the_proxy() {
    let key = SigningKey::from_seed(&[11u8; 32]);
    let tickets = Arc::new(TicketKeys::generate(&mut rand_core::OsRng).unwrap());
    let t = tickets.public();
    let (tls, _, _) = TlsServer::self_signed("localhost", tickets).unwrap();
    let pin = hex::encode(tls.cert_sha256());
    let mut cfg = betanet_net::ServerConfig::new(key.clone());
    cfg.pq = betanet_net::PqMode::Classic;
    cfg.transport = betanet_net::Transport::QuicThenTls;
    cfg.tls = Some(tls);
    let listener = betanet_net::listen("127.0.0.1:0", cfg).await.unwrap();
    let site = listener.local_addr();
    let mut app = betanet_app::App::new();
    app.get("/hi", |_req: betanet_app::Request| async move {
        "hi over tls\n"
    })
    .unwrap();
    tokio::spawn(betanet_app::htx::serve_listener(
        app.into_shared(),
        listener,
        8,
    ));

    let text = |pin: &str, transport: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nclassic_handshake = true\nconnect_timeout_secs = 5\n\
             [[site]]\nhost = \"tls.bn\"\naddr = \"{site}\"\npublic_key = \"{}\"\n\
             transport = \"{transport}\"\ntls_cert_sha256 = \"{pin}\"\nticket_key = \"{}{}\"\n",
            hex::encode(key.verifying_key().to_bytes()),
            hex::encode(t.public),
            hex::encode(t.key_id),
        )
    };
    for transport in ["tls", "quic", "auto"] {
        let proxy = Proxy::start(ProxyConfig::from_toml_str(&text(&pin, transport)).unwrap())
            .await
            .unwrap();
        for _ in 0..2 {
            let r = get(proxy.local_addr(), "/hi").await;
            assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{transport}: {r}");
            assert!(r.ends_with("\r\n\r\nhi over tls\n"), "{transport}: {r}");
        }
        proxy.shutdown().await;
    }

    // A wrong certificate pin: the TLS handshake fails, the client gets a 502.
    let proxy = Proxy::start(ProxyConfig::from_toml_str(&text(&"00".repeat(32), "tls")).unwrap())
        .await
        .unwrap();
    let r = get(proxy.local_addr(), "/hi").await;
    assert!(r.starts_with("HTTP/1.1 502"), "{r}");
    assert!(r.contains("tls.bn is unreachable"), "{r}");
    proxy.shutdown().await;
}
