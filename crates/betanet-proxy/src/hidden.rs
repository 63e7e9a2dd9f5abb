//! Hidden services through the mixnet: `<64 hex service id>.betanet` (and `[[mix.alias]]`
//! names) are reached by looking the service's signed descriptor up in the mixnet's
//! hidden-service directories, joining it at a rendezvous point ([`MixClient`]) and carrying
//! each BAR exchange as one [`HsSession::fetch`].
//!
//! The HTTP ↔ BAR mapping is the same as for HTX sites (`betanet_gateway::barmap`): the
//! [`HiddenServices::open`] stream takes the framed BAR request (head + body, then FIN), the
//! pump task sends it as one hidden-service message and writes the BAR response back. Up to
//! [`HS_SESSIONS_PER_SERVICE`] sessions per service id are kept (each carries one exchange at
//! a time, so a browser's parallel requests use parallel rendezvous), and the verified
//! descriptor is cached, so only the first request to a service pays for the directory
//! lookup. A failed exchange drops its session (the next request reconnects) and answers a
//! BAR 502/504 with a readable body.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use betanet_gateway::BoxSiteStream;
use betanet_mix::MixError;
use betanet_mix::client::{ClientConfig, HsSession, MixClient};
use betanet_mix::hs_stream::MAX_MESSAGE;
use betanet_wire::bar::{self, HeaderValue};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::ProxyError;
use crate::config::MixSettings;

/// Hidden services the proxy keeps sessions and descriptors for (oldest dropped first).
pub const MAX_HS_SERVICES: usize = 64;
/// Sessions (rendezvous) kept per hidden service; each carries one exchange at a time.
pub const HS_SESSIONS_PER_SERVICE: usize = 4;

type Slot = Arc<tokio::sync::Mutex<Option<HsSession>>>;
type SlotGuard = tokio::sync::OwnedMutexGuard<Option<HsSession>>;

/// Sessions and the cached descriptor of one service.
#[derive(Default)]
struct ServiceEntry {
    slots: Vec<Slot>,
    next: usize,
    descriptor: Option<Vec<u8>>,
}

#[derive(Default)]
struct Table {
    map: HashMap<[u8; 32], ServiceEntry>,
    order: VecDeque<[u8; 32]>,
}

impl Table {
    fn entry(&mut self, id: [u8; 32]) -> &mut ServiceEntry {
        if !self.map.contains_key(&id) {
            while self.map.len() >= MAX_HS_SERVICES {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                self.map.remove(&old);
            }
            self.order.push_back(id);
        }
        self.map.entry(id).or_default()
    }
}

/// Why a hidden service could not be reached, mapped to an HTTP status and a readable text.
#[derive(Debug)]
pub struct HsFailure {
    /// 502 (unknown id, bad descriptor, mixnet unreachable) or 504 (timeout).
    pub status: StatusCode,
    /// Plain-text explanation.
    pub message: String,
}

/// The mixnet side of the proxy.
pub struct HiddenServices {
    client: MixClient,
    seeds: Vec<SocketAddr>,
    aliases: Vec<(String, [u8; 32])>,
    lookup_timeout: Duration,
    fetch_timeout: Duration,
    table: Mutex<Table>,
}

impl std::fmt::Debug for HiddenServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HiddenServices")
            .field("seeds", &self.seeds)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Maps a mix error to a status and text for `host`.
pub fn failure(host: &str, e: &MixError) -> HsFailure {
    let (status, what) = match e {
        MixError::DescriptorNotFound { .. } => (
            StatusCode::BAD_GATEWAY,
            "no descriptor for this id in the mixnet's hidden-service directories: the id is \
             unknown, the service is offline, or it has not published yet"
                .to_owned(),
        ),
        MixError::LookupTimeout { .. } | MixError::StreamTimeout { .. } => {
            (StatusCode::GATEWAY_TIMEOUT, e.to_string())
        }
        MixError::Io { source, .. } if source.kind() == io::ErrorKind::TimedOut => (
            StatusCode::GATEWAY_TIMEOUT,
            "the hidden service did not join the rendezvous in time".to_owned(),
        ),
        MixError::NotEnoughNodes { .. } => (
            StatusCode::BAD_GATEWAY,
            "no mixnodes known: check the [mix] seeds (are the mixnodes running?)".to_owned(),
        ),
        other => (StatusCode::BAD_GATEWAY, other.to_string()),
    };
    HsFailure {
        status,
        message: format!(
            "Hidden service {host} could not be reached through the mixnet: {what}.\n"
        ),
    }
}

