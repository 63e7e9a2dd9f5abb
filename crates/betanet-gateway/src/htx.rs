//! [`HtxConnector`]: BAR exchanges on multiplexed HTX streams (`betanet-net`) to a site server
//! (`betanet serve`), over a small pool of authenticated connections that are re-dialed when
//! they close.

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};

use betanet_crypto::identity::PeerId;
use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_net::{ClientConfig, Connection, Transport, dial};
use tokio::sync::Mutex;

use crate::upstream::{BoxSiteStream, OpenFuture, SiteConnector};

/// One pool slot: `conn` is read on every exchange under a short synchronous lock (no
/// `.await` while held); `dial` serialises re-dialing so a dead connection is replaced once.
struct Slot {
    conn: std::sync::Mutex<Option<Connection>>,
    dial: Mutex<()>,
}

/// Opens one HTX stream per BAR exchange on one of `pool_size` pooled connections.
pub struct HtxConnector {
    addr: String,
    remote: VerifyingKey,
    cfg: ClientConfig,
    pool: Vec<Slot>,
    next: AtomicUsize,
}

impl std::fmt::Debug for HtxConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HtxConnector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HtxConnector {
    /// A connector to the site at `addr` whose identity is `remote`, dialing as `identity`.
    pub fn new(
        addr: String,
        remote: VerifyingKey,
        identity: SigningKey,
        transport: Transport,
        pool_size: usize,
    ) -> Self {
        let mut cfg = ClientConfig::new(identity);
        cfg.transport = transport;
        Self::with_config(addr, remote, cfg, pool_size)
    }

    /// A connector dialing `addr` with a complete client configuration (e.g. the TLS carriage
    /// with a pinned certificate and an access ticket, or a custom connect timeout).
    pub fn with_config(
        addr: String,
        remote: VerifyingKey,
        cfg: ClientConfig,
        pool_size: usize,
    ) -> Self {
        HtxConnector {
            addr,
            remote,
            cfg,
            pool: (0..pool_size.max(1))
                .map(|_| Slot {
                    conn: std::sync::Mutex::new(None),
                    dial: Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    /// Sets the post-quantum mode of the inner handshake (hybrid by default).
    #[must_use]
    pub fn with_pq(mut self, pq: betanet_net::PqMode) -> Self {
        self.cfg.pq = pq;
        self
    }

    /// A stream on the slot's current connection; `None` when there is none or it is
    /// unusable (then dropped from the slot).
    fn try_stream(slot: &Slot) -> Option<BoxSiteStream> {
        let mut conn = slot.conn.lock().unwrap_or_else(|p| p.into_inner());
        match conn.as_ref()?.open_stream() {
            Ok(s) => Some(Box::new(s)),
            Err(e) => {
                tracing::debug!(error = %e, "pooled HTX connection unusable; re-dialing");
                *conn = None;
                None
            }
        }
    }

    async fn open_stream(&self) -> io::Result<BoxSiteStream> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.pool.len();
        let slot = self
            .pool
            .get(i)
            .ok_or_else(|| io::Error::other("empty pool"))?;
        // Fast path: no await, no allocation beyond the stream itself.
        if let Some(s) = Self::try_stream(slot) {
            return Ok(s);
        }
        let _dialing = slot.dial.lock().await;
        // Someone else may have re-dialed while we waited.
        if let Some(s) = Self::try_stream(slot) {
            return Ok(s);
        }
        let c = dial(&self.addr, &self.remote, &self.cfg)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
        let s = c
            .open_stream()
            .map_err(|e| io::Error::other(e.to_string()))?;
        *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        Ok(Box::new(s))
    }
}

impl SiteConnector for HtxConnector {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(self.open_stream())
    }

    fn describe(&self) -> String {
        format!(
            "htx://{} ({})",
            self.addr,
            PeerId::from_ed25519(&self.remote)
        )
    }
}
