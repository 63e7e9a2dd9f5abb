//! The real `betanet` binary: keygen / id / demo.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_betanet"))
}

fn field<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(name).map(str::trim))
        .unwrap_or_else(|| panic!("no {name} in {out}"))
}

#[test]
fn keygen_then_id() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sub/node.key");
    let out = bin().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gen_out = String::from_utf8(out.stdout).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let out = bin().args(["id", "--key"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    let id_out = String::from_utf8(out.stdout).unwrap();
    for f in ["peer_id", "url", "name", "ed25519", "x25519"] {
        assert_eq!(field(&gen_out, f), field(&id_out, f), "{f}");
    }
    let peer = field(&id_out, "peer_id");
    assert_eq!(peer.len(), 68);
    assert!(peer.starts_with("1220"));
    assert_eq!(field(&id_out, "url"), format!("betanet://{}", &peer[4..]));
    assert!(field(&id_out, "name").starts_with("bn1:"));

    // Refuses to overwrite without --force, and the key is unchanged.
    let out = bin().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let out = bin().args(["id", "--key"]).arg(&key).output().unwrap();
    assert_eq!(
        field(&String::from_utf8(out.stdout).unwrap(), "peer_id"),
        peer
    );
    // --force replaces it.
    let out = bin()
        .args(["keygen", "--force", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_ne!(
        field(&String::from_utf8(out.stdout).unwrap(), "peer_id"),
        peer
    );
}

#[test]
fn id_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.key");
    let out = bin().args(["id", "--key"]).arg(&missing).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("betanet keygen"));

    let bad = dir.path().join("bad.key");
    std::fs::write(&bad, "hello\n").unwrap();
    let out = bin().args(["id", "--key"]).arg(&bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a Betanet key file"));

    std::fs::write(&bad, "betanet-ed25519-seed-v1 abcd\n").unwrap();
    let out = bin().args(["id", "--key"]).arg(&bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("corrupt"));
}

#[test]
fn demo_checks_the_whole_path() {
    for extra in [&[][..], &["--classic"][..]] {
        let t = std::time::Instant::now();
        let out = bin()
            .args(["demo", "--check"])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains("ticket → gateway → HTX → site: HTTP 200"),
            "{text}"
        );
        assert!(text.contains("no ticket → decoy page"), "{text}");
        assert!(text.contains("3-hop packet"), "{text}");
        assert!(
            text.contains("client proxy → HTX → site: HTTP 200"),
            "{text}"
        );
        let link = text
            .lines()
            .find(|l| l.contains("/dashboard?bn1="))
            .expect("dashboard link");
        assert!(link.trim().starts_with("http://127.0.0.1:"));
        // Start to first page well under the 10 s budget, even in a debug build.
        assert!(
            t.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            t.elapsed()
        );
    }
}

#[test]
fn mint_voucher_redeem_and_tally() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = bin()
        .args(["mint", "create", "--members", "5", "--out"])
        .arg(d.join("fed.json"))
        .arg("--keyset-out")
        .arg(d.join("ks.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let fed = d.join("fed.json");
    let out = bin()
        .args(["mint", "sign", "--members", "2,4,5", "--federation"])
        .arg(&fed)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let voucher = text.lines().last().unwrap().to_string();
    assert_eq!(voucher.len(), 256, "128-byte voucher in hex");
    // Two signers cannot make a voucher.
    let out = bin()
        .args(["mint", "sign", "--members", "1,2", "--federation"])
        .arg(&fed)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("threshold"));

    let ks = d.join("ks.json");
    let out = bin()
        .args(["voucher", "verify", &voucher, "--keyset"])
        .arg(&ks)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("OK"));
    let redeem = || {
        bin()
            .args(["voucher", "redeem", &voucher, "--keyset"])
            .arg(&ks)
            .arg("--db")
            .arg(d.join("spent.redb"))
            .output()
            .unwrap()
    };
    assert!(redeem().status.success());
    // A separate process, same database: the voucher stays spent.
    let again = redeem();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already spent"));

    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../betanet-trust/testdata/tally_example.json"
    );
    let out = bin()
        .args(["governance", "tally", example])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("verdict:"), "{text}");
}

