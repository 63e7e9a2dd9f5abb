//! Interop with real netaio (Python, installed from PyPI into target/netaio-venv by
//! scripts/netaio-venv.sh). Skips with a printed message when python3/pip/PyPI is unavailable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use betanet_msg::compat::{HmacAuth, Sha256StreamCipher};
use betanet_msg::{
    Content, Message, MessageType, MsgError, Node, NodeBuilder, Plugins, Request, Uri,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const T: Option<Duration> = Some(Duration::from_secs(5));

fn python() -> Option<PathBuf> {
    static PY: OnceLock<Option<PathBuf>> = OnceLock::new();
    PY.get_or_init(|| {
        if std::env::var_os("BETANET_MSG_NO_PYTHON").is_some() {
            eprintln!("SKIP netaio interop: BETANET_MSG_NO_PYTHON is set");
            return None;
        }
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let out = std::process::Command::new("bash")
            .arg(dir.join("scripts/netaio-venv.sh"))
            .output();
        match out {
            Ok(o) if o.status.success() => {
                let p = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_owned());
                Some(p)
            }
            Ok(o) => {
                eprintln!(
                    "SKIP netaio interop: netaio venv unavailable: {}",
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                None
            }
            Err(e) => {
                eprintln!("SKIP netaio interop: cannot run bash: {e}");
                None
            }
        }
    })
    .clone()
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name)
}

fn plugins(mode: &str, secret: &str) -> Plugins {
    match mode {
        "hmac" => Plugins::none().with_auth(HmacAuth::new(secret)),
        "cipher" => Plugins::none()
            .with_auth(HmacAuth::new(secret))
            .with_cipher(Sha256StreamCipher::new("test")),
        _ => Plugins::none(),
    }
}

fn rust_server(mode: &str) -> (Node, tokio::sync::mpsc::Receiver<Vec<u8>>) {
    let n = NodeBuilder::compat().plugins(plugins(mode, "test")).build();
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    n.on(
        (MessageType::REQUEST_URI, "echo"),
        move |Content(c): Content| {
            let tx = tx.clone();
            async move {
                tx.send(c.to_vec()).await.unwrap();
                Message::new(MessageType::RESPOND_URI, &b"echo"[..], c)
            }
        },
    );
    n.on(MessageType::CREATE_URI, |Uri(u): Uri| async move {
        Message::new(MessageType::OK, u, &b"Resource saved."[..])
    });
    n.on(MessageType::SUBSCRIBE_URI, |r: Request| async move {
        r.node.subscribe(&r.msg.body.uri, &r.conn);
        Message::new(
            MessageType::CONFIRM_SUBSCRIBE,
            r.msg.body.uri.clone(),
            &b""[..],
        )
    });
    n.on(MessageType::PUBLISH_URI, |r: Request| async move {
        let m = Message::new(
            MessageType::NOTIFY_URI,
            r.msg.body.uri.clone(),
            r.msg.body.content.clone(),
        );
        r.node.notify(&r.msg.body.uri, m).await.unwrap();
    });
    (n, rx)
}

