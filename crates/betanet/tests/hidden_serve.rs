//! `betanet serve --hidden-service`: 4 real `betanet mixnode` processes, the real site server
//! serving a static site ONLY as a mixnet hidden service, and the real client proxy fetching
//! `http://<id>.betanet/` through the mixnet; then the site server is SIGKILLed and restarted
//! with the same data dir and must come back under the same id.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use betanet_testkit::process::{ChildGuard, banner_value, free_port, read_banner, wait_for_port};

const MARKER: &str = "hidden-serve-test-page-7f3a";

/// Starts one mixnode (1-5 ms delays) and returns it with its TCP ingress.
fn mixnode(dir: &Path, i: usize) -> (ChildGuard, SocketAddr) {
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\nworkers = 1\ndelay_min_ms = 1\n\
         delay_max_ms = 5\n",
        dir.join(format!("mix{i}")).display()
    );
    let path = dir.join(format!("mix{i}.toml"));
    std::fs::write(&path, cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_betanet"))
        .args(["mixnode", "--config"])
        .arg(&path)
        .arg("--data-dir")
        .arg(dir.join(format!("mixdata{i}")))
        .env_remove("BETANET_DATA_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let lines = read_banner(out, "ready", 20);
    let tcp = banner_value(&lines, "mixnode     TCP ingress")
        .expect("TCP ingress line")
        .parse()
        .unwrap();
    (guard, tcp)
}

/// Starts `betanet serve --hidden-service`; returns it with its `betanet://` URL and banner.
fn hidden_serve(
    data: &Path,
    site: &Path,
    seeds: &[SocketAddr],
) -> (ChildGuard, String, Vec<String>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_betanet"));
    cmd.args([
        "serve",
        "--hidden-service",
        "--intro-points",
        "2",
        "--static",
    ])
    .arg(format!("/={}", site.display()))
    .arg("--data-dir")
    .arg(data)
    .env_remove("BETANET_DATA_DIR")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    for s in seeds {
        cmd.arg("--mix-seed").arg(s.to_string());
    }
    let mut child = cmd.spawn().unwrap();
    let out = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let lines = read_banner(out, "ready", 20);
    let url = banner_value(&lines, "hidden site")
        .expect("hidden site line")
        .to_owned();
    (guard, url, lines)
}

/// `GET http://{host}/` through the HTTP proxy at 127.0.0.1:`port`: `(status, text)`.
fn proxy_get(port: u16, host: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// Retries [`proxy_get`] until 200 with the marker, for at most `limit`.
fn fetch_until_ok(port: u16, host: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let (status, text) = proxy_get(port, host);
        if status == 200 && text.contains(MARKER) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "the hidden site was not served through the proxy: HTTP {status}\n{text}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn serve_hidden_service_reachable_through_proxy_and_stable_across_restart() {
    let t0 = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let site = dir.path().join("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(
        site.join("index.html"),
        format!("<!doctype html><html><body><p>{MARKER}</p></body></html>\n"),
    )
    .unwrap();
    let mut nodes = Vec::new();
    let mut seeds = Vec::new();
    for i in 0..4 {
        let (g, a) = mixnode(dir.path(), i);
        nodes.push(g);
        seeds.push(a);
    }

    let data = dir.path().join("serve-data");
    let (serve, url, lines) = hidden_serve(&data, &site, &seeds);
    assert!(url.starts_with("betanet://"), "{lines:?}");
    let id = url.trim_start_matches("betanet://").to_owned();
    assert_eq!(id.len(), 64, "{url}");
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{url}");
    let host = format!("{id}.betanet");
    assert_eq!(
        banner_value(&lines, "proxy URL"),
        Some(format!("http://{host}/").as_str()),
        "{lines:?}"
    );
    let intros: Vec<&String> = lines
        .iter()
        .filter(|l| l.starts_with("intro point"))
        .collect();
    assert_eq!(intros.len(), 2, "{lines:?}");
    assert_ne!(intros[0], intros[1], "intro points must be distinct nodes");
    let desc = banner_value(&lines, "descriptor").expect("descriptor line");
    assert!(desc.contains("stored by"), "{lines:?}");
    // No HTX listener in this mode.
    assert!(!lines.iter().any(|l| l.starts_with("site ")), "{lines:?}");

    // The proxy, with short mixnet timeouts so a session to the killed process is dropped fast.
    let pport = free_port();
    let seed_list: Vec<String> = seeds.iter().map(|s| format!("\"{s}\"")).collect();
    let pcfg = dir.path().join("proxy.toml");
    std::fs::write(
        &pcfg,
        format!(
            "listen = \"127.0.0.1:{pport}\"\n[mix]\nseeds = [{}]\nlookup_timeout_secs = 5\n\
             fetch_timeout_secs = 5\n",
            seed_list.join(", ")
        ),
    )
    .unwrap();
    let mut pcmd = Command::new(env!("CARGO_BIN_EXE_betanet"));
    pcmd.args(["proxy", "--config"])
        .arg(&pcfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _proxy = ChildGuard(pcmd.spawn().unwrap());
    wait_for_port(pport, Duration::from_secs(10));
    let t = Instant::now();
    let text = fetch_until_ok(pport, &host, Duration::from_secs(20));
    assert!(text.contains("<html>"), "{text}");
    eprintln!(
        "first fetch {:.1} s (serve up at {:.1} s)",
        t.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );

    // SIGKILL and restart with the same data dir: same id, reachable again.
    drop(serve);
    let (_serve2, url2, lines2) = hidden_serve(&data, &site, &seeds);
    assert_eq!(url2, url, "{lines2:?}");
    let t = Instant::now();
    let text = fetch_until_ok(pport, &host, Duration::from_secs(25));
    assert!(text.contains(MARKER), "{text}");
    eprintln!(
        "reachable again {:.1} s after the restart; total {:.1} s",
        t.elapsed().as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
}
