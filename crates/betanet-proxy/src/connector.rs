//! Building a [`SiteConnector`] for each configured site.
//!
//! `tcp12` sites use the gateway's pooled, multiplexed [`HtxConnector`]. `HtxConnector::new`
//! builds its own `betanet_net::ClientConfig` with no TLS settings, so `tls` sites use
//! [`TlsHtxConnector`] here: the same "one HTX stream per exchange on a pooled connection,
//! re-dialed when it dies" logic over a full `ClientConfig` (pinned certificate, access
//! ticket in the first POST).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_gateway::upstream::OpenFuture;
use betanet_gateway::{BoxSiteStream, HtxConnector, SiteConnector};
use betanet_net::ticket::TicketPublic;
use betanet_net::tls::{RustlsClient, TlsClient};
use betanet_net::{ClientConfig, Connection, PqMode, Transport};

use crate::ProxyError;
use crate::config::Site;

struct Slot {
    conn: std::sync::Mutex<Option<Connection>>,
    dial: tokio::sync::Mutex<()>,
}

/// HTX over the TLS carriage to one site, `pool_size` pooled connections.
pub struct TlsHtxConnector {
    addr: String,
    remote: VerifyingKey,
    cfg: ClientConfig,
    pool: Vec<Slot>,
    next: AtomicUsize,
}

impl std::fmt::Debug for TlsHtxConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsHtxConnector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl TlsHtxConnector {
    /// A connector dialing `addr` with `cfg` (which must carry TLS settings).
    pub fn new(addr: String, remote: VerifyingKey, cfg: ClientConfig, pool_size: usize) -> Self {
        TlsHtxConnector {
            addr,
            remote,
            cfg,
            pool: (0..pool_size.max(1))
                .map(|_| Slot {
                    conn: std::sync::Mutex::new(None),
                    dial: tokio::sync::Mutex::new(()),
                })
                .collect(),
            next: AtomicUsize::new(0),
        }
    }

    fn try_stream(slot: &Slot) -> Option<BoxSiteStream> {
        let mut conn = slot.conn.lock().unwrap_or_else(|p| p.into_inner());
        match conn.as_ref()?.open_stream() {
            Ok(s) => Some(Box::new(s)),
            Err(_) => {
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
        if let Some(s) = Self::try_stream(slot) {
            return Ok(s);
        }
        let _dialing = slot.dial.lock().await;
        if let Some(s) = Self::try_stream(slot) {
            return Ok(s);
        }
        let c = betanet_net::dial(&self.addr, &self.remote, &self.cfg)
            .await
            .map_err(|e| io::Error::new(io::ErrorKind::ConnectionRefused, e.to_string()))?;
        let s = c
            .open_stream()
            .map_err(|e| io::Error::other(e.to_string()))?;
        *slot.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        Ok(Box::new(s))
    }
}

impl SiteConnector for TlsHtxConnector {
    fn open(&self) -> OpenFuture<'_> {
        Box::pin(self.open_stream())
    }

    fn describe(&self) -> String {
        format!("htx+tls://{}", self.addr)
    }
}

/// The connector for `site`, dialing as `identity`.
pub fn site_connector(
    site: &Site,
    identity: &SigningKey,
    pool_size: usize,
    connect_timeout: Duration,
    pq: PqMode,
) -> Result<Arc<dyn SiteConnector>, ProxyError> {
    match (&site.transport, &site.tls) {
        (Transport::Tls, Some(t)) => {
            let rustls = RustlsClient::pinned_sha256(t.cert_sha256)
                .map_err(|e| ProxyError::config(format!("site {}", site.host), e.to_string()))?;
            let mut cfg = ClientConfig::new(identity.clone());
            cfg.transport = Transport::Tls;
            cfg.pq = pq;
            cfg.connect_timeout = connect_timeout;
            cfg.tls = Some(TlsClient {
                tls: Arc::new(rustls),
                server_name: t.server_name.clone(),
                path: t.path.clone(),
                ticket: TicketPublic {
                    public: t.ticket_public,
                    key_id: t.ticket_key_id,
                },
            });
            Ok(Arc::new(TlsHtxConnector::new(
                site.addr.clone(),
                site.public_key,
                cfg,
                pool_size,
            )))
        }
        _ => Ok(Arc::new(
            HtxConnector::new(
                site.addr.clone(),
                site.public_key,
                identity.clone(),
                Transport::Tcp12,
                pool_size,
            )
            .with_pq(pq),
        )),
    }
}
