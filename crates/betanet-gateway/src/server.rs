//! The gateway: accept loop, admission, decoy relay, forwarding.
//!
//! **Per-connection admission (HTTP/1.x).** The gateway reads the first request head of a
//! connection (bounded by `limits.max_header_bytes` and `limits.header_timeout_ms`; for a small
//! `application/x-www-form-urlencoded` POST also its body) *before* any HTTP server sees it.
//! With a valid ticket the connection is admitted and handed to hyper, and every later request
//! on that connection is forwarded too ("ticket once per connection"). Otherwise — refused
//! ticket, no ticket, unparseable bytes, an oversized head, TLS on the plain port — the whole
//! connection is relayed to the decoy (see [`crate::decoy`]). A client must therefore put its
//! ticket on the **first** request of a connection.
//!
//! **HTTP/2 over TLS** (ALPN `h2`) is served by hyper with per-request admission until the
//! first admitted request; after that the connection stays admitted. Refused requests are
//! reverse-proxied to the decoy origin (hyper client, HTTP/1.1). Only cookie and query
//! carriers are looked at over HTTP/2. Cleartext HTTP/2 (prior-knowledge preface on a plain
//! port) is relayed to the decoy like any other unadmitted connection.
//!
//! Slow clients: a connection that has not sent a complete first head within the header
//! timeout is closed (like nginx's `client_header_timeout`); later heads on admitted
//! HTTP/1.1 connections use hyper's header timeout; request-body pauses longer than the body
//! timeout abort the exchange.

