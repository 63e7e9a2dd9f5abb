//! Building a [`SiteConnector`] for each configured site: the gateway's pooled, multiplexed
//! [`HtxConnector`] (one HTX stream per exchange, connections re-dialed when they die) over a
//! `betanet_net::ClientConfig` for the site's carriage — `tcp12`, or TLS + HTTP/2 with a pinned
//! certificate and an access ticket in the first POST.

use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::sign::SigningKey;
use betanet_gateway::{HtxConnector, SiteConnector};
use betanet_net::ticket::TicketPublic;
use betanet_net::tls::{RustlsClient, TlsClient};
use betanet_net::{ClientConfig, PqMode, Transport};

use crate::ProxyError;
use crate::config::Site;

/// The connector for `site`, dialing as `identity`.
pub fn site_connector(
    site: &Site,
    identity: &SigningKey,
    pool_size: usize,
    connect_timeout: Duration,
    pq: PqMode,
) -> Result<Arc<dyn SiteConnector>, ProxyError> {
    let mut cfg = ClientConfig::new(identity.clone());
    cfg.pq = pq;
    cfg.connect_timeout = connect_timeout;
    match (&site.transport, &site.tls) {
        (t @ (Transport::Tls | Transport::Quic | Transport::QuicThenTls), Some(tls)) => {
            let rustls = RustlsClient::pinned_sha256(tls.cert_sha256)
                .map_err(|e| ProxyError::config(format!("site {}", site.host), e.to_string()))?;
            cfg.transport = *t;
            let t = tls;
            cfg.tls = Some(TlsClient {
                tls: Arc::new(rustls),
                server_name: t.server_name.clone(),
                path: t.path.clone(),
                ticket: TicketPublic {
                    public: t.ticket_public,
                    key_id: t.ticket_key_id,
                },
            });
        }
        _ => cfg.transport = Transport::Tcp12,
    }
    Ok(Arc::new(HtxConnector::with_config(
        site.addr.clone(),
        site.public_key,
        cfg,
        pool_size,
    )))
}
