//! Serving an [`App`] over HTX (feature `htx`): every stream of an accepted `betanet-net`
//! connection is one BAR exchange (SPEC §10).
//!
//! This is what `betanet serve` and `betanet demo` run, exposed so that a crate with its own
//! plugins can serve them the same way in a few lines:
//!
//! ```no_run
//! # async fn run(app: std::sync::Arc<betanet_app::App>, key: betanet_crypto::sign::SigningKey)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! let listener = betanet_net::listen("127.0.0.1:7443", betanet_net::ServerConfig::new(key)).await?;
//! betanet_app::htx::serve_listener(app, listener, 256).await;
//! # Ok(()) }
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use betanet_crypto::identity::PeerId;
use betanet_net::{Connection, Listener};

use crate::{App, PeerInfo, serve_stream};

/// Serves every stream of one HTX connection as a BAR exchange, until the connection ends.
/// The connection and each stream are counted in the app's [`crate::NodeStats`].
pub async fn serve_connection(app: Arc<App>, conn: Connection, addr: Option<SocketAddr>) {
    let _conn_guard = app.stats().connection_guard("htx");
    let peer = PeerId::from_ed25519(conn.peer_identity()).to_hex();
    while let Ok(stream) = conn.accept_stream().await {
        let app = app.clone();
        let info = PeerInfo {
            addr,
            peer_id: Some(peer.clone()),
            transport: "htx",
        };
        tokio::spawn(async move {
            let _s = app.stats().stream_guard("htx");
            if let Err(e) = serve_stream(app.clone(), stream, info).await {
                tracing::debug!(error = %e, "BAR exchange ended with an error");
            }
        });
    }
}

/// Accepts HTX connections from `listener` and serves each on its own task, at most
/// `max_connections` at once (later ones wait for a slot). Returns when the listener stops.
pub async fn serve_listener(app: Arc<App>, mut listener: Listener, max_connections: usize) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    while let Ok(conn) = listener.accept().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let app = app.clone();
        tokio::spawn(async move {
            let _permit = permit;
            serve_connection(app, conn, None).await;
        });
    }
}
