//! `betanet serve`: the site framework (`betanet-app`) behind an HTX listener (`betanet-net`,
//! `tcp12` or `tls`), plus an optional BAR-over-TCP listener for local development.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use betanet_app::{App, AppConfig, NodeStats, PluginRegistry};
use betanet_crypto::identity::PeerId;
use betanet_net::{ServerConfig, Transport};

/// Options of `betanet serve`.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Site config file (TOML; see config/site.example.toml). `BETANET_PROFILE` picks a
    /// `[profile.NAME]` table from it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Plugin to enable (repeatable): dashboard, metrics, static, proxy.
    #[arg(long = "plugin")]
    pub plugins: Vec<String>,
    /// Template root (repeatable).
    #[arg(long = "templates")]
    pub templates: Vec<PathBuf>,
    /// Static mount PREFIX=DIR (repeatable).
    #[arg(long = "static")]
    pub statics: Vec<String>,
    /// Forward unmatched requests to this local HTTP app, e.g. http://127.0.0.1:3000.
    #[arg(long)]
    pub proxy: Option<String>,
    /// HTX listen address.
    #[arg(long, default_value = "127.0.0.1:7443")]
    pub listen: String,
    /// HTX carriage: tcp12 or tls (tcp11 legacy framing is opt-in).
    #[arg(long, default_value = "tcp12")]
    pub transport: Transport,
    /// Also serve BAR over plain TCP here (development; each connection is one exchange).
    #[arg(long)]
    pub bar_listen: Option<SocketAddr>,
    /// Data directory (node key, TLS certificate, ticket key).
    #[arg(long, env = "BETANET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Concurrent HTX connections served (one driver task each).
    #[arg(long, default_value_t = 256)]
    pub pool_size: usize,
    /// Serve the site ONLY as a mixnet hidden service (no HTX listener), keyed by the node
    /// key of the data dir (stable `betanet://` id); needs `--mix-seed`.
    #[arg(long, requires = "mix_seeds")]
    pub hidden_service: bool,
    /// Mixnode address to discover the mixnet from (repeatable; with `--hidden-service`).
    #[arg(long = "mix-seed")]
    pub mix_seeds: Vec<SocketAddr>,
    /// Distinct introduction points to register at (with `--hidden-service`).
    #[arg(long, default_value_t = 2)]
    pub intro_points: usize,
    /// Where the hidden service receives mixnet replies (with `--hidden-service`).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub mix_reply_listen: SocketAddr,
}

/// Applies a `[profile.NAME]` table (NAME = lowercase `BETANET_PROFILE`) over the top-level
/// keys of a site config and drops the `profile` tables.
pub fn apply_profile(text: &str, profile: Option<&str>) -> Result<String> {
    let mut doc: toml::Table = text.parse().context("site config is not valid TOML")?;
    let profiles = doc.remove("profile");
    if let Some(name) = profile.map(str::to_ascii_lowercase) {
        let table = profiles
            .as_ref()
            .and_then(|p| p.get(&name))
            .and_then(toml::Value::as_table);
        match table {
            Some(t) => {
                for (k, v) in t {
                    doc.insert(k.clone(), v.clone());
                }
            }
            None if profiles.is_some() => anyhow::bail!(
                "BETANET_PROFILE={name} but the config has no [profile.{name}] table; add it or \
                 unset BETANET_PROFILE"
            ),
            None => {}
        }
    }
    Ok(toml::to_string(&doc)?)
}

/// Loads the site config, applying `BETANET_PROFILE` and the command-line overrides.
pub fn site_config(args: &ServeArgs) -> Result<AppConfig> {
    let base = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read site config {}", p.display()))?;
            let profile = std::env::var("BETANET_PROFILE").ok();
            let text = apply_profile(&text, profile.as_deref())
                .with_context(|| format!("in site config {}", p.display()))?;
            AppConfig::from_toml_str(&text)
                .with_context(|| format!("in site config {}", p.display()))?
        }
        None => AppConfig::default(),
    };
    Ok(base.with_cli(
        &args.plugins,
        &args.templates,
        &args.statics,
        args.proxy.as_deref(),
    ))
}

