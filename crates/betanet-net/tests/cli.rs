//! The `echo-server` and `stream` commands as the binary will run them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use betanet_net::NetError;
use betanet_net::Transport;
use betanet_net::cli::{EchoServerInfo, EchoServerOptions, StreamOptions, echo_server, stream};

async fn start(dir: &std::path::Path, transport: Transport) -> EchoServerInfo {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let opts = EchoServerOptions {
        listen: "127.0.0.1:0".into(),
        transport,
        data_dir: dir.to_owned(),
        tls_hostname: "localhost".into(),
        identity: None,
    };
    tokio::spawn(async move {
        let r = echo_server(opts, move |info| {
            let _ = tx.send(info.clone());
        })
        .await;
        if let Err(e) = r {
            panic!("echo server failed: {e}");
        }
    });
    rx.await.unwrap()
}

fn opts(info: &EchoServerInfo, transport: Transport) -> StreamOptions {
    StreamOptions {
        host: "127.0.0.1".into(),
        port: info.addr.port(),
        server_pub_hex: hex::encode(info.public_key.to_bytes()),
        transport,
        cert_pin_hex: info.cert_sha256.map(hex::encode),
        ticket_hex: info
            .ticket
            .map(|t| format!("{}{}", hex::encode(t.public), hex::encode(t.key_id))),
        server_name: Some("localhost".into()),
        timeout: Duration::from_secs(20),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_over_tcp12_and_tls_with_persistent_keys() {
    let dir = tempfile::tempdir().unwrap();
    for transport in [Transport::Tcp12, Transport::Tls] {
        let info = start(dir.path(), transport).await;
        let text = info.to_string();
        assert!(text.contains(&info.peer_id.to_string()));
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
        let mut echoed = Vec::new();
        let report = stream(opts(&info, transport), &data[..], &mut echoed)
            .await
            .unwrap();
        assert!(report.echo_ok(), "{report:?}");
        assert_eq!(echoed, data);
        assert_eq!(report.peer_id, info.peer_id);
        // The stats: the data went out as frames, and the PING sent after the handshake was
        // answered long before a 3 MB echo ended (an RTT on loopback, well under a second).
        let st = &report.stats;
        assert_eq!(st.htx.stream_bytes_sent, data.len() as u64);
        assert_eq!(st.htx.stream_bytes_received, data.len() as u64);
        assert!(st.htx.pings_sent >= 1);
        let rtt = st.rtt.expect("an RTT sample");
        assert!(rtt < std::time::Duration::from_secs(1), "{rtt:?}");
        assert_eq!(st.srtt, Some(rtt));
        let line = report.stats_line();
        assert!(
            line.starts_with(&format!("{}: sent ", st.carriage)),
            "{line}"
        );
        assert!(line.contains(" ms (smoothed "), "{line}");
        assert!(!line.contains('\n'));
    }
    // A front on `auto` serves TLS on TCP and QUIC on UDP, same port, same keys: clients on
    // `quic`, `tls` and `auto` (which takes QUIC) all get their echo.
    // (Its own data dir: the TLS server above still holds its replay database.)
    let dir2 = tempfile::tempdir().unwrap();
    let info = start(dir2.path(), Transport::QuicThenTls).await;
    for (transport, carriage) in [
        (Transport::Quic, "quic"),
        (Transport::Tls, "tls"),
        (Transport::QuicThenTls, "quic"),
    ] {
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut echoed = Vec::new();
        let report = stream(opts(&info, transport), &data[..], &mut echoed)
            .await
            .unwrap();
        assert!(report.echo_ok(), "{transport}: {report:?}");
        assert_eq!(echoed, data);
        assert_eq!(report.stats.carriage, carriage);
    }
    // The key file is the `betanet keygen` format.
    let text = std::fs::read_to_string(dir.path().join("node.key")).unwrap();
    assert!(text.contains("betanet-ed25519-seed-v1 "));
    // Same data dir: same identity.
    let a = start(dir.path(), Transport::Tcp12).await;
    let b = start(dir.path(), Transport::Tcp12).await;
    assert_eq!(a.public_key, b.public_key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let info = start(dir.path(), Transport::Tcp12).await;
    // Wrong key.
    let mut o = opts(&info, Transport::Tcp12);
    o.server_pub_hex = hex::encode(
        betanet_crypto::sign::SigningKey::from_seed(&[5; 32])
            .verifying_key()
            .to_bytes(),
    );
    let e = stream(o, &b"x"[..], Vec::new()).await.unwrap_err();
    assert!(matches!(e, NetError::AuthFailed { .. }), "{e}");
    // Refused.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let mut o = opts(&info, Transport::Tcp12);
    o.port = port;
    let e = stream(o, &b"x"[..], Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("refused"), "{e}");
    // Timeout: a listener that never answers the handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut o = opts(&info, Transport::Tcp12);
    o.port = silent.local_addr().unwrap().port();
    o.timeout = Duration::from_millis(500);
    let e = stream(o, &b"x"[..], Vec::new()).await.unwrap_err();
    assert!(matches!(e, NetError::Timeout { .. }), "{e}");
    // Bad key text.
    let mut o = opts(&info, Transport::Tcp12);
    o.server_pub_hex = "zz".into();
    let e = stream(o, &b"x"[..], Vec::new()).await.unwrap_err();
    assert!(e.to_string().contains("64 hex"), "{e}");
}
