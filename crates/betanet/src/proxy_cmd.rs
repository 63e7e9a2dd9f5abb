//! `betanet proxy`: the client side (DESIGN flow 2). A local SOCKS5 + HTTP proxy that reaches
//! the configured Betanet sites as BAR over pooled HTX connections (`betanet-proxy`). There is
//! no clearnet exit: other hosts are refused. With mix seeds (`--mix-seed` or `[mix]`),
//! hidden services are reached as `<service id>.betanet` through the mixnet.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use betanet_proxy::{MixSettings, Proxy, ProxyConfig, SiteConfig};

/// Options of `betanet proxy`.
#[derive(clap::Args, Debug)]
pub struct ProxyArgs {
    /// Proxy config file (TOML: `listen`, limits, `[[site]]` entries; see
    /// crates/betanet-proxy/README.md).
    #[arg(long, env = "BETANET_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Listen address (SOCKS5 and HTTP proxy on one port); overrides the config.
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Add a tcp12 site: HOST=ADDR=PUBLIC_KEY_HEX (repeatable), e.g.
    /// demo.bn=127.0.0.1:7443=<key printed by `betanet serve`>.
    #[arg(long = "site")]
    pub sites: Vec<String>,
    /// Mixnode address to discover the mixnet from (repeatable); enables hidden services as
    /// `<64 hex service id>.betanet` (adds to the config's `[mix] seeds`).
    #[arg(long = "mix-seed")]
    pub mix_seeds: Vec<SocketAddr>,
}

/// Loads the config, applying the command-line overrides.
pub fn proxy_config(args: &ProxyArgs) -> Result<ProxyConfig> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read proxy config {}", p.display()))?;
            ProxyConfig::from_toml_str(&text)
                .with_context(|| format!("in proxy config {}", p.display()))?
        }
        None => ProxyConfig::new(SocketAddr::from(([127, 0, 0, 1], 8118))),
    };
    if let Some(l) = args.listen {
        cfg.listen = l;
    }
    for s in &args.sites {
        cfg.sites.push(SiteConfig::parse_flag(s)?);
    }
    if !args.mix_seeds.is_empty() {
        match &mut cfg.mix {
            Some(m) => m.seeds.extend(args.mix_seeds.iter().copied()),
            None => cfg.mix = Some(MixSettings::new(args.mix_seeds.clone())),
        }
    }
    if cfg.sites.is_empty() && cfg.mix.is_none() {
        anyhow::bail!(
            "no Betanet sites configured: add [[site]] entries to --config or --site HOST=ADDR=KEY \
             (or mix seeds with --mix-seed ADDR / [mix] seeds for hidden services)"
        );
    }
    Ok(cfg)
}

/// Runs the proxy until Ctrl-C.
pub async fn run(args: ProxyArgs) -> Result<()> {
    let cfg = proxy_config(&args)?;
    let hosts: Vec<String> = cfg.sites.iter().map(|s| s.host.clone()).collect();
    let mix_seeds = cfg.mix.as_ref().map(|m| m.seeds.len());
    let proxy = Proxy::start(cfg).await.context("cannot start the proxy")?;
    let addr = proxy.local_addr();
    println!("proxy       SOCKS5 + HTTP on {addr} (no clearnet exit)");
    if !hosts.is_empty() {
        println!("sites       {}", hosts.join(", "));
        println!(
            "try         curl -x http://{addr} http://{}/",
            hosts.first().map_or("", String::as_str)
        );
        println!(
            "            curl --socks5-hostname {addr} http://{}/",
            hosts.first().map_or("", String::as_str)
        );
    }
    if let Some(n) = mix_seeds {
        println!(
            "mixnet      {n} seed(s); hidden services as http://<64 hex service id>.betanet/ \
             (looked up in the mixnet's hidden-service directories)"
        );
    }
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("shutting down");
    proxy.shutdown().await;
    Ok(())
}