async fn netaio_client_against_rust_server(mode: &str) {
    let Some(py) = python() else { return };
    let (s, mut calls) = rust_server(mode);
    let addr = s.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(40),
        Command::new(py)
            .arg(script("interop_client.py"))
            .arg(addr.port().to_string())
            .arg(mode)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("python client timed out")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0],
        r#"{"step": "request", "type": 1, "uri": "echo", "content": "hello"}"#
    );
    assert_eq!(
        lines[1],
        r#"{"step": "create", "type": 10, "uri": "thing", "content": "Resource saved."}"#
    );
    assert_eq!(lines[2], r#"{"step": "notify", "content": "n1"}"#);
    if mode == "plain" {
        assert_eq!(lines[3], r#"{"step": "done"}"#);
    } else {
        // netaio reports the AUTH_ERROR we send as a timeout (its known weakness)
        assert_eq!(lines[3], r#"{"step": "bad_auth", "result": "timeout"}"#);
        assert_eq!(lines[4], r#"{"step": "after_bad", "content": "again"}"#);
        assert_eq!(lines[5], r#"{"step": "done"}"#);
    }
    // handler saw exactly the authenticated requests, never "evil"
    let mut seen = Vec::new();
    while let Ok(c) = calls.try_recv() {
        seen.push(String::from_utf8(c).unwrap());
    }
    let want: Vec<String> = if mode == "plain" {
        vec!["hello".into()]
    } else {
        vec!["hello".into(), "again".into()]
    };
    assert_eq!(seen, want);
}

async fn rust_client_against_netaio_server(mode: &str) {
    let Some(py) = python() else { return };
    let mut child = Command::new(py)
        .arg(script("interop_server.py"))
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();

    let c = NodeBuilder::compat().plugins(plugins(mode, "test")).build();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(MessageType, Vec<u8>)>(8);
    for t in [MessageType::CONFIRM_SUBSCRIBE, MessageType::NOTIFY_URI] {
        let tx = tx.clone();
        c.on((t, "news"), move |m: Message| {
            let tx = tx.clone();
            async move { tx.send((m.mtype, m.body.content.to_vec())).await.unwrap() }
        });
    }
    let conn = c.connect(addr).await.unwrap();
    let r = c
        .request(&conn, MessageType::REQUEST_URI, b"echo", b"hello", T)
        .await
        .unwrap();
    assert_eq!(
        (r.mtype, &r.body.uri[..], &r.body.content[..]),
        (MessageType::RESPOND_URI, &b"echo"[..], &b"hello"[..])
    );
    let r = c.create(&conn, b"thing", b"x").await.unwrap();
    assert_eq!(
        (r.mtype, &r.body.content[..]),
        (MessageType::OK, &b"Resource saved."[..])
    );
    c.send(
        &conn,
        Message::new(MessageType::SUBSCRIBE_URI, &b"news"[..], &b""[..]),
    )
    .await
    .unwrap();
    assert_eq!(rx.recv().await.unwrap().0, MessageType::CONFIRM_SUBSCRIBE);
    c.send(
        &conn,
        Message::new(MessageType::PUBLISH_URI, &b"news"[..], &b"n1"[..]),
    )
    .await
    .unwrap();
    assert_eq!(
        rx.recv().await.unwrap(),
        (MessageType::NOTIFY_URI, b"n1".to_vec())
    );
    if mode != "plain" {
        // our client sees netaio's AUTH_ERROR as an error, not a timeout
        let bad = NodeBuilder::compat()
            .plugins(plugins(mode, "wrong"))
            .build();
        let bc = bad.connect(addr).await.unwrap();
        let e = bad
            .request(&bc, MessageType::REQUEST_URI, b"echo", b"evil", T)
            .await
            .unwrap_err();
        assert!(
            matches!(e, MsgError::Remote { kind: MessageType::AUTH_ERROR, ref content } if content == "HMAC auth failed"),
            "{e:?}"
        );
        let r = c
            .request(&conn, MessageType::REQUEST_URI, b"echo", b"again", T)
            .await
            .unwrap();
        assert_eq!(&r.body.content[..], b"again");
    }
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

/// X25519 (NaCl box) inner cipher against netaio's X25519CipherPlugin after TCP peer exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_netaio_server_x25519_peers() {
    use betanet_msg::Peer;
    use betanet_msg::compat::X25519Cipher;
    let Some(py) = python() else { return };
    let mut child = Command::new(py)
        .arg(script("interop_server.py"))
        .arg("x25519")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let k = X25519Cipher::from_seed(&[2; 32]);
    let me = Peer::new(
        vec![2u8; 16],
        Peer::encode_data(&[("pubkey", &k.public_key())]),
    );
    let c = NodeBuilder::compat()
        .peer(
            me,
            b"netaio",
            Duration::from_secs(20),
            Duration::from_secs(60),
        )
        .build();
    let conn = c.connect(addr).await.unwrap();
    for _ in 0..200 {
        if !c.peers().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let peers = c.peers();
    assert_eq!(&peers[0].id[..], &[1u8; 16]);
    assert_eq!(
        peers[0].data_field("pubkey").unwrap(),
        X25519Cipher::from_seed(&[1; 32]).public_key().to_vec()
    );
    let r = c
        .request_with(
            &conn,
            MessageType::REQUEST_URI,
            b"box",
            b"sealed",
            T,
            Plugins::none().with_cipher(k),
        )
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"netaio saw: sealed");
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

async fn udp_with_netaio(mode: &str) {
    let Some(py) = python() else { return };
    let n = NodeBuilder::compat().plugins(plugins(mode, "test")).build();
    n.on(MessageType::REQUEST_URI, |r: Request| async move {
        Message::new(
            MessageType::RESPOND_URI,
            r.msg.body.uri.clone(),
            [&b"rust echo: "[..], &r.msg.body.content[..]].concat(),
        )
    });
    let ours = n.bind_udp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut child = Command::new(py)
        .arg(script("interop_udp.py"))
        .arg(ours.port().to_string())
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let port: u16 = first.strip_prefix("PORT ").unwrap().parse().unwrap();
    // netaio's request to us, answered by our UDP handler
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        line,
        r#"{"type": 1, "uri": "py", "content": "rust echo: from netaio"}"#
    );
    // our request to netaio's UDPNode
    let to_py = n
        .udp_conn(format!("127.0.0.1:{port}").parse().unwrap())
        .unwrap();
    let r = n
        .request(&to_py, MessageType::REQUEST_URI, b"rs", b"from rust", T)
        .await
        .unwrap();
    assert_eq!(
        (r.mtype, &r.body.uri[..], &r.body.content[..]),
        (MessageType::RESPOND_URI, &b"rs"[..], &b"from rust"[..])
    );
    drop(child.stdin.take());
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_netaio_plain() {
    udp_with_netaio("plain").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_netaio_hmac() {
    udp_with_netaio("hmac").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netaio_client_plain() {
    netaio_client_against_rust_server("plain").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netaio_client_hmac() {
    netaio_client_against_rust_server("hmac").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn netaio_client_hmac_cipher() {
    netaio_client_against_rust_server("cipher").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_netaio_server_plain() {
    rust_client_against_netaio_server("plain").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_netaio_server_hmac() {
    rust_client_against_netaio_server("hmac").await
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_client_netaio_server_hmac_cipher() {
    rust_client_against_netaio_server("cipher").await
}

/// Start `interop_server.py MODE [PORT]`; returns the child and its port.
async fn netaio_server(mode: &str, port: Option<u16>) -> Option<(tokio::process::Child, u16)> {
    let py = python()?;
    let mut cmd = Command::new(py);
    cmd.arg(script("interop_server.py")).arg(mode);
    if let Some(p) = port {
        cmd.arg(p.to_string());
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    Some((child, first.strip_prefix("PORT ").unwrap().parse().unwrap()))
}

#[tokio::test]
async fn rust_client_reconnects_after_netaio_server_restart() {
    let Some((mut first, port)) = netaio_server("hmac", None).await else {
        return;
    };
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let c = NodeBuilder::compat()
        .plugins(plugins("hmac", "test"))
        .reconnect(Some(betanet_msg::Reconnect {
            attempts: 3,
            initial_backoff: Duration::from_millis(20),
            ..Default::default()
        }))
        .build();
    let conn = c.connect(addr).await.unwrap();
    let r = c
        .request(&conn, MessageType::REQUEST_URI, b"echo", b"before", T)
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"before");
    // Kill the Python server hard, then start a new one on the same port.
    first.kill().await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("client did not notice the dead server");
    let Some((_second, port2)) = netaio_server("hmac", Some(port)).await else {
        return;
    };
    assert_eq!(port2, port);
    let r = c
        .request(&conn, MessageType::REQUEST_URI, b"echo", b"after", T)
        .await
        .unwrap();
    assert_eq!(&r.body.content[..], b"after");
    assert!(!conn.is_closed());
}
