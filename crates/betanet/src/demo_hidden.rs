//! `betanet demo --hidden-service`: a site served **only** as a mixnet hidden service.
//!
//! In one process, on 127.0.0.1: N mixnodes (real `betanet-mix` nodes with their exit
//! application: introduction and rendezvous points), a hidden service that answers BAR
//! requests with a real `betanet_app::App` (the demo site) and has no TCP/HTX listener for the
//! site at all, and publishes its signed descriptor to the mixnet's hidden-service
//! directories (the mixnodes XOR-closest to `SHA-256("bn-hsdir" ‖ id ‖ day)`, through the
//! mixnet). A client that knows only the `betanet://` id looks the descriptor up there and
//! reaches the site through an introduction point and a rendezvous point
//! (`HsSession::fetch`), so neither side learns the other's address. Then the client proxy
//! (`betanet-proxy` with the mix seeds) serves `http://<id>.betanet/` to curl and browsers
//! the same way. Requests and responses are BAR messages in their stream form (`u32be head_len ‖
//! det-CBOR head ‖ body`), chunked end to end by `betanet_mix::hs_stream`.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use betanet_app::{App, AppConfig, NodeStats, PluginRegistry};
use betanet_crypto::sign::SigningKey;
use betanet_mix::app::{ExitApp, ExitAppStats};
use betanet_mix::client::{ClientConfig, HsSession, MixClient};
use betanet_mix::delay::DelayDist;
use betanet_mix::hsdir;
use betanet_mix::node::{Mixnode, MixnodeConfig};
use betanet_proxy::{MixSettings, Proxy, ProxyConfig};
use betanet_wire::bar::{self, HeaderValue, Method, stream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::hidden_site::{HiddenSiteOptions, start_hidden_site};

/// Marker the check looks for in the hidden site's front page.
const PAGE_MARKER: &str = "reachable only through the mixnet";

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

struct Node {
    node: Mixnode,
    stats: Arc<Mutex<ExitAppStats>>,
}

fn stats_of(n: &Node) -> ExitAppStats {
    *n.stats.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts `n` mixnodes with U[max/5, max] ms delays, each running the exit application.
async fn start_nodes(n: usize, delay_max_ms: u64, dir: &Path) -> Result<Vec<Node>> {
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let mut cfg = MixnodeConfig::new(
            "127.0.0.1:0".parse().context("loopback address")?,
            dir.join(format!("hs-mix-{i}")),
        );
        cfg.delay = DelayDist::uniform(
            Duration::from_millis(delay_max_ms / 5),
            Duration::from_millis(delay_max_ms.max(1)),
        )?;
        let (tx, rx) = mpsc::channel(1024);
        let node = Mixnode::start(cfg, Some(tx))
            .await
            .context("starting a mixnode")?;
        let stats = Arc::new(Mutex::new(ExitAppStats::default()));
        ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), Some(stats.clone()));
        nodes.push(Node { node, stats });
    }
    Ok(nodes)
}

/// The demo site: the dashboard and metrics plugins plus a front page. No listener.
fn site() -> Result<Arc<App>> {
    let cfg = AppConfig {
        site_name: "Betanet hidden demo site".to_owned(),
        plugins: vec!["dashboard".into(), "metrics".into()],
        ..AppConfig::default()
    };
    let mut app = App::from_config(
        &cfg,
        &PluginRegistry::with_builtins(),
        Arc::new(NodeStats::new()),
    )?;
    app.get("/", |_req| async {
        betanet_app::html(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Betanet hidden site</title></head>\n<body><h1>Hello from a hidden \
             service</h1>\n<p>This page is {PAGE_MARKER}: the server has no TCP or HTX \
             listener for it, and neither it nor you learn the other's address.</p>\n\
             <p>Try <a href=\"/dashboard/api/stats\">/dashboard/api/stats</a>.</p>\
             </body></html>\n"
        ))
    })?;
    Ok(app.into_shared())
}

fn bar_get(path: &str) -> Result<Vec<u8>> {
    let head = bar::Request {
        method: Method::Get,
        uri: path.to_owned(),
        headers: vec![(
            "user-agent".to_owned(),
            HeaderValue::Text("betanet-demo".to_owned()),
        )],
        body: Vec::new(),
    };
    Ok(stream::frame_head(&head.encode()?)?)
}

