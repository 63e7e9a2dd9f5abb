//! `betanet mixnode`: the L4 relay with its length-prefixed TCP ingress and, with
//! `--htx-listen`, an HTX ingress (each HTX stream carries the same `u32be length ‖ packet`
//! framing, so other nodes and clients reach the mixnet over the cover transport).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use betanet_crypto::identity::PeerId;
use betanet_mix::app::ExitApp;
use betanet_mix::node::{Mixnode, MixnodeConfig};
use betanet_net::ServerConfig;

/// Options of `betanet mixnode`.
#[derive(clap::Args, Debug)]
pub struct MixnodeArgs {
    /// The config file (see config/mixnode.example.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Also accept packets over HTX (tcp12) on this address.
    #[arg(long)]
    pub htx_listen: Option<String>,
    /// Data directory for the node's HTX identity key.
    #[arg(long, env = "BETANET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the mixnode until Ctrl-C.
pub async fn run(args: MixnodeArgs, data_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read mixnode config {}", args.config.display()))?;
    let cfg = MixnodeConfig::from_toml_str(&text)
        .with_context(|| format!("in mixnode config {}", args.config.display()))?;
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let node = Arc::new(Mixnode::start(cfg, Some(tx)).await?);
    let exit = ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), None);
    let (epoch, key) = node.current_key();
    println!("mixnode     TCP ingress {}", node.local_addr());
    println!("mix key     {} (epoch {epoch})", hex::encode(key.0));
    if let Some(m) = node.metrics_addr() {
        println!("metrics     http://{m}/metrics");
    }
    if let Some(addr) = &args.htx_listen {
        let identity = betanet_net::cli::load_or_create_identity(data_dir)?;
        let public = identity.verifying_key();
        let mut listener = betanet_net::listen(addr, ServerConfig::new(identity))
            .await
            .with_context(|| format!("cannot listen for HTX on {addr}"))?;
        println!("htx ingress {} (tcp12)", listener.local_addr());
        println!("peer id     {}", PeerId::from_ed25519(&public));
        println!("public key  {}", hex::encode(public.to_bytes()));
        let node = node.clone();
        tokio::spawn(async move {
            while let Ok(conn) = listener.accept().await {
                let node = node.clone();
                tokio::spawn(async move {
                    while let Ok(stream) = conn.accept_stream().await {
                        let node = node.clone();
                        tokio::spawn(async move { node.serve_stream(stream).await });
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c().await?;
    exit.abort();
    println!("stopping");
    if let Ok(node) = Arc::try_unwrap(node) {
        node.shutdown().await?;
    }
    Ok(())
}