use std::convert::Infallible;
use std::io;
use std::mem::MaybeUninit;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use betanet_crypto::dh::X25519Secret;
use betanet_crypto::sign::VerifyingKey;
use betanet_ticket::ratelimit::{AdmissionLimits, PrefixLimiter, RateLimit};
use betanet_ticket::replay::{MemoryReplayStore, RedbReplayStore, ReplayDurability, ReplayStore};
use betanet_ticket::voucher::{
    MemorySpentSet, RedbSpentSet, SpentSet, VoucherConfig as TicketVoucherConfig, VoucherVerifier,
};
use betanet_ticket::{SiteTicketKey, TicketRequest, TicketVerifier, VerifierConfig};
use bytes::{Bytes, BytesMut};
use http::{HeaderName, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::barmap::{
    ExchangeLimits, GwBody, exchange, full, request_head_framed, strip_ticket_param,
};
use crate::config::{GatewayConfig, hex_array};
use crate::decoy::{Decoy, serve_static};
use crate::error::GatewayError;
use crate::metrics::Metrics;
use crate::prefixed::Prefixed;
use crate::upstream::{SiteConnector, TcpBarConnector, Upstream};

pub(crate) type Verifier = TicketVerifier<Box<dyn ReplayStore + Send>>;
type Vouchers = VoucherVerifier<Box<dyn SpentSet + Send>>;

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const MAX_HEADERS: usize = 128;

pub(crate) struct Shared {
    decoy: Decoy,
    pub(crate) upstream: Arc<Upstream>,
    /// Per-core mode: where refused plain connections go (the decoy thread).
    pub(crate) decoy_tx: Option<tokio::sync::mpsc::Sender<DecoyJob>>,
    /// Shared by every event loop of a per-core gateway (one replay set for all loops).
    verifier: Arc<Mutex<Option<Verifier>>>,
    /// Per-/24 and /56 token buckets, charged right after the first request head is parsed —
    /// before any allocation for admission, ticket cryptography, the verifier lock or redb —
    /// so refused floods cost a hash-map lookup and the decoy relay.
    limiter: Arc<Mutex<PrefixLimiter>>,
    vouchers: Arc<Mutex<Option<Vouchers>>>,
    metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    forward_path: bool,
    upstream_path: String,
    require_voucher: bool,
    voucher_header: HeaderName,
    header_timeout: Duration,
    blocking_admission: bool,
    max_header_bytes: usize,
    max_form: usize,
    exchange: ExchangeLimits,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running gateway.
pub struct Gateway {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    metrics: Arc<Metrics>,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    accept: tokio::task::JoinHandle<()>,
    background: JoinSet<()>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

fn build_tls(c: &crate::config::TlsConfig) -> Result<TlsAcceptor, GatewayError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&c.cert_pem)
        .map_err(|e| {
            GatewayError::config(
                "tls.cert_pem",
                format!("cannot read {}: {e}", c.cert_pem.display()),
                "point it at a PEM certificate chain",
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            GatewayError::config(
                "tls.cert_pem",
                format!("bad PEM: {e}"),
                "point it at a PEM certificate chain",
            )
        })?;
    let key = PrivateKeyDer::from_pem_file(&c.key_pem).map_err(|e| {
        GatewayError::config(
            "tls.key_pem",
            format!(
                "cannot read a private key from {}: {e}",
                c.key_pem.display()
            ),
            "point it at a PEM private key (PKCS#8, PKCS#1 or SEC1)",
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}

fn build_verifier(
    config: &GatewayConfig,
) -> Result<(Verifier, PrefixLimiter, Option<Vouchers>), GatewayError> {
    let t = &config.ticket;
    let secret = hex_array::<32>("ticket.secret_hex", &t.secret_hex, "64 hex chars")?;
    let key_id = hex_array::<8>("ticket.key_id_hex", &t.key_id_hex, "16 hex chars")?;
    let key = SiteTicketKey::from_secret(X25519Secret::from_bytes(secret), key_id)?;
    let limit = RateLimit::per_second(t.per_prefix_burst, t.per_prefix_per_sec);
    let limiter = PrefixLimiter::new(&AdmissionLimits {
        per_v4_24: limit,
        per_v6_56: limit,
        per_as: None,
        max_buckets: 65_536,
    })?;
    // The gateway charges its own `limiter` before calling the verifier, so the verifier's
    // built-in buckets are made unlimited (one token per request would otherwise be taken
    // twice).
    let unlimited = RateLimit::per_second(u32::MAX, u32::MAX);
    let vc = VerifierConfig {
        limits: AdmissionLimits {
            per_v4_24: unlimited,
            per_v6_56: unlimited,
            per_as: None,
            max_buckets: 1,
        },
        prune_interval_secs: 60,
    };
    let mut db = None;
    let store: Box<dyn ReplayStore + Send> = match &t.replay_db {
        Some(p) => {
            let mut s = RedbReplayStore::open(p)?;
            s.set_durability(match t.replay_durability {
                crate::config::ReplayFsync::Immediate => ReplayDurability::Immediate,
                crate::config::ReplayFsync::Batched => ReplayDurability::AtPrune,
            });
            db = Some(s.database().clone());
            Box::new(s)
        }
        None => Box::new(MemoryReplayStore::new(1 << 20)),
    };
    let verifier = TicketVerifier::new(vec![key], store, vc)?;
    let vouchers = if config.voucher.keysets.is_empty() {
        None
    } else {
        let spent: Box<dyn SpentSet + Send> = match (&config.voucher.spent_db, db) {
            (Some(p), _) => Box::new(RedbSpentSet::open(p)?),
            (None, Some(db)) => Box::new(RedbSpentSet::from_database(db)?),
            (None, None) => Box::new(MemorySpentSet::default()),
        };
        let mut v = VoucherVerifier::new(spent, TicketVoucherConfig::default())?;
        for k in &config.voucher.keysets {
            let id = hex_array::<32>("voucher.keysets.id_hex", &k.id_hex, "64 hex chars")?;
            let pk = hex_array::<32>(
                "voucher.keysets.group_pub_hex",
                &k.group_pub_hex,
                "64 hex chars",
            )?;
            let vk = VerifyingKey::from_bytes(&pk).map_err(|e| {
                GatewayError::config(
                    "voucher.keysets.group_pub_hex",
                    format!("not an Ed25519 key: {e}"),
                    "paste the mint group's public key",
                )
            })?;
            v.registry_mut().insert(id, vk);
        }
        Some(v)
    };
    Ok((verifier, limiter, vouchers))
}

/// What every event loop of a gateway shares: the ticket verifier with its replay store, the
/// per-prefix buckets, the voucher verifier, the metrics and the TLS acceptor. The decoy
/// client and the upstream (HTX pool) are per loop ([`Core::loop_state`]).
pub(crate) struct Core {
    pub(crate) verifier: Arc<Mutex<Option<Verifier>>>,
    limiter: Arc<Mutex<PrefixLimiter>>,
    vouchers: Arc<Mutex<Option<Vouchers>>>,
    pub(crate) metrics: Arc<Metrics>,
    tls: Option<TlsAcceptor>,
    voucher_header: HeaderName,
}

impl Core {
    pub(crate) fn new(config: &GatewayConfig) -> Result<Core, GatewayError> {
        config.validate()?;
        let tls = config.tls.as_ref().map(build_tls).transpose()?;
        let (verifier, limiter, vouchers) = build_verifier(config)?;
        let voucher_header =
            HeaderName::from_bytes(config.voucher_header.as_bytes()).map_err(|_| {
                GatewayError::config("voucher_header", "invalid header name", "x-betanet-voucher")
            })?;
        Ok(Core {
            verifier: Arc::new(Mutex::new(Some(verifier))),
            limiter: Arc::new(Mutex::new(limiter)),
            vouchers: Arc::new(Mutex::new(vouchers)),
            metrics: Arc::new(Metrics::new()),
            tls,
            voucher_header,
        })
    }

    /// One event loop's state: its own decoy client and upstream over `connector`, the
    /// shared parts by reference count.
    pub(crate) fn loop_state(
        &self,
        config: &GatewayConfig,
        connector: Arc<dyn SiteConnector>,
    ) -> Result<Shared, GatewayError> {
        let decoy = match (&config.decoy.origin, &config.decoy.static_dir) {
            (Some(a), _) => Decoy::origin(*a),
            (None, Some(d)) => Decoy::Static { dir: d.clone() },
            (None, None) => {
                return Err(GatewayError::config(
                    "decoy",
                    "no decoy configured",
                    "set decoy.origin or decoy.static_dir",
                ));
            }
        };
        let upstream = Arc::new(Upstream::new(
            connector,
            Duration::from_millis(config.site.connect_timeout_ms),
            self.metrics.clone(),
        ));
        Ok(Shared {
            decoy,
            upstream,
            decoy_tx: None,
            verifier: self.verifier.clone(),
            limiter: self.limiter.clone(),
            vouchers: self.vouchers.clone(),
            metrics: self.metrics.clone(),
            tls: self.tls.clone(),
            forward_path: config.forward_path,
            upstream_path: config.upstream_path.clone(),
            require_voucher: config.require_voucher,
            voucher_header: self.voucher_header.clone(),
            header_timeout: config.limits.header_timeout(),
            blocking_admission: config.ticket.replay_db.is_some(),
            max_header_bytes: config.limits.max_header_bytes,
            max_form: config.limits.max_form_body_bytes,
            exchange: ExchangeLimits {
                body_timeout: config.limits.body_timeout(),
                response_timeout: Duration::from_millis(config.site.response_timeout_ms),
            },
        })
    }
}

/// The replay store's periodic flush (batched durability), shared by every loop.
pub(crate) async fn flush_loop(verifier: Arc<Mutex<Option<Verifier>>>) {
    let mut t = tokio::time::interval(Duration::from_secs(1));
    loop {
        t.tick().await;
        // A redb commit (fsync) must not stall the event loop: it runs on the blocking pool.
        let v = verifier.clone();
        let r = tokio::task::spawn_blocking(move || match lock(&v).as_mut() {
            Some(v) => v.flush().is_ok(),
            None => true,
        })
        .await;
        if !matches!(r, Ok(true)) {
            tracing::warn!("replay store flush failed");
        }
    }
}

impl Gateway {
    /// Starts a gateway with the site connector given (the CLI uses
    /// [`TcpBarConnector`] to `site.addr`; the HTX connector plugs in here).
    pub async fn start(
        config: GatewayConfig,
        connector: Arc<dyn SiteConnector>,
    ) -> Result<Gateway, GatewayError> {
        let core = Core::new(&config)?;
        let metrics = core.metrics.clone();
        let shared = Arc::new(core.loop_state(&config, connector)?);
        let upstream = shared.upstream.clone();
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| GatewayError::io(format!("binding {}", config.listen), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| GatewayError::io("local_addr", e))?;
        let mut background = JoinSet::new();
        background.spawn(upstream.clone().health_loop(Duration::from_millis(
            config.site.health_interval_ms.max(50),
        )));
        background.spawn(flush_loop(shared.verifier.clone()));
        let mut metrics_addr = None;
        if let Some(addr) = config.metrics_listen {
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| GatewayError::io(format!("binding metrics {addr}"), e))?;
            metrics_addr = l.local_addr().ok();
            background.spawn(serve_metrics(l, metrics.clone()));
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let sem = Arc::new(Semaphore::new(config.limits.max_connections));
        let accept = tokio::spawn(accept_loop(listener, shared.clone(), sem, stop_rx, None));
        tracing::info!(%local_addr, "gateway listening");
        Ok(Gateway {
            local_addr,
            metrics_addr,
            metrics,
            shared,
            stop: Some(stop_tx),
            accept,
            background,
        })
    }

    /// The bound listen address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The bound metrics address, when `metrics_listen` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The metrics (render with [`Metrics::render`]).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Stops accepting, closes every connection, flushes and closes the replay store.
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.accept).await;
        self.background.shutdown().await;
        if let Some(mut v) = lock(&self.shared.verifier).take() {
            let _ = v.flush();
        }
        lock(&self.shared.vouchers).take();
    }
}

/// Runs the gateway from a config until Ctrl-C (the `betanet gateway --config FILE` command).
pub async fn run_gateway(config: GatewayConfig) -> Result<(), GatewayError> {
    let gw = Gateway::start(config.clone(), site_connector(&config)?).await?;
    let r = tokio::signal::ctrl_c().await;
    gw.shutdown().await;
    r.map_err(|e| GatewayError::io("waiting for Ctrl-C", e))
}

/// The connector `site` asks for: HTX when `site.public_key` is set, else BAR over TCP.
pub fn site_connector(config: &GatewayConfig) -> Result<Arc<dyn SiteConnector>, GatewayError> {
    let Some(pk) = &config.site.public_key else {
        return Ok(Arc::new(TcpBarConnector::new(config.site.addr)));
    };
    let remote = crate::config::hex_array::<32>("site.public_key", pk, "64 hex digits")?;
    let remote = betanet_crypto::sign::VerifyingKey::from_bytes(&remote).map_err(|_| {
        GatewayError::config(
            "site.public_key",
            "not an Ed25519 public key",
            "copy the `public key` line that `betanet serve` prints",
        )
    })?;
    let transport = if config.site.transport == "tcp11" {
        betanet_net::Transport::Tcp11
    } else {
        betanet_net::Transport::Tcp12
    };
    Ok(Arc::new(crate::htx::HtxConnector::new(
        config.site.addr.to_string(),
        remote,
        betanet_crypto::sign::SigningKey::generate(&mut rand_core::OsRng),
        transport,
        config.site.pool_size,
    )))
}

pub(crate) async fn serve_metrics(l: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |_req: Request<Incoming>| {
                let m = m.clone();
                async move {
                    let mut r = Response::new(full(m.render()));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        ),
                    );
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

pub(crate) async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    sem: Arc<Semaphore>,
    mut stop: oneshot::Receiver<()>,
    accepted: Option<&std::sync::atomic::AtomicU64>,
) {
    let mut conns = JoinSet::new();
    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = sem.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
            _ = &mut stop => break,
        };
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(_) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        if let Some(a) = accepted {
            a.fetch_add(1, Ordering::Relaxed);
        }
        let shared = shared.clone();
        conns.spawn(async move {
            shared.metrics.connections.inc();
            handle_conn(shared.clone(), tcp, peer, permit).await;
            shared.metrics.connections.dec();
        });
    }
    conns.shutdown().await;
}

/// Serves one accepted connection; `permit` (the `limits.max_connections` slot) is held until
/// the connection ends, also when its decoy relay moves to the decoy thread.
async fn handle_conn(
    shared: Arc<Shared>,
    tcp: TcpStream,
    peer: SocketAddr,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    match shared.tls.clone() {
        // Boxed: the TLS and HTTP/2 state machines would otherwise make every plain
        // connection's future (moved into its task at spawn) several KiB larger.
        Some(acceptor) => Box::pin(handle_tls(shared, acceptor, tcp, peer)).await,
        None => {
            let Some((prefix, tcp)) = handle_stream(&shared, tcp, peer).await else {
                return;
            };
            // Per-core mode: refused plain connections are relayed on the decoy thread, so
            // a flood's relay work never queues in front of admitted requests on this loop.
            if let (Some(tx), Decoy::Origin { .. }) = (&shared.decoy_tx, &shared.decoy) {
                let Ok(std) = tcp.into_std() else {
                    return;
                };
                match tx.try_send(DecoyJob {
                    prefix,
                    tcp: std,
                    permit,
                }) {
                    Ok(()) => return,
                    Err(e) => {
                        // Decoy thread saturated or gone: relay here.
                        let job = e.into_inner();
                        if let Ok(tcp) = TcpStream::from_std(job.tcp) {
                            decoy_conn(shared, job.prefix, tcp, peer).await;
                        }
                        return;
                    }
                }
            }
            decoy_conn(shared, prefix, tcp, peer).await;
        }
    }
}

/// A refused plain connection handed to the decoy thread (per-core mode).
pub(crate) struct DecoyJob {
    /// The bytes read from the client so far.
    pub(crate) prefix: Bytes,
    /// The client connection (non-blocking).
    pub(crate) tcp: std::net::TcpStream,
    /// Its connection-limit slot.
    pub(crate) permit: tokio::sync::OwnedSemaphorePermit,
}

/// The decoy thread's loop: relays every handed-off connection to the decoy origin.
pub(crate) async fn decoy_thread(
    addr: SocketAddr,
    mut rx: tokio::sync::mpsc::Receiver<DecoyJob>,
    metrics: Arc<Metrics>,
) {
    let mut relays = JoinSet::new();
    while let Some(job) = rx.recv().await {
        while relays.try_join_next().is_some() {}
        let metrics = metrics.clone();
        relays.spawn(async move {
            let _permit = job.permit;
            if let Ok(tcp) = TcpStream::from_std(job.tcp) {
                metrics.connections.inc();
                let _ = Decoy::relay(addr, &job.prefix, tcp).await;
                metrics.connections.dec();
            }
        });
    }
    relays.shutdown().await;
}

async fn handle_tls(shared: Arc<Shared>, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
    match tokio::time::timeout(shared.header_timeout, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => {
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
            if h2 {
                // HTTP/2 over TLS: per-request admission inside hyper.
                serve_http(shared, tls, peer, false).await;
            } else if let Some((prefix, tls)) = handle_stream(&shared, tls, peer).await {
                decoy_conn(shared, prefix, tls, peer).await;
            }
        }
        Ok(Err(_)) => {}
        Err(_) => {
            shared.metrics.slow_reaped.inc();
        }
    }
}

/// What the first bytes of a connection are (see [`classify_first_bytes`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstBytes {
    /// Not enough bytes to decide.
    NeedMore,
    /// A complete cleartext HTTP/2 preface (relayed to the decoy).
    H2Preface,
    /// Not an HTTP/1.x request head (relayed to the decoy).
    NotHttp,
    /// A complete HTTP/1.x head; `form_body` = the byte range of a form body read for
    /// admission.
    Http1 {
        /// Range of the form body in the buffer, if any.
        form_body: Option<(usize, usize)>,
    },
}