/// A BAR response in stream form with a plain-text body (for failures inside the pump).
fn bar_text(status: StatusCode, text: &str) -> Vec<u8> {
    let resp = bar::Response {
        status: status.as_u16(),
        headers: vec![(
            "content-type".to_owned(),
            HeaderValue::Text("text/plain; charset=utf-8".to_owned()),
        )],
        body: text.as_bytes().to_vec(),
    };
    resp.encode()
        .ok()
        .and_then(|h| bar::stream::frame_head(&h).ok())
        .unwrap_or_default()
}

impl HiddenServices {
    /// Starts the mix client (reply listener) and discovers the node set from the seeds.
    pub async fn start(
        settings: &MixSettings,
        aliases: Vec<(String, [u8; 32])>,
    ) -> Result<Self, ProxyError> {
        let cfg = ClientConfig {
            reply_listen: settings.reply_listen,
            ..ClientConfig::default()
        };
        let client = MixClient::start(cfg).await.map_err(|e| {
            ProxyError::config(
                "mix.reply_listen",
                format!("cannot start the mix client: {e}"),
            )
        })?;
        let found = client.discover_nodes(&settings.seeds).await;
        tracing::info!(nodes = found.len(), "mixnet discovered");
        Ok(HiddenServices {
            client,
            seeds: settings.seeds.clone(),
            aliases,
            lookup_timeout: Duration::from_secs(settings.lookup_timeout_secs),
            fetch_timeout: Duration::from_secs(settings.fetch_timeout_secs),
            table: Mutex::new(Table::default()),
        })
    }

    /// The mix client (e.g. for its statistics).
    pub fn client(&self) -> &MixClient {
        &self.client
    }