/// `(status, body)` of a BAR response in stream form.
fn parse_response(bytes: &[u8]) -> Result<(u16, Vec<u8>)> {
    let (head, used) = stream::split_head(bytes)?.context("truncated BAR response head")?;
    let resp = bar::Response::decode(head)?;
    let mut body = resp.body;
    body.extend_from_slice(bytes.get(used..).unwrap_or_default());
    Ok((resp.status, body))
}

struct Fetched {
    status: u16,
    body: Vec<u8>,
    wire_bytes: usize,
    elapsed: Duration,
}

async fn get(s: &mut HsSession, path: &str) -> Result<Fetched> {
    let t = Instant::now();
    let resp = s
        .fetch(&bar_get(path)?, Duration::from_secs(30))
        .await
        .with_context(|| format!("fetching {path} through the hidden service"))?;
    let (status, body) = parse_response(&resp)?;
    Ok(Fetched {
        status,
        body,
        wire_bytes: resp.len(),
        elapsed: t.elapsed(),
    })
}

/// `GET http://{host}{path}` through the HTTP proxy at `proxy`: `(status, body)`.
async fn proxy_get(proxy: SocketAddr, host: &str, path: &str) -> Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(proxy)
        .await
        .context("connecting to the proxy")?;
    let req = format!(
        "GET http://{host}{path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: betanet-demo\r\n\
         Connection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut out))
        .await
        .context("the proxy did not answer within 60 s")??;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse::<u16>().ok())
        .context("no HTTP status line from the proxy")?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Runs the hidden-service demo (`check`: exit after the self-check).