/// Classifies the first bytes of a connection like the gateway does before admission.
/// Never panics on any input (fuzzed).
pub fn classify_first_bytes(buf: &[u8], max_form: usize) -> FirstBytes {
    let mut hdrs = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    match parse_first(buf, max_form, &mut hdrs).0 {
        Class::NeedMore => FirstBytes::NeedMore,
        Class::H2 => FirstBytes::H2Preface,
        Class::Refuse => FirstBytes::NotHttp,
        Class::Http1 { body } => FirstBytes::Http1 { form_body: body },
    }
}

enum Class {
    NeedMore,
    H2,
    Refuse,
    Http1 { body: Option<(usize, usize)> },
}

struct FirstHead<'a> {
    cookies: Vec<&'a str>,
    query: Option<&'a str>,
    content_type: Option<&'a str>,
}

fn parse_first<'a>(
    buf: &'a [u8],
    max_form: usize,
    headers: &'a mut [MaybeUninit<httparse::Header<'a>>],
) -> (Class, Option<FirstHead<'a>>) {
    if buf.len() < H2_PREFACE.len() && H2_PREFACE.starts_with(buf) {
        return (Class::NeedMore, None);
    }
    if buf.starts_with(H2_PREFACE) {
        return (Class::H2, None);
    }
    // Uninitialised header slots: no 4 KiB memset per parse.
    let mut req = httparse::Request::new(&mut []);
    let n = match req.parse_with_uninit_headers(buf, headers) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return (Class::NeedMore, None),
        Err(_) => return (Class::Refuse, None),
    };
    let mut head = FirstHead {
        cookies: Vec::new(),
        query: None,
        content_type: None,
    };
    let mut content_length: Option<usize> = None;
    let mut chunked_or_expect = false;
    for h in req.headers.iter() {
        if h.name.eq_ignore_ascii_case("cookie") {
            if let Ok(v) = std::str::from_utf8(h.value) {
                head.cookies.push(v);
            }
        } else if h.name.eq_ignore_ascii_case("content-type") {
            head.content_type = std::str::from_utf8(h.value).ok();
        } else if h.name.eq_ignore_ascii_case("content-length") {
            content_length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            || h.name.eq_ignore_ascii_case("expect")
        {
            chunked_or_expect = true;
        }
    }
    head.query = req.path.and_then(|p| p.split_once('?')).map(|(_, q)| q);
    let is_form = head.content_type.is_some_and(|c| {
        c.split(';').next().is_some_and(|e| {
            e.trim()
                .eq_ignore_ascii_case(betanet_ticket::ticket::FORM_CONTENT_TYPE)
        })
    });
    let body = match (req.method, content_length) {
        (Some("POST"), Some(cl)) if is_form && cl <= max_form && !chunked_or_expect && cl > 0 => {
            if buf.len() < n + cl {
                return (Class::NeedMore, None);
            }
            Some((n, n + cl))
        }
        _ => None,
    };
    (Class::Http1 { body }, Some(head))
}

