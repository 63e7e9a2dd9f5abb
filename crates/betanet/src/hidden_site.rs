//! A `betanet_app::App` served as a long-lived mixnet hidden service.
//!
//! Shared by `betanet serve --hidden-service` and `betanet demo --hidden-service`: a mix
//! client discovers the mixnet from seed nodes, the service (keyed by an Ed25519 identity, so
//! its `betanet://` id is stable across restarts) leaves reply blocks at N distinct
//! introduction points, publishes its signed descriptor to the hidden-service directories and
//! answers BAR requests (stream form) arriving over rendezvous points with the app. A
//! background task republishes the descriptor every [`REPUBLISH_INTERVAL`] (and whenever the
//! published one is within [`REPUBLISH_BEFORE_EXPIRY`] of its end), retrying failed
//! publications with exponential back-off, so the service never drops out of the directories.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use betanet_app::{App, PeerInfo};
use betanet_crypto::sign::SigningKey;
use betanet_mix::client::{ClientConfig, HiddenService, MixClient, PublishAck};
use betanet_mix::hsdir::{self, PublishStatus};
use betanet_mix::select::MixNodeInfo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

/// Largest BAR response the hidden service returns (the stream layer's limit).
pub const MAX_RESPONSE: usize = betanet_mix::hs_stream::MAX_MESSAGE;
/// Validity of a published descriptor: just under the directories' limit
/// ([`hsdir::MAX_HSDIR_VALIDITY`], 2 days), so clocks a few minutes apart still accept it.
pub const DESCRIPTOR_VALIDITY: Duration = Duration::from_secs(hsdir::MAX_HSDIR_VALIDITY - 10 * 60);
/// Regular republication period (also covers the directory-day change: every publication goes
/// to the directories of today and tomorrow).
pub const REPUBLISH_INTERVAL: Duration = Duration::from_secs(6 * 3600);
/// Republish at the latest this long before the published descriptor expires.
pub const REPUBLISH_BEFORE_EXPIRY: Duration = Duration::from_secs(12 * 3600);
/// First retry delay after a failed publication (doubles up to [`RETRY_MAX`]).
pub const RETRY_MIN: Duration = Duration::from_secs(5);
/// Longest retry delay after failed publications.
pub const RETRY_MAX: Duration = Duration::from_secs(10 * 60);
/// Reply blocks left at each introduction point by default: an intro point keeps at most 32
/// per service and drops the oldest first (`betanet-mix` `app::MAX_SURBS_PER_KEY`), so 32
/// fresh ones replace every stale block of a previous run under the same key.
pub const INTRO_SURBS: usize = 32;
/// How long one publication waits for the directories' acknowledgements.
const PUBLISH_WAIT: Duration = Duration::from_secs(10);

/// Options of a hidden site.
#[derive(Clone, Debug)]
pub struct HiddenSiteOptions {
    /// Distinct introduction points to register at.
    pub intro_points: usize,
    /// Reply blocks left at each introduction point. The default, [`INTRO_SURBS`], fills an
    /// intro point's queue for the service, which evicts reply blocks left there by a previous
    /// run of the same service (they lead to a reply address that is gone).
    pub intro_surbs: usize,
    /// Where the service's mix client receives replies (127.0.0.1:0 picks a port).
    pub reply_listen: SocketAddr,
    /// Requests answered concurrently.
    pub max_concurrent: usize,
}

impl Default for HiddenSiteOptions {
    fn default() -> Self {
        HiddenSiteOptions {
            intro_points: 2,
            intro_surbs: INTRO_SURBS,
            reply_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            max_concurrent: 16,
        }
    }
}

/// The outcome of one descriptor publication.
#[derive(Clone, Debug)]
pub struct Publication {
    /// Encoded descriptor size.
    pub descriptor_len: usize,
    /// Its validity end (unix seconds).
    pub valid_until: u64,
    /// One answer per directory node.
    pub acks: Vec<PublishAck>,
}

impl Publication {
    /// Directory nodes that stored the descriptor.
    pub fn stored(&self) -> usize {
        self.acks
            .iter()
            .filter(|a| a.status == Some(PublishStatus::Stored))
            .count()
    }
}

/// A running hidden site (tasks stop when dropped).
#[derive(Debug)]
pub struct HiddenSite {
    /// `betanet://<id>`.
    pub url: String,
    /// The introduction points listed in the descriptor.
    pub intros: Vec<MixNodeInfo>,
    /// The first publication (an error message if it failed; the republish task retries).
    pub first_publication: Result<Publication, String>,
    service: JoinHandle<()>,
    republish: JoinHandle<()>,
}

