//! `hello-site`: the example site (the `hello` plugin plus the dashboard and metrics) served
//! over HTX `tcp12`. Put `betanet gateway` in front of it to reach it from a browser.
//!
//! ```text
//! cargo run --release -p betanet-example-hello -- --listen 127.0.0.1:7444 --data-dir /tmp/hello
//! ```

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use betanet_app::NodeStats;
use betanet_crypto::identity::PeerId;
use clap::Parser;

/// The example site over HTX.
#[derive(Parser, Debug)]
#[command(name = "hello-site", version)]
struct Args {
    /// HTX (tcp12) listen address.
    #[arg(long, default_value = "127.0.0.1:7444")]
    listen: String,
    /// Directory for the node key (created on first start, reused after).
    #[arg(long, default_value = "hello-site-data")]
    data_dir: PathBuf,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BETANET_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let app = betanet_example_hello::build_app(Arc::new(NodeStats::new()))?;
    let identity = betanet_net::cli::load_or_create_identity(&args.data_dir)?;
    let public = identity.verifying_key();
    let listener = betanet_net::listen(&args.listen, betanet_net::ServerConfig::new(identity))
        .await
        .with_context(|| format!("cannot listen for HTX on {}", args.listen))?;
    println!("site        HTX/tcp12 on {}", listener.local_addr());
    println!("peer id     {}", PeerId::from_ed25519(&public));
    println!("public key  {}", hex::encode(public.to_bytes()));
    println!("plugins     {}", app.plugins().join(", "));
    tokio::select! {
        () = betanet_app::htx::serve_listener(app, listener, 1024) => {
            anyhow::bail!("the HTX listener stopped")
        }
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}