/// Reads the first head and admits or refuses the connection. Admitted connections are
/// served here; a refused one is returned (`bytes read so far`, stream) for the caller to
/// relay to the decoy.
async fn handle_stream<S>(shared: &Arc<Shared>, mut s: S, peer: SocketAddr) -> Option<(Bytes, S)>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let deadline = tokio::time::Instant::now() + shared.header_timeout;
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        // The header array (4 KiB) lives only inside this block, never across an `.await`,
        // so it is not part of the connection's future.
        let step = {
            let mut hdrs = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            let (class, head) = parse_first(&buf, shared.max_form, &mut hdrs);
            match class {
                Class::NeedMore => None,
                Class::H2 => {
                    // Cleartext HTTP/2 (prior knowledge) is not a Betanet carriage: relay it to
                    // the decoy so it answers exactly as the origin does.
                    shared.metrics.admission("h2c");
                    Some(None)
                }
                Class::Refuse => {
                    shared.metrics.admission("malformed_http");
                    Some(None)
                }
                Class::Http1 { body } => {
                    if rate_ok(shared, peer) {
                        let head = head.unwrap_or(FirstHead {
                            cookies: Vec::new(),
                            query: None,
                            content_type: None,
                        });
                        Some(Some(OwnedTicketRequest {
                            cookies: head.cookies.iter().map(|c| (*c).to_owned()).collect(),
                            query: head.query.map(str::to_owned),
                            content_type: head.content_type.map(str::to_owned),
                            body: body.and_then(|(a, b)| buf.get(a..b)).map(<[u8]>::to_vec),
                        }))
                    } else {
                        shared.metrics.request("decoy");
                        Some(None)
                    }
                }
            }
        };
        // `Some(None)`: refused before any ticket work → the decoy.
        let candidate = match step {
            Some(None) => return Some((buf.freeze(), s)),
            Some(Some(t)) => Some(t),
            None => None,
        };
        if let Some(treq) = candidate {
            if !admit_async(shared, treq, peer).await {
                shared.metrics.request("decoy");
                return Some((buf.freeze(), s));
            }
            let io = Prefixed::new(buf.freeze(), s);
            // Boxed: hyper's connection state is large, and keeping it out of the per-connection
            // future keeps spawning (and refusing) a connection cheap.
            Box::pin(serve_http1_admitted(shared.clone(), io, peer)).await;
            return None;
        }
        if buf.len() > shared.max_header_bytes + shared.max_form {
            shared.metrics.admission("oversize_head");
            return Some((buf.freeze(), s));
        }
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(4096);
        }
        match tokio::time::timeout_at(deadline, s.read_buf(&mut buf)).await {
            Ok(Ok(0)) => {
                if buf.is_empty() {
                    return None;
                }
                shared.metrics.admission("truncated");
                return Some((buf.freeze(), s));
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => {
                shared.metrics.slow_reaped.inc();
                return None;
            }
        }
    }
}