impl HiddenSite {
    /// The 64-hex-digit service id (`<id>` of `http://<id>.betanet/`).
    pub fn id(&self) -> &str {
        self.url.trim_start_matches("betanet://")
    }
}

impl Drop for HiddenSite {
    fn drop(&mut self) {
        self.service.abort();
        self.republish.abort();
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs one BAR exchange (`request` in stream form) against `app` in memory and returns the
/// response in stream form.
pub async fn answer(app: Arc<App>, request: Vec<u8>) -> Vec<u8> {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let server = tokio::spawn(betanet_app::serve_stream(app, theirs, PeerInfo::local()));
    let (mut rd, mut wr) = tokio::io::split(ours);
    let write = async {
        wr.write_all(&request).await?;
        wr.shutdown().await
    };
    let mut out = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 || out.len() + n > MAX_RESPONSE {
                return Ok::<_, std::io::Error>(());
            }
            out.extend_from_slice(buf.get(..n).unwrap_or_default());
        }
    };
    let (w, r) = tokio::join!(write, read);
    if let Err(e) = w.and(r) {
        tracing::debug!(error = %e, "hidden-service BAR exchange failed");
    }
    let _ = server.await;
    out
}

/// Up to `n` distinct nodes of `nodes`, picked at random.
fn pick_distinct(mut nodes: Vec<MixNodeInfo>, n: usize) -> Vec<MixNodeInfo> {
    let mut out: Vec<MixNodeInfo> = Vec::with_capacity(n);
    while out.len() < n && !nodes.is_empty() {
        let i = usize::try_from(rand_core::RngCore::next_u32(&mut rand_core::OsRng)).unwrap_or(0)
            % nodes.len();
        let node = nodes.swap_remove(i);
        if !out.iter().any(|o| o.id == node.id) {
            out.push(node);
        }
    }
    out
}

/// Signs a fresh descriptor listing `intros` and publishes it to the directories.
async fn publish(publisher: &HiddenService, intros: &[MixNodeInfo]) -> Result<Publication> {
    let now = now_unix();
    let valid_until = now + DESCRIPTOR_VALIDITY.as_secs();
    let descriptor = publisher.descriptor(intros, now.saturating_sub(60), valid_until);
    let acks = publisher
        .publish_descriptor(&descriptor, now, PUBLISH_WAIT)
        .await
        .context("publishing the descriptor")?;
    let p = Publication {
        descriptor_len: descriptor.len(),
        valid_until,
        acks,
    };
    if p.stored() == 0 {
        bail!(
            "no hidden-service directory stored the descriptor ({} asked)",
            p.acks.len()
        );
    }
    Ok(p)
}

/// Delay before the next publication after one that ended with `last`.
fn next_delay(last: &Result<Publication, String>, failures: u32) -> Duration {
    match last {
        Ok(p) => {
            let left = p.valid_until.saturating_sub(now_unix());
            let by_expiry = Duration::from_secs(left).saturating_sub(REPUBLISH_BEFORE_EXPIRY);
            REPUBLISH_INTERVAL.min(by_expiry).max(RETRY_MIN)
        }
        Err(_) => RETRY_MIN
            .saturating_mul(1u32 << failures.min(10))
            .min(RETRY_MAX),
    }
}

/// Republishes forever (see the module docs); `last` is the first publication's outcome.
async fn republish_loop(
    publisher: HiddenService,
    client: MixClient,
    seeds: Vec<SocketAddr>,
    intros: Vec<MixNodeInfo>,
    mut last: Result<Publication, String>,
) {
    let mut failures: u32 = u32::from(last.is_err());
    loop {
        tokio::time::sleep(next_delay(&last, failures.saturating_sub(1))).await;
        // Refresh the directory view: directories are picked among the known nodes.
        client.discover_nodes(&seeds).await;
        last = publish(&publisher, &intros)
            .await
            .map_err(|e| format!("{e:#}"));
        match &last {
            Ok(p) => {
                failures = 0;
                tracing::info!(
                    stored = p.stored(),
                    asked = p.acks.len(),
                    "hidden-service descriptor republished"
                );
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                tracing::warn!(error = %e, failures, "descriptor publication failed; retrying");
            }
        }
    }
}

