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
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use betanet_crypto::identity::PeerId;
use betanet_net::{Connection, Listener};
use futures_util::FutureExt;

use crate::{App, PeerInfo, serve_stream};

/// Serves every stream of one HTX connection as a BAR exchange, until the connection ends.
/// The connection and each stream are counted in the app's [`crate::NodeStats`].
///
/// Each exchange is first polled right here, in the connection's task: most complete in that
/// one poll (the request head and FIN arrived together, the handler does not wait, the
/// response fits the flow-control credit), so a request costs no task spawn and no extra
/// scheduling hop between the connection driver and the handler, and the responses of a batch
/// of requests leave together. An exchange that has to wait (more request body, a handler
/// that awaits, a streamed response, no credit) continues on its own task, so slow exchanges
/// never hold back the connection's other streams and run in parallel on a multi-threaded
/// runtime. A panic while serving one exchange costs only that exchange (handler panics are
/// answered 500 by [`App::dispatch`]).
pub async fn serve_connection(app: Arc<App>, conn: Connection, addr: Option<SocketAddr>) {
    let _conn_guard = app.stats().connection_guard("htx");
    let peer = PeerId::from_ed25519(conn.peer_identity()).to_hex();
    while let Ok(stream) = conn.accept_stream().await {
        let info = PeerInfo {
            addr,
            peer_id: Some(peer.clone()),
            transport: "htx",
        };
        let mut exchange = Box::pin(serve_one(app.clone(), stream, info));
        let first = std::future::poll_fn(|cx| Poll::Ready(exchange.as_mut().poll(cx))).await;
        if first.is_pending() {
            tokio::spawn(exchange);
        }
    }
}

async fn serve_one(app: Arc<App>, stream: betanet_net::Stream, info: PeerInfo) {
    let _s = app.stats().stream_guard("htx");
    let served = AssertUnwindSafe(serve_stream(app.clone(), stream, info))
        .catch_unwind()
        .await;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(error = %e, "BAR exchange ended with an error"),
        Err(_) => tracing::error!("BAR exchange panicked"),
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