/// Charges the peer's /24 or /56 token bucket (SPEC §4.2: rate limiting comes before any
/// ticket work). `false` → the request is refused as `rate_limited` (the caller answers with
/// the decoy).
fn rate_ok(shared: &Shared, peer: SocketAddr) -> bool {
    if lock(&shared.limiter).try_take(peer.ip(), None, now_unix()) {
        return true;
    }
    shared.metrics.admission("rate_limited");
    false
}

/// The ticket-bearing parts of a request, owned (so admission can run on the blocking pool
/// when every admission is an fsynced redb commit).
struct OwnedTicketRequest {
    cookies: Vec<String>,
    query: Option<String>,
    content_type: Option<String>,
    body: Option<Vec<u8>>,
}

fn admit_owned(shared: &Shared, r: &OwnedTicketRequest, peer: SocketAddr) -> bool {
    let cookies: Vec<&str> = r.cookies.iter().map(String::as_str).collect();
    let treq = TicketRequest {
        cookies: &cookies,
        query: r.query.as_deref(),
        content_type: r.content_type.as_deref(),
        body: r.body.as_deref(),
    };
    admit(shared, &treq, peer)
}

async fn admit_async(shared: &Arc<Shared>, r: OwnedTicketRequest, peer: SocketAddr) -> bool {
    if shared.blocking_admission {
        let sh = shared.clone();
        tokio::task::spawn_blocking(move || admit_owned(&sh, &r, peer))
            .await
            .unwrap_or(false)
    } else {
        admit_owned(shared, &r, peer)
    }
}