    /// The service id `host` names: `<64 hex>.betanet` or a configured alias.
    pub fn resolve(&self, host: &str) -> Option<[u8; 32]> {
        let h = crate::config::normalize_host(host);
        self.aliases
            .iter()
            .find(|(a, _)| *a == h)
            .map(|(_, id)| *id)
            .or_else(|| crate::config::hidden_service_id(&h))
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free session slot of `id` (a new one while fewer than [`HS_SESSIONS_PER_SERVICE`]
    /// exist), else waits for a busy one (round robin).
    async fn acquire(&self, id: [u8; 32]) -> SlotGuard {
        let busy = {
            let mut t = self.table();
            let e = t.entry(id);
            if let Some(g) = e.slots.iter().find_map(|s| s.clone().try_lock_owned().ok()) {
                return g;
            }
            if e.slots.len() < HS_SESSIONS_PER_SERVICE {
                let s: Slot = Arc::new(tokio::sync::Mutex::new(None));
                e.slots.push(s.clone());
                s
            } else {
                e.next = (e.next + 1) % e.slots.len().max(1);
                match e.slots.get(e.next) {
                    Some(s) => s.clone(),
                    None => Arc::new(tokio::sync::Mutex::new(None)),
                }
            }
        };
        busy.lock_owned().await
    }

    /// Joins a new session with `id`: with the cached descriptor if there is one, else (or if
    /// that fails) after a directory lookup.
    async fn connect(&self, host: &str, id: [u8; 32]) -> Result<HsSession, MixError> {
        let url = format!("betanet://{}", hex::encode(id));
        let cached = self.table().entry(id).descriptor.clone();
        if let Some(d) = cached {
            match self
                .client
                .connect_service(&url, &d, unix_now(), self.lookup_timeout)
                .await
            {
                Ok(s) => return Ok(s),
                Err(e) => {
                    tracing::debug!(host = %host, error = %e, "cached descriptor failed; looking up again");
                    self.table().entry(id).descriptor = None;
                }
            }
        }
        if self.client.get_stats().available_nodes == 0 {
            self.client.discover_nodes(&self.seeds).await;
        }
        let d = self
            .client
            .lookup_descriptor(&url, self.lookup_timeout)
            .await?;
        self.table().entry(id).descriptor = Some(d.clone());
        self.client
            .connect_service(&url, &d, unix_now(), self.lookup_timeout)
            .await
    }

    /// Makes sure a session to `id` is available (lookup + rendezvous join when needed), then
    /// returns a stream for one BAR exchange over it.
    pub async fn open(&self, host: &str, id: [u8; 32]) -> Result<BoxSiteStream, HsFailure> {
        let mut guard = self.acquire(id).await;
        if guard.is_none() {
            let s = self.connect(host, id).await.map_err(|e| {
                tracing::info!(host = %host, error = %e, "hidden service unreachable");
                failure(host, &e)
            })?;
            *guard = Some(s);
        }
        let (ours, theirs) = tokio::io::duplex(64 * 1024);
        let host = host.to_owned();
        let fetch_timeout = self.fetch_timeout;
        tokio::spawn(async move {
            if let Err(e) = pump(ours, guard, &host, fetch_timeout).await {
                tracing::debug!(host = %host, error = %e, "hidden-service exchange stream ended");
            }
        });
        Ok(Box::new(theirs))
    }
}

/// Reads the whole framed BAR request from `io`, fetches it through the session, writes the
/// response (or a BAR 502/504 explaining the failure).
async fn pump(
    mut io: tokio::io::DuplexStream,
    mut g: SlotGuard,
    host: &str,
    fetch_timeout: Duration,
) -> io::Result<()> {
    let mut req = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = io.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        if req.len() + n > MAX_MESSAGE {
            let t = bar_text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request larger than a hidden-service message (4 MiB)\n",
            );
            io.write_all(&t).await?;
            return io.shutdown().await;
        }
        req.extend_from_slice(buf.get(..n).unwrap_or_default());
    }
    let result = match g.as_mut() {
        Some(s) => s.fetch(&req, fetch_timeout).await,
        None => Err(MixError::UnknownSurb),
    };
    let out = match result {
        Ok(resp) => resp,
        Err(e) => {
            // The session may be broken (rendezvous gone, service restarted): reconnect next.
            *g = None;
            let f = failure(host, &e);
            tracing::info!(host = %host, error = %e, "hidden-service exchange failed");
            bar_text(f.status, &f.message)
        }
    };
    drop(g);
    io.write_all(&out).await?;
    io.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_map_to_502_and_504() {
        let f = failure("x.betanet", &MixError::DescriptorNotFound { asked: 3 });
        assert_eq!(f.status, StatusCode::BAD_GATEWAY);
        assert!(
            f.message
                .starts_with("Hidden service x.betanet could not be reached")
        );
        for e in [
            MixError::LookupTimeout {
                asked: 3,
                answered: 0,
            },
            MixError::StreamTimeout { have: 1, total: 2 },
        ] {
            assert_eq!(failure("x", &e).status, StatusCode::GATEWAY_TIMEOUT);
        }
        assert_eq!(
            failure("x", &MixError::NotEnoughNodes { need: 1, have: 0 }).status,
            StatusCode::BAD_GATEWAY
        );
        let b = bar_text(StatusCode::GATEWAY_TIMEOUT, "slow\n");
        let (head, used) = bar::stream::split_head(&b).unwrap().unwrap();
        assert_eq!(used, b.len());
        let r = bar::Response::decode(head).unwrap();
        assert_eq!(r.status, 504);
        assert_eq!(r.body, b"slow\n");
    }
}
