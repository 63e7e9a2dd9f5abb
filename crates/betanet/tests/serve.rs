//! `betanet serve` (the real binary) answering BAR requests over HTX/tcp12 on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use betanet_app::Method;
use betanet_app::client::{fetch, request};
use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_net::{ClientConfig, dial};

struct Server {
    child: Child,
    addr: String,
    key: VerifyingKey,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_betanet"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--plugin",
            "dashboard",
            "--plugin",
            "metrics",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut addr, mut key) = (None, None);
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("site") {
            addr = rest.split_whitespace().last().map(str::to_owned);
        }
        if let Some(rest) = line.strip_prefix("public key") {
            let bytes: [u8; 32] = hex::decode(rest.trim()).unwrap().try_into().unwrap();
            key = Some(VerifyingKey::from_bytes(&bytes).unwrap());
        }
        if line.starts_with("plugins") {
            break;
        }
    }
    Server {
        child,
        addr: addr.expect("address line"),
        key: key.expect("key line"),
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_over_htx() {
    let server = start();
    let cfg = ClientConfig::new(SigningKey::generate(&mut rand_core::OsRng));
    let conn = dial(&server.addr, &server.key, &cfg).await.unwrap();

    // Several exchanges, each on its own stream of the same connection, some concurrent.
    let mut tasks = Vec::new();
    for uri in [
        "/metrics",
        "/dashboard",
        "/no/such/page",
        "/dashboard/api/stats",
    ] {
        let mut s = conn.open_stream().unwrap();
        tasks.push(tokio::spawn(async move {
            (
                uri,
                fetch(&mut s, &request(Method::Get, uri, Vec::new()), 1 << 22)
                    .await
                    .unwrap(),
            )
        }));
    }
    for t in tasks {
        let (uri, resp) = t.await.unwrap();
        match uri {
            "/no/such/page" => assert_eq!(resp.status, 404),
            "/metrics" => {
                assert_eq!(resp.status, 200);
                assert!(String::from_utf8_lossy(&resp.body).contains("# EOF"));
            }
            "/dashboard" => {
                assert_eq!(resp.status, 200);
                assert!(String::from_utf8_lossy(&resp.body).contains("<html"));
            }
            _ => {
                assert_eq!(resp.status, 200);
                let v: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
                assert!(v.is_object(), "{v}");
            }
        }
    }

    // An unknown method is a 400, not a dropped stream.
    let mut s = conn.open_stream().unwrap();
    let resp = fetch(
        &mut s,
        &request(Method::Unknown("BREW".into()), "/", Vec::new()),
        1 << 20,
    )
    .await
    .unwrap();
    assert_eq!(resp.status, 400);

    // A wrong server key fails the handshake.
    let wrong = SigningKey::generate(&mut rand_core::OsRng).verifying_key();
    assert!(dial(&server.addr, &wrong, &cfg).await.is_err());
}
