//! `betanet demo`: a complete local Betanet on loopback, from one command and no config.
//!
//! * a **site server** (`betanet-app` with the dashboard and metrics plugins) behind an HTX
//!   listener (`tcp12`, Noise XK + ML-KEM-768, multiplexed streams);
//! * a **gateway** in front of it: an ordinary-looking website (a static decoy page) for
//!   everyone, and — for a request with a valid access ticket — the door to the site, reached
//!   over pooled HTX connections;
//! * a **client proxy** (SOCKS5 + HTTP on loopback) that reaches the site as `demo.bn` over HTX;
//! * **mixnodes** (3 by default) with a 3-hop packet sent through them as a check.
//!
//! With `--hidden-service` it runs [`crate::demo_hidden`] instead: the site served only as a mixnet hidden
//! service, fetched by its `betanet://` id through introduction and rendezvous points.
//!
//! It prints the dashboard URL with a single-use ticket, checks the whole path itself
//! (admitted request → 200 through gateway and HTX; request without a ticket → the decoy), and
//! runs until Ctrl-C (or exits after the check with `--check`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use betanet_app::{App, AppConfig, NodeStats, PluginRegistry};
use betanet_crypto::identity::{NodeId, PeerId};
use betanet_crypto::sign::SigningKey;
use betanet_gateway::{Gateway, GatewayConfig, HtxConnector};
use betanet_net::{PqMode, ServerConfig, Transport};
use betanet_ticket::ticket::{RenderedCarrier, SiteInfo, make_ticket};
use betanet_ticket::{Carrier, CarrierPolicy, SiteTicketKey};

/// Options of `betanet demo`.
#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Gateway port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Number of mixnodes to start (0 = none).
    #[arg(long, default_value_t = 3)]
    pub mixnodes: usize,
    /// Use the classic (X25519-only) inner handshake instead of the ML-KEM-768 hybrid.
    #[arg(long)]
    pub classic: bool,
    /// Exit after the self-check instead of running until Ctrl-C.
    #[arg(long)]
    pub check: bool,
    /// Serve the demo site only as a mixnet hidden service (no TCP/HTX listener for it) and
    /// fetch it by its `betanet://` id through a rendezvous point (instead of the HTX demo).
    #[arg(long)]
    pub hidden_service: bool,
    /// Maximum per-hop mix delay in ms for `--hidden-service`: delays are U[max/5, max]
    /// (150 = SPEC §7's U[30,150]).
    #[arg(long, default_value_t = 150)]
    pub mix_delay_ms: u64,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

const DECOY_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>Rosemary &amp; Rye — bakery</title></head>\n<body style=\"font-family:Georgia,serif;\
max-width:40em;margin:4em auto;color:#3b2f2f\"><h1>Rosemary &amp; Rye</h1>\n<p>Sourdough, \
rye and seasonal pastries, baked every morning since 1998.</p>\n<p>Open Tuesday to Sunday, \
7&nbsp;am to 2&nbsp;pm.</p></body></html>\n";