fn admit(shared: &Shared, treq: &TicketRequest<'_>, peer: SocketAddr) -> bool {
    let outcome = match lock(&shared.verifier).as_mut() {
        Some(v) => v.admit(treq, now_unix(), peer.ip(), None),
        None => Err(betanet_ticket::Refusal::StoreUnavailable),
    };
    match outcome {
        Ok(_) => {
            shared.metrics.admission("admitted");
            true
        }
        Err(r) => {
            tracing::debug!(refusal = r.as_str(), "ticket refused");
            shared.metrics.admission(r.as_str());
            false
        }
    }
}

async fn decoy_conn<S>(shared: Arc<Shared>, prefix: Bytes, s: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match &shared.decoy {
        Decoy::Origin { addr, .. } => {
            let addr = *addr;
            drop(shared);
            let _ = Decoy::relay(addr, &prefix, s).await;
        }
        Decoy::Static { .. } => {
            Box::pin(serve_http(shared, Prefixed::new(prefix, s), peer, false)).await;
        }
    }
}

/// An admitted HTTP/1.x connection (its first head was parsed as HTTP/1 by the gateway):
/// hyper's HTTP/1 server directly — no protocol sniffing layer in the I/O path. Responses
/// go out as one `writev` (head + body), the socket has `TCP_NODELAY`, keep-alive is on.
async fn serve_http1_admitted<S>(shared: Arc<Shared>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let flag = Arc::new(AtomicBool::new(true));
    let header_timeout = shared.header_timeout;
    let max_buf = shared.max_header_bytes.max(8192);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let flag = flag.clone();
        async move { Ok::<_, Infallible>(handle_request(shared, req, peer, flag).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_buf)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn serve_http<S>(shared: Arc<Shared>, io: S, peer: SocketAddr, admitted: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let flag = Arc::new(AtomicBool::new(admitted));
    let header_timeout = shared.header_timeout;
    let max_buf = shared.max_header_bytes.max(8192);
    let max_hdr = u32::try_from(shared.max_header_bytes).unwrap_or(u32::MAX);
    let svc = service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let flag = flag.clone();
        async move { Ok::<_, Infallible>(handle_request(shared, req, peer, flag).await) }
    });
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(max_buf);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(max_hdr)
        .max_concurrent_streams(256)
        // Dead or silent h2 peers are dropped (PING every 30 s, 10 s to answer).
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    let _ = b.serve_connection(TokioIo::new(io), svc).await;
}

