//! End to end through the gateway over HTX, with real processes and sockets on loopback:
//! HTTP client → gateway (ticket admission, static decoy for everyone else) → pooled HTX
//! `tcp12` → the `hello-site` process (the example plugin on the site framework).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use betanet_gateway::{Gateway, GatewayConfig};
use betanet_testkit::process::{ChildGuard, banner_value, read_banner};
use betanet_ticket::ticket::{RenderedCarrier, SiteInfo, make_ticket};
use betanet_ticket::{Carrier, CarrierPolicy, SiteTicketKey};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use sha2::{Digest, Sha256};

/// Starts `hello-site` on an ephemeral port; returns the process, its address and key.
fn start_site(dir: &std::path::Path) -> (ChildGuard, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hello-site"))
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let banner = read_banner(out, "plugins", 10);
    assert!(banner_value(&banner, "plugins").unwrap().contains("hello"));
    let addr = banner_value(&banner, "site")
        .unwrap()
        .split_whitespace()
        .last()
        .unwrap();
    let key = banner_value(&banner, "public key").unwrap();
    assert_eq!(key.len(), 64, "{banner:?}");
    (guard, addr.to_owned(), key.to_owned())
}

async fn start_gateway(
    dir: &std::path::Path,
    site_addr: &str,
    site_key: &str,
) -> (Gateway, String) {
    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let key_id = [7u8; 8];
    let ticket_key =
        SiteTicketKey::from_secret(betanet_crypto::dh::X25519Secret::from_bytes(secret), key_id)
            .unwrap();
    std::fs::create_dir_all(dir.join("decoy")).unwrap();
    std::fs::write(dir.join("decoy/index.html"), "<h1>a bakery</h1>\n").unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\n[decoy]\nstatic_dir = \"{}\"\n\
         [site]\naddr = \"{site_addr}\"\npublic_key = \"{site_key}\"\n\
         [ticket]\nsecret_hex = \"{}\"\nkey_id_hex = \"{}\"\nreplay_db = \"{}\"\n",
        dir.join("decoy").display(),
        hex::encode(secret),
        hex::encode(key_id),
        dir.join("replay.redb").display(),
    );
    let cfg = GatewayConfig::from_toml(&cfg).unwrap();
    let connector = betanet_gateway::site_connector(&cfg).unwrap();
    let gw = Gateway::start(cfg, connector).await.unwrap();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let site = SiteInfo {
        keys: ticket_key.keys(),
        policy: CarrierPolicy::default(),
    };
    let t = make_ticket(&site, now, &mut rand_core::OsRng).unwrap();
    let RenderedCarrier::Cookie(cookie) = t.render_as(Carrier::Cookie) else {
        panic!("cookie carrier")
    };
    (gw, cookie)
}

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    send
}

fn request(
    method: &str,
    path: &str,
    cookie: Option<&str>,
    body: Vec<u8>,
) -> hyper::Request<Full<Bytes>> {
    let mut b = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("user-agent", "e2e-test");
    if let Some(c) = cookie {
        b = b.header("cookie", c);
    }
    if method == "POST" {
        b = b.header("content-type", "application/octet-stream");
    }
    b.body(Full::new(Bytes::from(body))).unwrap()
}

async fn call(
    send: &mut SendRequest<Full<Bytes>>,
    req: hyper::Request<Full<Bytes>>,
) -> (u16, Bytes) {
    send.ready()
        .await
        .expect("the gateway kept the connection open");
    let resp = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .expect("response within 30 s")
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

fn download_size() -> u64 {
    if std::env::var_os("BETANET_BIG").is_some() {
        1 << 30
    } else {
        32 << 20
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_echo_404_and_large_download_through_gateway_over_htx() {
    let dir = tempfile::tempdir().unwrap();
    let (_site, site_addr, site_key) = start_site(&dir.path().join("site"));
    let (gw, cookie) = start_gateway(dir.path(), &site_addr, &site_key).await;
    let gw_addr = gw.local_addr();

    // One admitted HTTP connection: the ticket on the first request admits it.
    let mut send = connect(gw_addr).await;
    let (status, body) = call(
        &mut send,
        request("GET", "/hello/rust", Some(&cookie), vec![]),
    )
    .await;
    assert_eq!((status, &body[..]), (200, &b"hello rust"[..]));

    let (status, _) = call(&mut send, request("GET", "/no/such/page", None, vec![])).await;
    assert_eq!(status, 404, "a 404 from the site stays a 404");

    let mut upload = vec![0u8; 3 << 20];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut upload);
    let (status, body) = call(&mut send, request("POST", "/echo", None, upload.clone())).await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), upload.len());
    assert!(body == upload, "echoed body differs");

    // A large download, hashed as it streams in.
    let n = download_size();
    send.ready().await.unwrap();
    let resp = send
        .send_request(request("GET", &format!("/download/{n}"), None, vec![]))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let (mut got, mut hash, mut frames) = (0u64, Sha256::new(), 0u32);
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            hash.update(&data);
            got += data.len() as u64;
            frames += 1;
        }
    }
    assert_eq!(got, n);
    assert!(
        frames > 1,
        "the body arrived in {frames} piece(s), not streamed"
    );
    let mut want = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0u64;
    while off < n {
        let k = (n - off).min(buf.len() as u64) as usize;
        betanet_example_hello::fill_pattern(off, &mut buf[..k]);
        want.update(&buf[..k]);
        off += k as u64;
    }
    assert_eq!(hash.finalize(), want.finalize(), "download corrupted");

    // The connection is still usable afterwards.
    let (status, body) = call(&mut send, request("GET", "/hello/again", None, vec![])).await;
    assert_eq!((status, &body[..]), (200, &b"hello again"[..]));

    // Without a ticket, the same path is the decoy's business, not the site's.
    let mut stranger = connect(gw_addr).await;
    let (status, body) = call(&mut stranger, request("GET", "/hello/rust", None, vec![])).await;
    assert_ne!(&body[..], b"hello rust");
    assert_eq!(status, 404, "the static decoy has no /hello/rust");
    let (status, body) = call(&mut stranger, request("GET", "/", None, vec![])).await;
    assert_eq!((status, &body[..]), (200, &b"<h1>a bakery</h1>\n"[..]));

    gw.shutdown().await;
}