/// Listens for HTX (or, with `--hidden-service`, serves through the mixnet only) and serves
/// the app until Ctrl-C.
pub async fn run(args: ServeArgs, data_dir: &Path) -> Result<()> {
    let cfg = site_config(&args)?;
    let stats = Arc::new(NodeStats::new());
    let registry = PluginRegistry::with_builtins();
    let app = App::from_config(&cfg, &registry, stats.clone())?.into_shared();
    let identity = betanet_net::cli::load_or_create_identity(data_dir)?;
    if args.hidden_service {
        let opts = crate::hidden_site::HiddenSiteOptions {
            intro_points: args.intro_points,
            reply_listen: args.mix_reply_listen,
            ..Default::default()
        };
        return crate::hidden_site::run_hidden_site(app, &identity, &args.mix_seeds, &opts).await;
    }
    let public = identity.verifying_key();
    let mut server = ServerConfig::new(identity);
    server.transport = args.transport;
    let mut ticket_line = None;
    if args.transport.uses_tls() {
        let tickets = Arc::new(betanet_net::cli::load_or_create_ticket_keys(data_dir)?);
        let t = tickets.public();
        ticket_line = Some(format!(
            "{}{}",
            hex::encode(t.public),
            hex::encode(t.key_id)
        ));
        let tls = betanet_net::cli::load_or_create_tls(data_dir, "localhost", tickets)?;
        println!("cert pin    {}", hex::encode(tls.cert_sha256()));
        server.tls = Some(tls);
    }
    let mut listener = betanet_net::listen(&args.listen, server)
        .await
        .with_context(|| format!("cannot listen for HTX on {}", args.listen))?;
    println!(
        "site        HTX/{} on {}",
        args.transport,
        listener.local_addr()
    );
    println!("peer id     {}", PeerId::from_ed25519(&public));
    println!("public key  {}", hex::encode(public.to_bytes()));
    if let Some(t) = ticket_line {
        println!("ticket key  {t}");
    }
    println!("plugins     {}", app.plugins().join(", "));
    if let Some(bar) = args.bar_listen {
        let tcp = tokio::net::TcpListener::bind(bar)
            .await
            .with_context(|| format!("cannot listen for BAR/TCP on {bar}"))?;
        println!("dev BAR/TCP {}", tcp.local_addr()?);
        let app = app.clone();
        tokio::spawn(async move {
            let never = std::future::pending::<()>();
            if let Err(e) = betanet_app::serve_tcp_bar_until(app, tcp, never).await {
                tracing::warn!(error = %e, "BAR/TCP listener stopped");
            }
        });
    }
    let slots = Arc::new(tokio::sync::Semaphore::new(args.pool_size.max(1)));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                println!("shutting down");
                return Ok(());
            }
            accepted = listener.accept() => {
                let conn = match accepted {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "HTX accept failed");
                        continue;
                    }
                };
                let Ok(permit) = slots.clone().acquire_owned().await else { continue };
                let app = app.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    betanet_app::htx::serve_connection(app, conn, None).await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::apply_profile;

    #[test]
    fn profiles_override_top_level_keys() {
        let text =
            "site_name = \"base\"\nplugins = [\"metrics\"]\n[profile.minimal]\nplugins = []\n";
        let out: toml::Table = apply_profile(text, Some("MINIMAL"))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out["plugins"].as_array().unwrap().len(), 0);
        assert_eq!(out["site_name"].as_str(), Some("base"));
        assert!(!out.contains_key("profile"));
        let out: toml::Table = apply_profile(text, None).unwrap().parse().unwrap();
        assert_eq!(out["plugins"].as_array().unwrap().len(), 1);
        assert!(apply_profile(text, Some("EXTENDED")).is_err());
        assert!(apply_profile("plugins = []", Some("EXTENDED")).is_ok());
    }
}
