//! Cover connections around the TCP retry after a failed QUIC attempt (SPEC §4.8).
//!
//! When `auto` falls back from QUIC to TLS over TCP, an observer sees a client give up on UDP
//! and immediately open one TCP connection to the same front: a recognisable pattern. So the
//! retry is surrounded by connections to unrelated origins (`BETANET_COVER_DECOYS` or
//! [`crate::ClientConfig::cover_origins`]): each opens at a random moment within 1 s of the
//! retry and performs a TLS handshake, the HTX dial itself waits another 100–700 ms, and the
//! covers are torn down after 3–15 s. At most two fallbacks a minute get covers (process-wide),
//! so a client that keeps failing does not spray connections.
//!
//! A cover connection carries no application data: it completes a TLS 1.3 handshake with SNI
//! set to the origin's host name (like a browser opening a tab) and closes. Its certificate
//! is not checked — nothing is sent over it, and it only has to look like a real connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand_core::RngCore;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Fallbacks that may get covers per [`COVER_WINDOW`].
pub const COVER_RETRIES_PER_WINDOW: usize = 2;
/// The window of [`COVER_RETRIES_PER_WINDOW`].
pub const COVER_WINDOW: Duration = Duration::from_secs(60);
/// Covers open at a random moment in `[0, COVER_OPEN_SPREAD]` after the retry.
pub const COVER_OPEN_SPREAD: Duration = Duration::from_millis(1000);
/// The HTX dial waits a random `[100, 700]` ms more when covers are used.
pub const HTX_EXTRA_DELAY: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_millis(700));
/// Covers are torn down after a random `[3, 15]` s.
pub const COVER_LIFETIME: (Duration, Duration) = (Duration::from_secs(3), Duration::from_secs(15));
/// At most this many origins are used per fallback.
pub const MAX_COVERS: usize = 4;

fn uniform<R: RngCore>(rng: &mut R, lo: Duration, hi: Duration) -> Duration {
    let span = hi.saturating_sub(lo).as_millis() as u64;
    lo + Duration::from_millis(rng.next_u64() % (span + 1))
}

/// The process-wide budget of fallbacks with covers (sans-IO: the caller passes `now`).
#[derive(Debug, Default)]
pub struct CoverBudget {
    used: VecDeque<Instant>,
}

impl CoverBudget {
    /// Takes one use if fewer than [`COVER_RETRIES_PER_WINDOW`] were taken in the last
    /// [`COVER_WINDOW`] before `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        while self
            .used
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= COVER_WINDOW)
        {
            self.used.pop_front();
        }
        if self.used.len() >= COVER_RETRIES_PER_WINDOW {
            return false;
        }
        self.used.push_back(now);
        true
    }
}

/// When each cover opens and closes, and how much longer the HTX dial waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoverPlan {
    /// `(origin, open after, close after opening)` for each cover.
    pub covers: Vec<(String, Duration, Duration)>,
    /// The extra wait of the HTX dial (after the retry moment).
    pub htx_delay: Duration,
}

impl CoverPlan {
    /// A plan for `origins` (at most [`MAX_COVERS`]); `fast` (`BETANET_DEV_FAST=1`) removes the
    /// artificial delays but keeps the covers' lifetimes.
    pub fn new<R: RngCore>(origins: &[String], fast: bool, rng: &mut R) -> CoverPlan {
        let covers = origins
            .iter()
            .take(MAX_COVERS)
            .map(|o| {
                let open = if fast {
                    Duration::ZERO
                } else {
                    uniform(rng, Duration::ZERO, COVER_OPEN_SPREAD)
                };
                let life = uniform(rng, COVER_LIFETIME.0, COVER_LIFETIME.1);
                (o.clone(), open, life)
            })
            .collect();
        let htx_delay = if fast {
            Duration::ZERO
        } else {
            uniform(rng, HTX_EXTRA_DELAY.0, HTX_EXTRA_DELAY.1)
        };
        CoverPlan { covers, htx_delay }
    }
}

