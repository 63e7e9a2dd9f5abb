//! `betanet mixnode`: the L4 relay with its length-prefixed TCP ingress and, with
//! `htx_listen` in the config (or `--htx-listen`), an HTX ingress authenticated with the node's
//! Ed25519 identity (the key of its descriptor). Each HTX stream carries the same
//! `u32be length ‖ packet` framing, so other nodes and clients reach the mixnet over the cover
//! transport; next hops listed under `[[peers]]` are reached over HTX too.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use betanet_crypto::identity::PeerId;
use betanet_crypto::sign::VerifyingKey;
use betanet_mix::app::{ExitApp, RequestHandler};
use betanet_mix::node::{Mixnode, MixnodeConfig};

/// Options of `betanet mixnode`.
#[derive(clap::Args, Debug)]
pub struct MixnodeArgs {
    /// The config file (see config/mixnode.example.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// Also accept packets over HTX (tcp12) on this address (overrides `htx_listen`).
    #[arg(long)]
    pub htx_listen: Option<String>,
    /// Unused by the mixnode (its identity lives in the config's `state_dir`); kept so that
    /// `BETANET_DATA_DIR` does not break existing invocations.
    #[arg(long, env = "BETANET_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs the mixnode until Ctrl-C.
pub async fn run(args: MixnodeArgs, _data_dir: &Path) -> Result<()> {
    let text = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read mixnode config {}", args.config.display()))?;
    let mut cfg = MixnodeConfig::from_toml_str(&text)
        .with_context(|| format!("in mixnode config {}", args.config.display()))?;
    if let Some(a) = &args.htx_listen {
        let addr: SocketAddr = tokio::net::lookup_host(a.as_str())
            .await
            .with_context(|| format!("bad --htx-listen address {a}"))?
            .next()
            .with_context(|| format!("--htx-listen {a} resolves to nothing"))?;
        cfg.htx_listen = Some(addr);
    }
    let handler: Option<RequestHandler> = if cfg.exit_echo {
        Some(Arc::new(|data: &[u8]| Some(data.to_vec())))
    } else {
        None
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let node = Mixnode::start(cfg, Some(tx)).await?;
    let exit = ExitApp::new(node.info().id, handler).spawn(rx, node.packet_sender(), None);
    let (epoch, key) = node.current_key();
    println!("mixnode     TCP ingress {}", node.local_addr());
    println!("mix key     {} (epoch {epoch})", hex::encode(key.0));
    if let Some(m) = node.metrics_addr() {
        println!("metrics     http://{m}/metrics");
    }
    if let Some(h) = node.htx_addr() {
        println!("htx ingress {h} (tcp12)");
    }
    let public = node.identity_public();
    if let Ok(vk) = VerifyingKey::from_bytes(&public) {
        println!("peer id     {}", PeerId::from_ed25519(&vk));
    }
    println!("public key  {}", hex::encode(public));
    println!("ready");
    tokio::signal::ctrl_c().await?;
    exit.abort();
    println!("stopping");
    node.shutdown().await?;
    Ok(())
}