async fn handle_request(
    shared: Arc<Shared>,
    req: Request<Incoming>,
    peer: SocketAddr,
    flag: Arc<AtomicBool>,
) -> Response<GwBody> {
    if !flag.load(Ordering::Relaxed) {
        if !rate_ok(&shared, peer) {
            shared.metrics.request("decoy");
            return match &shared.decoy {
                Decoy::Static { dir } => serve_static(dir, &req).await,
                d => d.answer(req).await,
            };
        }
        let treq = OwnedTicketRequest {
            cookies: req
                .headers()
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .map(str::to_owned)
                .collect(),
            query: req.uri().query().map(str::to_owned),
            content_type: None,
            body: None,
        };
        if admit_async(&shared, treq, peer).await {
            flag.store(true, Ordering::Relaxed);
        } else {
            shared.metrics.request("decoy");
            return match &shared.decoy {
                Decoy::Static { dir } => serve_static(dir, &req).await,
                d => d.answer(req).await,
            };
        }
    }
    forward(&shared, req, peer).await
}

fn plain(status: StatusCode, text: &'static str) -> Response<GwBody> {
    let mut r = Response::new(full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn decode_voucher(v: &[u8]) -> Option<Vec<u8>> {
    let t = std::str::from_utf8(v).ok()?.trim();
    if t.len() % 2 == 0
        && t.bytes().all(|b| b.is_ascii_hexdigit())
        && let Ok(b) = hex::decode(t)
    {
        return Some(b);
    }
    data_encoding::BASE64URL_NOPAD.decode(t.as_bytes()).ok()
}

fn check_voucher(shared: &Shared, req: &Request<Incoming>, peer: SocketAddr) -> bool {
    let Some(bytes) = req
        .headers()
        .get(&shared.voucher_header)
        .and_then(|v| decode_voucher(v.as_bytes()))
    else {
        shared.metrics.admission("voucher_missing");
        return false;
    };
    let peer_key = peer.ip().to_string();
    let r = match lock(&shared.vouchers).as_mut() {
        Some(v) => v.redeem(&bytes, peer_key.as_bytes(), now_unix()),
        None => return false,
    };
    match r {
        Ok(_) => {
            shared.metrics.admission("voucher_ok");
            true
        }
        Err(e) => {
            tracing::debug!(refusal = ?e, "voucher refused");
            shared.metrics.admission("voucher_refused");
            false
        }
    }
}

async fn forward(shared: &Shared, req: Request<Incoming>, peer: SocketAddr) -> Response<GwBody> {
    if shared.require_voucher && !check_voucher(shared, &req, peer) {
        shared.metrics.request("voucher_refused");
        return plain(StatusCode::FORBIDDEN, "voucher required\n");
    }
    let (mut parts, body) = req.into_parts();
    parts.headers.remove(&shared.voucher_header);
    let is_form = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|c| c.split(';').next())
        .is_some_and(|e| {
            e.trim()
                .eq_ignore_ascii_case(betanet_ticket::ticket::FORM_CONTENT_TYPE)
        });
    let small = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= shared.max_form);
    let body: GwBody = if is_form && small {
        // Strip a body-carrier ticket before forwarding.
        let collected =
            match tokio::time::timeout(shared.exchange.body_timeout, body.collect()).await {
                Ok(Ok(c)) => c.to_bytes(),
                _ => return plain(StatusCode::REQUEST_TIMEOUT, "request body timeout\n"),
            };
        let stripped = std::str::from_utf8(&collected)
            .ok()
            .map(|s| strip_ticket_param(s).unwrap_or_default());
        let b = match stripped {
            Some(s) => Bytes::from(s),
            None => collected,
        };
        parts.headers.insert(
            http::header::CONTENT_LENGTH,
            http::HeaderValue::from(b.len()),
        );
        full(b)
    } else {
        body.map_err(io::Error::other).boxed()
    };
    let Some(head) = request_head_framed(
        &parts.method,
        &parts.uri,
        &parts.headers,
        shared.forward_path,
        &shared.upstream_path,
    ) else {
        shared.metrics.request("upstream_error");
        return plain(StatusCode::BAD_GATEWAY, "request head too large\n");
    };
    let started = Instant::now();
    let stream = match shared.upstream.open().await {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(error = %e, "site unreachable");
            shared.metrics.request("upstream_error");
            return plain(StatusCode::BAD_GATEWAY, "site unreachable\n");
        }
    };
    let bodyless = parts.method == http::Method::HEAD;
    match exchange(
        stream,
        head,
        body,
        shared.exchange,
        started,
        bodyless,
        &shared.metrics.upstream_latency,
    )
    .await
    {
        Ok(r) => {
            shared.metrics.request("forwarded");
            r
        }
        Err(e) => {
            tracing::debug!(error = ?e, "site exchange failed");
            shared.metrics.request("upstream_error");
            plain(StatusCode::BAD_GATEWAY, "site exchange failed\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn classification() {
        assert_eq!(classify_first_bytes(b"", 4096), FirstBytes::NeedMore);
        assert_eq!(
            classify_first_bytes(b"PRI * HT", 4096),
            FirstBytes::NeedMore
        );
        assert_eq!(
            classify_first_bytes(H2_PREFACE, 4096),
            FirstBytes::H2Preface
        );
        assert_eq!(
            classify_first_bytes(b"\x16\x03\x01\x00", 4096),
            FirstBytes::NotHttp
        );
        assert_eq!(
            classify_first_bytes(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 4096),
            FirstBytes::Http1 { form_body: None }
        );
        let form = b"POST / HTTP/1.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 5\r\n\r\nbn1=A";
        let head_len = form.len() - 5;
        assert_eq!(
            classify_first_bytes(form, 4096),
            FirstBytes::Http1 {
                form_body: Some((head_len, head_len + 5))
            }
        );
        assert_eq!(
            classify_first_bytes(&form[..form.len() - 1], 4096),
            FirstBytes::NeedMore
        );
        // Too large for the pre-admission read: classified without the body.
        assert_eq!(
            classify_first_bytes(form, 4),
            FirstBytes::Http1 { form_body: None }
        );
    }

    proptest! {
        #[test]
        fn classify_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = classify_first_bytes(&data, 4096);
        }
    }
}
#[cfg(test)]
/// The per-connection future is moved into its task at spawn and holds every refused
/// connection's state: it must stay small (it was 15 KiB with hyper's and the TLS state
/// inline and a header array held across an await).
mod size_probe {
    #[test]
    fn future_sizes() {
        fn sz<F>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let a = l.local_addr().unwrap();
            let c = tokio::net::TcpStream::connect(a).await.unwrap();
            let cfg = crate::GatewayConfig::from_toml(&format!("listen = \"127.0.0.1:0\"\n[decoy]\norigin = \"{a}\"\n[site]\naddr = \"{a}\"\n[ticket]\nsecret_hex = \"{}\"\nkey_id_hex = \"{}\"\n", "11".repeat(32), "22".repeat(8))).unwrap();
            let core = super::Core::new(&cfg).unwrap();
            let sh = std::sync::Arc::new(core.loop_state(&cfg, std::sync::Arc::new(crate::TcpBarConnector::new(a))).unwrap());
            let permit = std::sync::Arc::new(tokio::sync::Semaphore::new(1))
                .acquire_owned()
                .await
                .unwrap();
            let f = super::handle_conn(sh.clone(), c, a, permit);
            assert!(sz(&f) <= 2048, "handle_conn future: {} bytes", sz(&f));
            let c2 = tokio::net::TcpStream::connect(a).await.unwrap();
            let f2 = crate::decoy::Decoy::relay(a, b"", c2);
            assert!(sz(&f2) <= 1024, "relay future: {} bytes", sz(&f2));
        });
    }
}