fn budget() -> &'static Mutex<CoverBudget> {
    static B: std::sync::OnceLock<Mutex<CoverBudget>> = std::sync::OnceLock::new();
    B.get_or_init(|| Mutex::new(CoverBudget::default()))
}

/// Origins from `BETANET_COVER_DECOYS` (`host:port,host:port,...`).
#[must_use]
pub fn origins_from_env() -> Vec<String> {
    std::env::var("BETANET_COVER_DECOYS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Starts the covers for one fallback (if the budget allows and there are origins) and
/// returns how much longer the HTX dial should wait.
pub(crate) fn start(origins: &[String], fast: bool) -> Duration {
    if origins.is_empty() {
        return Duration::ZERO;
    }
    let allowed = budget()
        .lock()
        .map(|mut b| b.take(Instant::now()))
        .unwrap_or(false);
    if !allowed {
        tracing::debug!("cover budget used up: falling back without cover connections");
        return Duration::ZERO;
    }
    let plan = CoverPlan::new(origins, fast, &mut rand_core::OsRng);
    for (origin, open, life) in plan.covers {
        tokio::spawn(async move {
            tokio::time::sleep(open).await;
            let _ = tokio::time::timeout(life, cover(&origin, life)).await;
        });
    }
    plan.htx_delay
}

/// One cover: TCP, a TLS handshake with the origin's name, idle until torn down.
async fn cover(origin: &str, life: Duration) {
    let Ok(Ok(tcp)) = tokio::time::timeout(
        Duration::from_secs(3),
        tokio::net::TcpStream::connect(origin),
    )
    .await
    else {
        return;
    };
    let host = origin
        .rsplit_once(':')
        .map_or(origin, |(h, _)| h)
        .trim_matches(|c| c == '[' || c == ']');
    let Ok(name) = ServerName::try_from(host.to_owned()) else {
        return;
    };
    let Ok(builder) = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions() else {
        return;
    };
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    if let Ok(Ok(tls)) =
        tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp)).await
    {
        tokio::time::sleep(life).await;
        drop(tls);
    }
}

/// Accepts any certificate: covers carry no data (see the module docs).
#[derive(Debug)]
struct AnyCert;

impl ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn at_most_two_fallbacks_a_minute_get_covers() {
        let mut b = CoverBudget::default();
        let t0 = Instant::now();
        assert!(b.take(t0));
        assert!(b.take(t0 + Duration::from_secs(10)));
        assert!(!b.take(t0 + Duration::from_secs(59)));
        // The first use leaves the window after 60 s.
        assert!(b.take(t0 + Duration::from_secs(60)));
        assert!(!b.take(t0 + Duration::from_secs(61)));
        assert!(b.take(t0 + Duration::from_secs(71)));
    }

    #[test]
    fn plans_stay_in_the_spec_ranges() {
        let origins: Vec<String> = (0..6).map(|i| format!("origin{i}.example:443")).collect();
        let mut rng = rand_chacha_like(7);
        for _ in 0..500 {
            let p = CoverPlan::new(&origins, false, &mut rng);
            assert_eq!(p.covers.len(), MAX_COVERS);
            assert!(p.htx_delay >= HTX_EXTRA_DELAY.0 && p.htx_delay <= HTX_EXTRA_DELAY.1);
            for (_, open, life) in &p.covers {
                assert!(*open <= COVER_OPEN_SPREAD);
                assert!(*life >= COVER_LIFETIME.0 && *life <= COVER_LIFETIME.1);
            }
        }
        let fast = CoverPlan::new(&origins[..2], true, &mut rng);
        assert_eq!(fast.htx_delay, Duration::ZERO);
        assert!(fast.covers.iter().all(|(_, open, _)| open.is_zero()));
        assert!(
            fast.covers
                .iter()
                .all(|(_, _, life)| *life >= COVER_LIFETIME.0)
        );
    }

    /// A seeded RNG from what the crate already has.
    fn rand_chacha_like(seed: u8) -> impl RngCore {
        rand::rngs::StdRng::from_seed([seed; 32])
    }
}