/// Starts serving `app` as a hidden service keyed by `key`: discovers the mixnet from
/// `seeds`, registers at `opts.intro_points` distinct introduction points, publishes the
/// descriptor (a failed first publication is retried in the background) and serves until the
/// returned handle is dropped.
pub async fn start_hidden_site(
    app: Arc<App>,
    key: &SigningKey,
    seeds: &[SocketAddr],
    opts: &HiddenSiteOptions,
) -> Result<HiddenSite> {
    if seeds.is_empty() {
        bail!("a hidden service needs at least one mix seed (--mix-seed ADDR)");
    }
    let client = MixClient::start(ClientConfig {
        reply_listen: opts.reply_listen,
        ..ClientConfig::default()
    })
    .await
    .context("starting the service's mix client")?;
    let nodes = client.discover_nodes(seeds).await;
    if nodes.is_empty() {
        bail!("no mixnode answered at the seeds {seeds:?}");
    }
    let seed = key.seed();
    let mut hs = HiddenService::from_seed(client.clone(), &seed)?;
    // A second handle on the same key signs and publishes descriptors while `hs` serves.
    let publisher = HiddenService::from_seed(client.clone(), &seed)?;
    drop(seed);
    let url = hs.url();
    let intros = pick_distinct(nodes, opts.intro_points.max(1));
    for intro in &intros {
        hs.register_intro(intro, opts.intro_surbs.max(1))
            .await
            .with_context(|| format!("registering at introduction point {}", intro.addr.0))?;
    }
    let first = publish(&publisher, &intros)
        .await
        .map_err(|e| format!("{e:#}"));
    if let Err(e) = &first {
        tracing::warn!(error = %e, "first descriptor publication failed; retrying");
    }
    let service = tokio::spawn(hs.serve(
        move |req: Vec<u8>| answer(app.clone(), req),
        opts.max_concurrent,
    ));
    let republish = tokio::spawn(republish_loop(
        publisher,
        client,
        seeds.to_vec(),
        intros.clone(),
        first.clone(),
    ));
    Ok(HiddenSite {
        url,
        intros,
        first_publication: first,
        service,
        republish,
    })
}

/// `betanet serve --hidden-service`: serves `app` as a hidden service until Ctrl-C, printing
/// its address.
pub async fn run_hidden_site(
    app: Arc<App>,
    key: &SigningKey,
    seeds: &[SocketAddr],
    opts: &HiddenSiteOptions,
) -> Result<()> {
    let site = start_hidden_site(app.clone(), key, seeds, opts).await?;
    println!("hidden site  {}", site.url);
    println!("proxy URL    http://{}.betanet/", site.id());
    for i in &site.intros {
        println!("intro point  {}", i.addr.0);
    }
    match &site.first_publication {
        Ok(p) => println!(
            "descriptor   {} B, stored by {}/{} directories; republished every {} h",
            p.descriptor_len,
            p.stored(),
            p.acks.len(),
            REPUBLISH_INTERVAL.as_secs() / 3600
        ),
        Err(e) => println!("descriptor   not published yet ({e}); retrying in the background"),
    }
    println!("plugins      {}", app.plugins().join(", "));
    println!("ready        (no HTX listener; Ctrl-C to stop)");
    tokio::signal::ctrl_c()
        .await
        .context("cannot wait for Ctrl-C")?;
    println!("shutting down");
    drop(site);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republish_timing() {
        const { assert!(DESCRIPTOR_VALIDITY.as_secs() <= hsdir::MAX_HSDIR_VALIDITY) };
        let fresh = Ok(Publication {
            descriptor_len: 0,
            valid_until: now_unix() + DESCRIPTOR_VALIDITY.as_secs(),
            acks: Vec::new(),
        });
        assert_eq!(next_delay(&fresh, 0), REPUBLISH_INTERVAL);
        let old = Ok(Publication {
            descriptor_len: 0,
            valid_until: now_unix() + 13 * 3600,
            acks: Vec::new(),
        });
        let d = next_delay(&old, 0);
        assert!(d <= Duration::from_secs(3600) && d >= RETRY_MIN, "{d:?}");
        let failed = Err("x".to_owned());
        assert_eq!(next_delay(&failed, 0), RETRY_MIN);
        assert_eq!(next_delay(&failed, 1), RETRY_MIN * 2);
        assert_eq!(next_delay(&failed, 30), RETRY_MAX);
    }
}