#[test]
fn stream_echoes_and_prints_connection_stats() {
    use betanet_testkit::process::{ChildGuard, banner_value, read_banner};
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args(["echo-server", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _server = ChildGuard(child);
    let banner = read_banner(out, "public key", 5);
    let addr: std::net::SocketAddr = banner_value(&banner, "listening").unwrap().parse().unwrap();
    let key = banner_value(&banner, "public key").unwrap().to_owned();

    let out = bin()
        .args(["stream", "127.0.0.1", &addr.port().to_string(), &key])
        .args(["hello over htx", "--stats"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over htx");
    assert!(err.contains("ML-KEM-768 hybrid"), "{err}");
    let stats = err.lines().find(|l| l.starts_with("tcp12:")).expect(&err);
    assert!(
        stats.contains("rtt ") && stats.contains("rekeys"),
        "{stats}"
    );

    // A wrong key fails the handshake with a clear message, not a hang.
    let wrong = "11".repeat(32);
    let out = bin()
        .args(["stream", "127.0.0.1", &addr.port().to_string(), &wrong, "x"])
        .args(["--timeout-secs", "10"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(err.contains("auth") || err.contains("key"), "{err}");
}

#[test]
fn echo_over_quic_and_http3_with_the_real_binary() {
    use betanet_testkit::process::{ChildGuard, banner_value, read_banner};
    let dir = tempfile::tempdir().unwrap();
    let mut child = bin()
        .args([
            "echo-server",
            "--listen",
            "127.0.0.1:0",
            "--transport",
            "auto",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let _server = ChildGuard(child);
    let banner = read_banner(out, "ticket", 8);
    let addr: std::net::SocketAddr = banner_value(&banner, "listening").unwrap().parse().unwrap();
    assert!(
        banner_value(&banner, "carriage")
            .unwrap()
            .starts_with("auto (TLS 1.3 + HTTP/2 on TCP and QUIC"),
        "{banner:?}"
    );
    let key = banner_value(&banner, "public key").unwrap().to_owned();
    let pin = banner_value(&banner, "cert pin").unwrap().to_owned();
    let ticket = banner_value(&banner, "ticket").unwrap().to_owned();
    for (transport, carriage) in [("quic", "quic:"), ("tls", "tls:"), ("auto", "quic:")] {
        let out = bin()
            .args(["stream", "127.0.0.1", &addr.port().to_string(), &key])
            .args(["hello over h3", "--stats", "--transport", transport])
            .args([
                "--cert-pin",
                &pin,
                "--ticket",
                &ticket,
                "--server-name",
                "localhost",
            ])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{transport}: {err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello over h3");
        assert!(
            err.lines().any(|l| l.starts_with(carriage)),
            "{transport}: {err}"
        );
    }
    // Without the front's ticket key the QUIC client is told why.
    let out = bin()
        .args(["stream", "127.0.0.1", &addr.port().to_string(), &key, "x"])
        .args(["--transport", "quic", "--cert-pin", &pin])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--transport quic needs --ticket"), "{err}");
}

#[test]
fn demo_hidden_service_serves_the_site_only_through_a_rendezvous() {
    let t = std::time::Instant::now();
    let out = bin()
        .args([
            "demo",
            "--hidden-service",
            "--check",
            "--mix-delay-ms",
            "50",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = field(&text, "  hidden site");
    assert!(url.starts_with("betanet://"), "{text}");
    assert_eq!(url.len(), "betanet://".len() + 64, "{url}");
    assert!(text.contains("has no TCP/HTX listener"), "{text}");
    assert!(text.contains("GET /        HTTP 200"), "{text}");
    assert!(text.contains("HTML checked"), "{text}");
    assert!(
        text.contains("GET /dashboard/api/stats  HTTP 200"),
        "{text}"
    );
    assert!(text.contains("rendezvous   127.0.0.1:"), "{text}");
    assert!(text.contains("in this one process"), "{text}");
    // The descriptor went to the directories and the client found it by id.
    assert!(
        text.contains("  hsdir        descriptor published"),
        "{text}"
    );
    assert!(
        text.contains("  lookup       descriptor found by id"),
        "{text}"
    );
    // The client proxy serves http://<id>.betanet/ through the mixnet.
    let id = &url["betanet://".len()..];
    let check = field(&text, "  proxy check");
    assert!(
        check.starts_with(&format!(
            "GET http://{id}.betanet/ via the proxy at 127.0.0.1:"
        )),
        "{text}"
    );
    assert!(check.contains(": HTTP 200 "), "{text}");
    assert!(check.ends_with("HTML checked"), "{text}");
    assert!(
        text.contains("curl -x http://127.0.0.1:")
            && text.contains(&format!(" http://{id}.betanet/")),
        "{text}"
    );
    assert!(text.contains("curl --socks5-hostname 127.0.0.1:"), "{text}");
    assert!(
        t.elapsed() < std::time::Duration::from_secs(20),
        "{:?}",
        t.elapsed()
    );
}
