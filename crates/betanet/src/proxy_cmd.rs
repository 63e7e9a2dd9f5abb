//! `betanet proxy`: the client side (DESIGN flow 2). A local SOCKS5 + HTTP proxy that reaches
//! the configured Betanet sites as BAR over pooled HTX connections (`betanet-proxy`). There is
//! no clearnet exit: other hosts are refused.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result};
use betanet_proxy::{Proxy, ProxyConfig, SiteConfig};

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
    if cfg.sites.is_empty() {
        anyhow::bail!(
            "no Betanet sites configured: add [[site]] entries to --config or --site HOST=ADDR=KEY"
        );
    }
    Ok(cfg)
}

/// Runs the proxy until Ctrl-C.
pub async fn run(args: ProxyArgs) -> Result<()> {
    let cfg = proxy_config(&args)?;
    let hosts: Vec<String> = cfg.sites.iter().map(|s| s.host.clone()).collect();
    let proxy = Proxy::start(cfg).await.context("cannot start the proxy")?;
    let addr = proxy.local_addr();
    println!("proxy       SOCKS5 + HTTP on {addr} (no clearnet exit)");
    println!("sites       {}", hosts.join(", "));
    println!(
        "try         curl -x http://{addr} http://{}/",
        hosts.first().map_or("", String::as_str)
    );
    println!(
        "            curl --socks5-hostname {addr} http://{}/",
        hosts.first().map_or("", String::as_str)
    );
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("shutting down");
    proxy.shutdown().await;
    Ok(())
}
