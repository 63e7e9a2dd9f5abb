//! The whole path with real processes on loopback: HTTP client → `betanet gateway` (ticket
//! admission, decoy for everyone else) → HTX → `betanet serve` (site framework).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

use betanet_testkit::process::{ChildGuard, free_port, wait_for_port};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_betanet"))
}

fn run(args: &[&str]) -> String {
    let out = bin().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn field(text: &str, name: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| {
            v.trim()
                .trim_matches('"')
                .trim_start_matches("= ")
                .trim_matches('"')
                .to_owned()
        })
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// Sends one HTTP/1.1 request on `s`, returns (status, body).
fn http(s: &mut TcpStream, path: &str, cookie: Option<&str>) -> (u16, String) {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: test\r\n");
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut status_line = String::new();
    r.read_line(&mut status_line).unwrap();
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let mut len = None;
    let mut chunked = false;
    loop {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = Some(v.trim().parse::<usize>().unwrap());
        }
        if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).unwrap();
            let n = usize::from_str_radix(size.trim(), 16).unwrap();
            let mut chunk = vec![0u8; n + 2];
            r.read_exact(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body).unwrap();
    }
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn cookie_line(ticket_out: &str) -> String {
    field(ticket_out, "Cookie:")
}

#[test]
fn browser_to_gateway_to_site_over_htx() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // The site server (HTX tcp12).
    let mut site = bin()
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
        .arg(d.join("site"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(site.stdout.take().unwrap()).lines();
    let (mut addr, mut key) = (String::new(), String::new());
    for line in lines.by_ref().take(10) {
        let line = line.unwrap();
        if line.starts_with("site") {
            addr = line.split_whitespace().last().unwrap().to_owned();
        }
        if let Some(k) = line.strip_prefix("public key") {
            key = k.trim().to_owned();
        }
        if line.starts_with("plugins") {
            break;
        }
    }
    let _site = ChildGuard(site);

    // A decoy site for everyone without a ticket.
    std::fs::create_dir_all(d.join("decoy")).unwrap();
    std::fs::write(d.join("decoy/index.html"), "<h1>just a bakery</h1>\n").unwrap();

    let keys = run(&["ticket-keygen"]);
    let (secret, key_id, ticket_pub) = (
        field(&keys, "secret_hex"),
        field(&keys, "key_id_hex"),
        field(&keys, "ticket_pub"),
    );
    let port = free_port();
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n[decoy]\nstatic_dir = \"{}\"\n[site]\naddr = \"{addr}\"\npublic_key = \"{key}\"\n[ticket]\nsecret_hex = \"{secret}\"\nkey_id_hex = \"{key_id}\"\nreplay_db = \"{}\"\n",
        d.join("decoy").display(),
        d.join("replay.redb").display()
    );
    std::fs::write(d.join("gateway.toml"), cfg).unwrap();
    let _gw = ChildGuard(
        bin()
            .args(["gateway", "--workers", "1", "--config"])
            .arg(d.join("gateway.toml"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for_port(port, Duration::from_secs(20));

    let site_url = format!("http://127.0.0.1:{port}");
    let cookie = cookie_line(&run(&["ticket", &ticket_pub, &key_id, &site_url]));

    // Admitted: the first request carries the ticket; later ones on the connection follow.
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let (status, body) = http(&mut s, "/metrics", Some(&cookie));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("# EOF"), "{body}");
    let (status, _) = http(&mut s, "/no/such/page", None);
    assert_eq!(status, 404);
    let (status, body) = http(&mut s, "/dashboard", None);
    assert_eq!(status, 200);
    assert!(body.contains("<html"));

    // Not admitted: the decoy, also for the same ticket replayed.
    for c in [None, Some(cookie.as_str())] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let (status, body) = http(&mut s, "/metrics", c);
        assert_eq!(status, 404, "the static decoy has no /metrics");
        let (status, body2) = http(&mut s, "/", None);
        assert_eq!(status, 200);
        assert!(body2.contains("bakery"), "{body} / {body2}");
    }
}
