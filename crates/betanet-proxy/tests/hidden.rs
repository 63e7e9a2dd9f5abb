#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! End to end on 127.0.0.1: real mixnodes (exit application: intro, rendezvous and
//! hidden-service directory), a hidden service answering BAR with a real betanet-app site and
//! publishing its descriptor through the mixnet, and the proxy reaching it as
//! `<service id>.betanet` over HTTP proxying and SOCKS5, knowing only the mix seeds.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use betanet_mix::app::{ExitApp, ExitAppStats};
use betanet_mix::client::{ClientConfig, HiddenService, MixClient};
use betanet_mix::delay::DelayDist;
use betanet_mix::hsdir::PublishStatus;
use betanet_mix::node::{Mixnode, MixnodeConfig};
use betanet_proxy::{MixSettings, Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

fn site() -> Arc<betanet_app::App> {
    let mut app = betanet_app::App::new();
    app.get("/hello/{x}", |req: betanet_app::Request| async move {
        format!("hidden hello {}\n", req.param("x").unwrap_or(""))
    })
    .unwrap();
    app.into_shared()
}

async fn answer(app: Arc<betanet_app::App>, request: Vec<u8>) -> Vec<u8> {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(betanet_app::serve_stream(
        app,
        theirs,
        betanet_app::PeerInfo::local(),
    ));
    let (mut rd, mut wr) = tokio::io::split(ours);
    wr.write_all(&request).await.unwrap();
    wr.shutdown().await.unwrap();
    let mut out = Vec::new();
    rd.read_to_end(&mut out).await.unwrap();
    let _ = server.await;
    out
}

struct Net {
    nodes: Vec<Mixnode>,
    seeds: Vec<SocketAddr>,
    url: String,
    _dir: tempfile::TempDir,
}

async fn start_net() -> Net {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut stats = Vec::new();
    for i in 0..5 {
        let mut c = MixnodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("n{i}")),
        );
        c.delay = DelayDist::uniform(Duration::from_millis(1), Duration::from_millis(5)).unwrap();
        let (tx, rx) = mpsc::channel(1024);
        let node = Mixnode::start(c, Some(tx)).await.unwrap();
        let st = Arc::new(Mutex::new(ExitAppStats::default()));
        ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), Some(st.clone()));
        stats.push(st);
        nodes.push(node);
    }
    let seeds: Vec<SocketAddr> = nodes.iter().map(Mixnode::local_addr).collect();
    let svc = MixClient::start(ClientConfig::default()).await.unwrap();
    svc.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc, &[11; 32]).unwrap();
    let url = hs.url();
    let intro = nodes[0].info();
    hs.register_intro(&intro, 4).await.unwrap();
    for _ in 0..500 {
        if stats[0].lock().unwrap().intros_registered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let desc = hs.descriptor(&[intro], now - 60, now + 3600);
    let acks = hs
        .publish_descriptor(&desc, now, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(acks.iter().all(|a| a.status == Some(PublishStatus::Stored)));
    let app = site();
    tokio::spawn(hs.serve(move |req| answer(app.clone(), req), 4));
    Net {
        nodes,
        seeds,
        url,
        _dir: dir,
    }
}

async fn raw(proxy: SocketAddr, req: String) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_service_by_id_through_http_proxy_and_socks5() {
    let net = start_net().await;
    let id = net.url.strip_prefix("betanet://").unwrap().to_owned();
    let host = format!("{id}.betanet");
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    let mut mix = MixSettings::new(net.seeds.clone());
    mix.lookup_timeout_secs = 10;
    mix.fetch_timeout_secs = 10;
    mix.aliases.push(betanet_proxy::HsAliasConfig {
        host: "hidden.bn".into(),
        service: net.url.clone(),
    });
    cfg.mix = Some(mix);
    let proxy = Proxy::start(cfg).await.unwrap();
    let addr = proxy.local_addr();

    // HTTP proxy, absolute form.
    let text = raw(
        addr,
        format!(
            "GET http://{host}/hello/mix HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("\r\n\r\nhidden hello mix\n"), "{text}");

    // Same session again (cached), upper-case host, and through the alias.
    let text = raw(
        addr,
        format!(
            "GET http://{}/hello/again HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            host.to_ascii_uppercase()
        ),
    )
    .await;
    assert!(text.ends_with("hidden hello again\n"), "{text}");
    let text = raw(
        addr,
        "GET http://hidden.bn/hello/alias HTTP/1.1\r\nHost: hidden.bn\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
    .await;
    assert!(text.ends_with("hidden hello alias\n"), "{text}");

    // Parallel requests (a browser loading a page): more sessions to the same service.
    let mut tasks = Vec::new();
    for i in 0..3 {
        let host = host.clone();
        tasks.push(tokio::spawn(async move {
            raw(
                addr,
                format!(
                    "GET http://{host}/hello/p{i} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                ),
            )
            .await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let text = t.await.unwrap();
        assert!(text.ends_with(&format!("hidden hello p{i}\n")), "{text}");
    }

    // SOCKS5 with the host name.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[5, 1, 0]).await.unwrap();
    let mut m = [0u8; 2];
    s.read_exact(&mut m).await.unwrap();
    assert_eq!(m, [5, 0]);
    let mut req = vec![5, 1, 0, 3, host.len() as u8];
    req.extend_from_slice(host.as_bytes());
    req.extend_from_slice(&80u16.to_be_bytes());
    s.write_all(&req).await.unwrap();
    let mut rep = [0u8; 10];
    s.read_exact(&mut rep).await.unwrap();
    assert_eq!(rep[1], 0, "SOCKS5 reply {rep:?}");
    s.write_all(
        format!("GET /hello/socks HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.ends_with("hidden hello socks\n"), "{text}");

    // An id nobody published: 502 with a readable body.
    let unknown = format!("{}.betanet", "ab".repeat(32));
    let text = raw(
        addr,
        format!("GET http://{unknown}/ HTTP/1.1\r\nHost: {unknown}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 502 Bad Gateway\r\n"), "{text}");
    assert!(
        text.contains("no descriptor for this id in the mixnet's hidden-service directories"),
        "{text}"
    );
    // A host that is neither a site nor a hidden service is still refused.
    let text = raw(
        addr,
        "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n"
            .to_owned(),
    )
    .await;
    assert!(text.starts_with("HTTP/1.1 502"), "{text}");
    assert!(text.contains("not a configured Betanet site"), "{text}");
    proxy.shutdown().await;
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_directories_are_a_504() {
    // Mixnodes without their exit application: lookups are never answered.
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut rxs = Vec::new();
    for i in 0..3 {
        let c = MixnodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("n{i}")),
        );
        let (tx, rx) = mpsc::channel(16);
        nodes.push(Mixnode::start(c, Some(tx)).await.unwrap());
        rxs.push(rx);
    }
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap());
    let mut mix = MixSettings::new(nodes.iter().map(Mixnode::local_addr).collect());
    mix.lookup_timeout_secs = 1;
    cfg.mix = Some(mix);
    let proxy = Proxy::start(cfg).await.unwrap();
    let host = format!("{}.betanet", "cd".repeat(32));
    let text = raw(
        proxy.local_addr(),
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(
        text.starts_with("HTTP/1.1 504 Gateway Timeout\r\n"),
        "{text}"
    );
    assert!(text.contains("descriptor lookup timed out"), "{text}");
    drop(rxs);
    proxy.shutdown().await;
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[test]
fn mix_config_is_validated() {
    let ok = ProxyConfig::from_toml_str(
        "[mix]\nseeds = [\"127.0.0.1:9000\"]\n[[mix.alias]]\nhost = \"h.bn\"\nservice = \"betanet://00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\"\n",
    )
    .unwrap();
    assert_eq!(ok.hidden_aliases().unwrap().len(), 1);
    let e = ProxyConfig::from_toml_str("[mix]\nseeds = []\n").unwrap_err();
    assert!(e.to_string().contains("mix.seeds"), "{e}");
    let e = ProxyConfig::from_toml_str(
        "[mix]\nseeds = [\"127.0.0.1:9000\"]\n[[mix.alias]]\nhost = \"h.bn\"\nservice = \"zz\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("mix.alias[0].service"), "{e}");
    let e =
        ProxyConfig::from_toml_str("[mix]\nseeds = [\"127.0.0.1:9000\"]\nbogus = 1\n").unwrap_err();
    assert!(e.to_string().contains("bogus"), "{e}");
    let e = ProxyConfig::from_toml_str(
        "response_timeout_secs = 20\n[mix]\nseeds = [\"127.0.0.1:9000\"]\nfetch_timeout_secs = 20\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("mix.fetch_timeout_secs"), "{e}");
    assert_eq!(
        betanet_proxy::config::hidden_service_id(&format!("{}.BETANET.", "0f".repeat(32))),
        Some([0x0f; 32])
    );
    assert_eq!(betanet_proxy::config::hidden_service_id("demo.bn"), None);
}