/// One HTTP/1.1 GET on a fresh connection (`target` may be absolute-form, for a proxy);
/// returns (status, body).
fn http_get(addr: SocketAddr, target: &str, cookie: Option<&str>) -> Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: betanet-demo\r\nConnection: close\r\n"
    );
    if let Some(c) = cookie {
        req.push_str(&format!("Cookie: {c}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    let code = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("the gateway sent no HTTP status line")?;
    let mut rest = Vec::new();
    r.read_to_end(&mut rest)?;
    Ok((code, String::from_utf8_lossy(&rest).into_owned()))
}

fn ticket(key: &SiteTicketKey, carrier: Carrier) -> Result<String> {
    let site = SiteInfo {
        keys: key.keys(),
        policy: CarrierPolicy::default(),
    };
    let t = make_ticket(&site, now_unix(), &mut rand_core::OsRng)?;
    Ok(match t.render_as(carrier) {
        RenderedCarrier::Cookie(c) => c,
        RenderedCarrier::Query(q) => q,
        RenderedCarrier::Body { body, .. } => body,
    })
}

async fn start_site(classic: bool) -> Result<(Arc<App>, SocketAddr, SigningKey)> {
    let stats = Arc::new(NodeStats::new());
    let cfg = AppConfig {
        site_name: "Betanet demo site".to_owned(),
        plugins: vec!["dashboard".into(), "metrics".into()],
        ..AppConfig::default()
    };
    let app = App::from_config(&cfg, &PluginRegistry::with_builtins(), stats)?.into_shared();
    let identity = SigningKey::generate(&mut rand_core::OsRng);
    let mut server = ServerConfig::new(identity.clone());
    server.transport = Transport::Tcp12;
    if classic {
        server.pq = PqMode::Classic;
    }
    let listener = betanet_net::listen("127.0.0.1:0", server).await?;
    let addr = listener.local_addr();
    let serving = app.clone();
    tokio::spawn(betanet_app::htx::serve_listener(serving, listener, 1024));
    Ok((app, addr, identity))
}

async fn start_gateway(
    dir: &Path,
    port: u16,
    site_addr: SocketAddr,
    site_key: &SigningKey,
    ticket_key: &SiteTicketKey,
    ticket_secret_hex: &str,
    pq: PqMode,
) -> Result<Gateway> {
    std::fs::create_dir_all(dir.join("decoy"))?;
    std::fs::write(dir.join("decoy/index.html"), DECOY_PAGE)?;
    let cfg = format!(
        "listen = \"127.0.0.1:{port}\"\n\
         [decoy]\nstatic_dir = \"{}\"\n\
         [site]\naddr = \"{site_addr}\"\npublic_key = \"{}\"\n\
         [ticket]\nsecret_hex = \"{ticket_secret_hex}\"\nkey_id_hex = \"{}\"\nreplay_db = \"{}\"\n\
         replay_durability = \"batched\"\n",
        dir.join("decoy").display(),
        hex::encode(site_key.verifying_key().to_bytes()),
        hex::encode(ticket_key.keys().ticket_key_id),
        dir.join("replay.redb").display(),
    );
    let cfg = GatewayConfig::from_toml(&cfg)?;
    let connector = Arc::new(
        HtxConnector::new(
            site_addr.to_string(),
            site_key.verifying_key(),
            SigningKey::generate(&mut rand_core::OsRng),
            Transport::Tcp12,
            2,
        )
        .with_pq(pq),
    );
    Ok(Gateway::start(cfg, connector).await?)
}

/// Copies the gateway's admission counters into the site's dashboard once a second.
fn mirror_tickets(gw: &Gateway, stats: Arc<NodeStats>) {
    let metrics = gw.metrics();
    tokio::spawn(async move {
        let (mut ok, mut refused) = (0u64, 0u64);
        loop {
            let now_ok = metrics.admissions_with("admitted");
            let now_refused = metrics.requests_with("decoy");
            for _ in ok..now_ok {
                stats.ticket(true);
            }
            for _ in refused..now_refused {
                stats.ticket(false);
            }
            (ok, refused) = (now_ok, now_refused);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("betanet-demo-").tempdir()?;
    if args.hidden_service {
        return crate::demo_hidden::run(args.mixnodes, args.mix_delay_ms, args.check, dir.path())
            .await;
    }
    println!("Betanet demo — everything runs on this machine, on 127.0.0.1 only.");
    println!();

    let (app, site_addr, site_key) = start_site(args.classic).await?;
    let site_pub = site_key.verifying_key();
    println!(
        "  site server  HTX/tcp12 {site_addr}  {}",
        NodeId::from_ed25519(&site_pub).name()
    );
    println!("               peer id {}", PeerId::from_ed25519(&site_pub));

    let mut secret = [0u8; 32];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    let mut key_id = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key_id);
    let ticket_key =
        SiteTicketKey::from_secret(betanet_crypto::dh::X25519Secret::from_bytes(secret), key_id)?;
    let gw = start_gateway(
        dir.path(),
        args.port,
        site_addr,
        &site_key,
        &ticket_key,
        &hex::encode(secret),
        if args.classic {
            PqMode::Classic
        } else {
            PqMode::Hybrid
        },
    )
    .await?;
    let gw_addr = gw.local_addr();
    mirror_tickets(&gw, app.stats().clone());
    println!(
        "  gateway      http://{gw_addr}/  (a bakery's website for everyone without a ticket)"
    );

    // The client proxy: SOCKS5 + HTTP on loopback, `demo.bn` → the site over HTX.
    let mut proxy_cfg = betanet_proxy::ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    proxy_cfg.classic_handshake = args.classic;
    proxy_cfg
        .sites
        .push(betanet_proxy::SiteConfig::parse_flag(&format!(
            "demo.bn={site_addr}={}",
            hex::encode(site_pub.to_bytes())
        ))?);
    let proxy = betanet_proxy::Proxy::start(proxy_cfg)
        .await
        .context("starting the client proxy")?;
    let proxy_addr = proxy.local_addr();
    println!("  client proxy SOCKS5 + HTTP on {proxy_addr}  (demo.bn → the site over HTX)");

    let mix = crate::demo_mix::start(args.mixnodes, dir.path()).await?;
    if let Some(m) = &mix {
        println!("  mixnodes     {}", m.describe());
    }

    // Self-check of the whole path, off the async runtime (blocking HTTP client).
    let cookie = ticket(&ticket_key, Carrier::Cookie)?;
    let check = tokio::task::spawn_blocking(move || -> Result<(u16, u16, Duration)> {
        let t = Instant::now();
        let (admitted, body) = http_get(gw_addr, "/dashboard/api/stats", Some(&cookie))?;
        let elapsed = t.elapsed();
        if admitted != 200 || !body.contains("uptime") {
            bail!("admitted request got HTTP {admitted}");
        }
        let (decoy, body) = http_get(gw_addr, "/", None)?;
        if !body.contains("Rosemary") {
            bail!("a request without a ticket did not get the decoy page (HTTP {decoy})");
        }
        Ok((admitted, decoy, elapsed))
    })
    .await??;
    let via_proxy = tokio::task::spawn_blocking(move || -> Result<Duration> {
        let t = Instant::now();
        let (status, body) = http_get(proxy_addr, "http://demo.bn/dashboard/api/stats", None)?;
        if status != 200 || !body.contains("uptime") {
            bail!("a request through the client proxy got HTTP {status}");
        }
        Ok(t.elapsed())
    })
    .await??;
    println!();
    println!(
        "  check        ticket → gateway → HTX → site: HTTP {} in {:.1} ms; no ticket → decoy page (HTTP {})",
        check.0,
        check.2.as_secs_f64() * 1e3,
        check.1
    );
    println!(
        "  check        client proxy → HTX → site: HTTP 200 in {:.1} ms",
        via_proxy.as_secs_f64() * 1e3
    );
    if let Some(m) = &mix {
        let r = m.check().await?;
        println!("  check        {r}");
    }
    println!("  ready in     {:.2} s", t0.elapsed().as_secs_f64());
    println!();
    let query = ticket(&ticket_key, Carrier::Query)?;
    println!("Open the live dashboard (the link carries a single-use access ticket):");
    println!("  http://{gw_addr}/dashboard?{query}");
    println!("or with curl (each ticket works once; `betanet demo` prints fresh ones on start):");
    println!(
        "  curl -H 'Cookie: {}' http://{gw_addr}/metrics",
        ticket(&ticket_key, Carrier::Cookie)?
    );
    println!("or through the client proxy (no ticket needed: it speaks HTX itself):");
    println!("  curl -x http://{proxy_addr} http://demo.bn/dashboard/api/stats");
    println!("  curl --socks5-hostname {proxy_addr} http://demo.bn/metrics");
    if args.check {
        proxy.shutdown().await;
        gw.shutdown().await;
        return Ok(());
    }
    println!();
    println!("Press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    println!("stopping");
    proxy.shutdown().await;
    gw.shutdown().await;
    Ok(())
}