pub async fn run(mixnodes: usize, delay_max_ms: u64, check: bool, dir: &Path) -> Result<()> {
    let t0 = Instant::now();
    let n = mixnodes.max(3);
    println!("Betanet demo — a site served ONLY as a mixnet hidden service.");
    println!(
        "Everything runs in this one process on 127.0.0.1: {n} mixnodes, the hidden service and \
         the client are tokio tasks; packets between them are real TCP connections on loopback."
    );
    println!();
    let nodes = start_nodes(n, delay_max_ms, dir).await?;
    let seeds: Vec<SocketAddr> = nodes.iter().map(|x| x.node.local_addr()).collect();
    let addrs: Vec<String> = seeds.iter().map(ToString::to_string).collect();
    println!(
        "  mixnodes     {}  (U[{},{}] ms delay per hop{})",
        addrs.join(", "),
        delay_max_ms / 5,
        delay_max_ms.max(1),
        if delay_max_ms == 150 {
            ", SPEC §7 default"
        } else {
            "; SPEC §7 says U[30,150]"
        }
    );

    // The hidden service (shared with `betanet serve --hidden-service`): its own mix client
    // (reply-block listener only), a fresh key, intro points, directory publication.
    const INTRO_POINTS: usize = 2;
    let opts = HiddenSiteOptions {
        intro_points: INTRO_POINTS,
        intro_surbs: 4,
        ..HiddenSiteOptions::default()
    };
    let key = SigningKey::generate(&mut rand_core::OsRng);
    let t = Instant::now();
    let hidden = start_hidden_site(site()?, &key, &seeds, &opts).await?;
    let publication = match &hidden.first_publication {
        Ok(p) => p.clone(),
        Err(e) => bail!("publishing the descriptor: {e}"),
    };
    let publish_ms = t.elapsed().as_secs_f64() * 1e3;
    let want = (INTRO_POINTS * opts.intro_surbs) as u64;
    let deadline = Instant::now() + Duration::from_secs(10);
    while nodes
        .iter()
        .map(|x| stats_of(x).intros_registered)
        .sum::<u64>()
        < want
    {
        if Instant::now() > deadline {
            bail!("the introduction points did not register the service within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let url = hidden.url.clone();
    let intro_addrs: Vec<String> = hidden.intros.iter().map(|i| i.addr.0.to_string()).collect();
    println!("  hidden site  {url}");
    println!(
        "               signed descriptor ({} B, Ed25519) lists intro points {}; the site has \
         no TCP/HTX listener",
        publication.descriptor_len,
        intro_addrs.join(", ")
    );
    println!(
        "  hsdir        descriptor published through the mixnet to {} directory nodes (the {} \
         XOR-closest to SHA-256(\"bn-hsdir\"||id||day), today and tomorrow): stored by {} in \
         {:.0} ms (with intro registration)",
        publication.acks.len(),
        hsdir::HSDIR_REPLICAS,
        publication.stored(),
        publish_ms
    );

    // The client: knows only the URL; the descriptor comes from the directories.
    let client = MixClient::start(ClientConfig::default()).await?;
    client.discover_nodes(&seeds).await;
    let t = Instant::now();
    let found = client
        .lookup_descriptor(&url, Duration::from_secs(10))
        .await
        .context("looking the descriptor up in the hidden-service directories")?;
    println!(
        "  lookup       descriptor found by id in the directories ({} B, verified) in {:.0} ms",
        found.len(),
        t.elapsed().as_secs_f64() * 1e3
    );
    let t = Instant::now();
    let mut session = client
        .connect_service(&url, &found, now_unix(), Duration::from_secs(30))
        .await
        .context("connecting to the hidden service")?;
    let connect = t.elapsed();
    println!(
        "  rendezvous   {} (chosen by the client; joined in {:.0} ms)",
        session.rendezvous().addr.0,
        connect.as_secs_f64() * 1e3
    );
    let page = get(&mut session, "/").await?;
    let html = String::from_utf8_lossy(&page.body);
    let page_ok = page.status == 200 && html.contains(PAGE_MARKER);
    println!(
        "  GET /        HTTP {} {} B body ({} B BAR) in {:.0} ms{}",
        page.status,
        page.body.len(),
        page.wire_bytes,
        page.elapsed.as_secs_f64() * 1e3,
        if page_ok { ", HTML checked" } else { "" }
    );
    let stats = get(&mut session, "/dashboard/api/stats").await?;
    let json = String::from_utf8_lossy(&stats.body);
    let stats_ok = stats.status == 200 && json.contains("uptime");
    println!(
        "  GET /dashboard/api/stats  HTTP {} {} B in {:.0} ms",
        stats.status,
        stats.body.len(),
        stats.elapsed.as_secs_f64() * 1e3
    );
    let relayed: u64 = nodes.iter().map(|x| stats_of(x).rv_relayed).sum();
    let budget = session.reply_budget();
    println!(
        "  check        {} rendezvous relays, {} reply blocks deposited by the client; the \
         intro and rendezvous points relay only end-to-end sealed chunks (by construction)",
        relayed, budget.deposited
    );
    if !page_ok {
        bail!(
            "the hidden site's front page is wrong (HTTP {}, marker missing)",
            page.status
        );
    }
    if !stats_ok {
        bail!(
            "/dashboard/api/stats through the hidden service got HTTP {}",
            stats.status
        );
    }

    // The client proxy: knows only the mix seeds; `<id>.betanet` is looked up and fetched
    // through the mixnet for curl and browsers.
    let mut pcfg = ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    let mut mix = MixSettings::new(seeds.clone());
    mix.lookup_timeout_secs = 15;
    mix.fetch_timeout_secs = 25;
    pcfg.mix = Some(mix);
    let proxy = Proxy::start(pcfg)
        .await
        .context("starting the client proxy")?;
    let paddr = proxy.local_addr();
    let host = format!("{}.betanet", url.trim_start_matches("betanet://"));
    let t = Instant::now();
    let (status, body) = proxy_get(paddr, &host, "/").await?;
    let proxy_ok = status == 200 && body.contains(PAGE_MARKER);
    println!(
        "  proxy check  GET http://{host}/ via the proxy at {paddr}: HTTP {status} {} B in \
         {:.0} ms{}",
        body.len(),
        t.elapsed().as_secs_f64() * 1e3,
        if proxy_ok { ", HTML checked" } else { "" }
    );
    if !proxy_ok {
        bail!("the proxy did not serve the hidden site (HTTP {status})");
    }
    println!("  try          curl -x http://{paddr} http://{host}/");
    println!("               curl --socks5-hostname {paddr} http://{host}/");
    println!("  ready in     {:.2} s", t0.elapsed().as_secs_f64());
    if !check {
        println!();
        println!(
            "The hidden service and the proxy keep running (the site is reachable only via {url}, \
             or http://{host}/ through the proxy). Press Ctrl-C to stop."
        );
        tokio::signal::ctrl_c().await?;
        println!("stopping");
    }
    proxy.shutdown().await;
    drop(hidden);
    for x in nodes {
        let _ = x.node.shutdown().await;
    }
    Ok(())
}
