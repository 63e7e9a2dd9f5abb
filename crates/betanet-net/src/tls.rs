//! TLS 1.3 + HTTP/2 carriage (SPEC §4.1 PD-1, §4.4).
//!
//! * The client opens TLS (behind the [`ClientTls`] trait, so a browser-identical ClientHello
//!   stack can replace rustls later), then HTTP/2, and sends one full-duplex streaming `POST`
//!   to the configured path with browser-like headers and an access ticket in the
//!   `__Host-bn1` cookie (SPEC §4.2). The Noise handshake and then HTX frames flow in the
//!   request and response bodies.
//! * The Noise prologue binds the TLS exporter (`EXPORTER-betanet/1.2/inner`, empty context),
//!   so a TLS-terminating middlebox breaks the inner handshake.
//! * The server answers every request that is not a valid HTX request (wrong method, path or
//!   ticket) with its [`Decoy`]; later requests on the same HTTP/2 connection must carry a
//!   fresh `BN-Ticket` (SPEC §4.3) or get the decoy; a malformed `BN-Ticket` closes the session
//!   with `L2_TICKET_INVALID`.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::ct::ct_eq;
use betanet_crypto::handshake::TLS_EXPORTER_LABEL;
use betanet_crypto::sign::VerifyingKey;
use betanet_htx::ErrorCode;
use betanet_wire::ticket_header::{BnTicket, HEADER_NAME};
use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::calibrate::Policy;
use crate::conn::{Connection, Shared, established, spawn_driver};
use crate::endpoint::{ClientConfig, ServerConfig, now_unix};
use crate::error::NetError;
use crate::h2io::H2Io;
use crate::ticket::{TicketKeys, TicketPublic, from_cookie};

/// Default path of the HTX request.
pub const DEFAULT_PATH: &str = "/api/v2/events";
/// Chrome stable's user agent string the default client headers imitate.
pub const CHROME_UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like \
                             Gecko) Chrome/131.0.0.0 Safari/537.36";
pub(crate) const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests served to non-HTX clients on one connection before it is closed.
pub(crate) const MAX_DECOY_REQUESTS: usize = 100;

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_err(e: impl std::fmt::Display) -> NetError {
    NetError::Tls(e.to_string())
}

fn carriage_err(e: impl std::fmt::Display) -> NetError {
    NetError::Carriage(e.to_string())
}

/// A TLS session the carriage can run HTTP/2 over.
pub trait TlsSession: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The 32-byte exporter with label `EXPORTER-betanet/1.2/inner` and empty context.
    fn export_inner(&self) -> Result<[u8; 32], NetError>;
    /// The negotiated ALPN protocol.
    fn alpn(&self) -> Option<Vec<u8>>;
    /// The negotiated version, suite and group, for origin calibration
    /// ([`crate::calibrate`]); `None` if the stack cannot tell.
    fn params(&self) -> Option<TlsParams> {
        None
    }
}

/// What a TLS session negotiated (names as rustls prints them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `TLSv1_3`, ...
    pub version: Option<String>,
    /// `TLS13_AES_128_GCM_SHA256`, ...
    pub cipher_suite: Option<String>,
    /// `X25519MLKEM768`, `X25519`, ...
    pub group: Option<String>,
}

impl TlsSession for tokio_rustls::client::TlsStream<TcpStream> {
    fn export_inner(&self) -> Result<[u8; 32], NetError> {
        self.get_ref()
            .1
            .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, Some(&[]))
            .map_err(tls_err)
    }
    fn alpn(&self) -> Option<Vec<u8>> {
        self.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }
    fn params(&self) -> Option<TlsParams> {
        let c = self.get_ref().1;
        Some(TlsParams {
            version: c.protocol_version().map(|v| format!("{v:?}")),
            cipher_suite: c
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite())),
            group: c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name())),
        })
    }
}

/// A boxed future returned by [`ClientTls::connect`].
pub type ConnectFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Box<dyn TlsSession>, NetError>> + Send + 'a>>;

/// The client side of TLS, kept behind a trait so that a browser-identical ClientHello stack
/// can be plugged in (SPEC §4.1). It must offer ALPN `h2`.
pub trait ClientTls: Send + Sync {
    /// Runs the TLS handshake over `tcp` for `server_name`.
    fn connect<'a>(&'a self, tcp: TcpStream, server_name: &'a str) -> ConnectFuture<'a>;

    /// The ALPN protocols this stack offers, in order (recorded by origin calibration).
    fn alpn_offered(&self) -> Vec<Vec<u8>> {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    }

    /// The same TLS settings for QUIC (ALPN `h3`, no early data), if this stack supports
    /// the QUIC carriage ([`crate::Transport::Quic`]).
    fn quic_config(&self) -> Option<Arc<quinn::crypto::rustls::QuicClientConfig>> {
        None
    }
}

/// rustls with either a pinned server certificate or a root store.
#[derive(Clone)]
pub struct RustlsClient {
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for RustlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RustlsClient")
    }
}

#[derive(Debug)]
struct PinnedCert {
    sha256: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if betanet_crypto::hash::sha256(end_entity.as_ref()) == self.sha256 {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl RustlsClient {
    fn build(
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>,
        verifier: Option<Arc<dyn ServerCertVerifier>>,
        roots: Option<rustls::RootCertStore>,
    ) -> Self {
        let mut config = match (verifier, roots) {
            (Some(v), _) => builder
                .dangerous()
                .with_custom_certificate_verifier(v)
                .with_no_client_auth(),
            (None, Some(r)) => builder.with_root_certificates(r).with_no_client_auth(),
            (None, None) => builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        config.enable_early_data = false;
        RustlsClient {
            config: Arc::new(config),
        }
    }

    fn builder()
    -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>, NetError> {
        rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(tls_err)
    }

    /// Accepts exactly the server certificate `der` (e.g. generated by the server and printed
    /// by it): the signature of the TLS handshake is still verified against it.
    pub fn pinned(der: &[u8]) -> Result<Self, NetError> {
        Self::pinned_sha256(betanet_crypto::hash::sha256(der))
    }

    /// Accepts exactly the server certificate whose DER hashes (SHA-256) to `sha256`.
    pub fn pinned_sha256(sha256: [u8; 32]) -> Result<Self, NetError> {
        let algs = provider().signature_verification_algorithms;
        let v: Arc<dyn ServerCertVerifier> = Arc::new(PinnedCert { sha256, algs });
        Ok(Self::build(Self::builder()?, Some(v), None))
    }

    /// Verifies the server against `roots` (WebPKI).
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Self, NetError> {
        Ok(Self::build(Self::builder()?, None, Some(roots)))
    }
}

impl ClientTls for RustlsClient {
    fn connect<'a>(&'a self, tcp: TcpStream, server_name: &'a str) -> ConnectFuture<'a> {
        Box::pin(async move {
            let name = ServerName::try_from(server_name.to_owned()).map_err(|_| {
                NetError::Config(format!("invalid TLS server name {server_name:?}"))
            })?;
            let connector = tokio_rustls::TlsConnector::from(self.config.clone());
            let s = connector.connect(name, tcp).await.map_err(tls_err)?;
            Ok(Box::new(s) as Box<dyn TlsSession>)
        })
    }

    fn alpn_offered(&self) -> Vec<Vec<u8>> {
        self.config.alpn_protocols.clone()
    }

    fn quic_config(&self) -> Option<Arc<quinn::crypto::rustls::QuicClientConfig>> {
        let mut c = (*self.config).clone();
        c.alpn_protocols = vec![crate::quic::ALPN_H3.to_vec()];
        c.enable_early_data = false;
        quinn::crypto::rustls::QuicClientConfig::try_from(c)
            .ok()
            .map(Arc::new)
    }
}

/// Client settings of the TLS carriage.
#[derive(Clone)]
pub struct TlsClient {
    /// The TLS implementation.
    pub tls: Arc<dyn ClientTls>,
    /// SNI and `:authority` host.
    pub server_name: String,
    /// Path of the HTX request.
    pub path: String,
    /// The front's ticket key.
    pub ticket: TicketPublic,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// What a probe without a valid ticket gets (SPEC §4.1 active-probing resistance).
pub trait Decoy: Send + Sync {
    /// The response to a request (its body has been read and discarded).
    fn respond(&self, req: &http::request::Parts) -> Response<Bytes>;
}

/// A small static site: an HTML page at `/`, `robots.txt`, and a 404 page elsewhere, with
/// nginx-like headers.
#[derive(Debug, Clone, Default)]
pub struct StaticDecoy;

impl Decoy for StaticDecoy {
    fn respond(&self, req: &http::request::Parts) -> Response<Bytes> {
        let (status, ctype, body): (StatusCode, &str, &'static [u8]) = match (req.method.clone(), req.uri.path()) {
            (Method::GET | Method::HEAD, "/") => (
                StatusCode::OK,
                "text/html; charset=utf-8",
                b"<!doctype html><html><head><title>Welcome</title></head><body><h1>Welcome</h1><p>This site is under construction.</p></body></html>\n",
            ),
            (Method::GET | Method::HEAD, "/robots.txt") => {
                (StatusCode::OK, "text/plain", b"User-agent: *\nDisallow:\n")
            }
            (Method::GET | Method::HEAD, _) => (
                StatusCode::NOT_FOUND,
                "text/html; charset=utf-8",
                b"<html><head><title>404 Not Found</title></head><body><center><h1>404 Not Found</h1></center><hr><center>nginx</center></body></html>\n",
            ),
            _ => (
                StatusCode::METHOD_NOT_ALLOWED,
                "text/html; charset=utf-8",
                b"<html><head><title>405 Not Allowed</title></head><body><center><h1>405 Not Allowed</h1></center><hr><center>nginx</center></body></html>\n",
            ),
        };
        let mut r = Response::new(Bytes::from_static(body));
        *r.status_mut() = status;
        let h = r.headers_mut();
        h.insert(header::SERVER, http::HeaderValue::from_static("nginx"));
        if let Ok(v) = http::HeaderValue::from_str(ctype) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h.insert(header::CONTENT_LENGTH, http::HeaderValue::from(body.len()));
        r
    }
}

/// Server settings of the TLS carriage.
#[derive(Clone)]
pub struct TlsServer {
    config: Arc<rustls::ServerConfig>,
    /// The same certificate for QUIC (ALPN `h3`, no early data).
    quic: Arc<quinn::crypto::rustls::QuicServerConfig>,
    cert_der: Vec<u8>,
    /// Path of the HTX request.
    pub path: String,
    /// The ticket key.
    pub tickets: Arc<TicketKeys>,
    /// The decoy.
    pub decoy: Arc<dyn Decoy>,
}

impl std::fmt::Debug for TlsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl TlsServer {
    /// From a certificate chain (leaf first) and its private key, all DER.
    pub fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        tickets: Arc<TicketKeys>,
    ) -> Result<Self, NetError> {
        let cert_der = chain
            .first()
            .map(|c| c.as_ref().to_vec())
            .unwrap_or_default();
        let build = |alpn: Vec<Vec<u8>>| -> Result<rustls::ServerConfig, NetError> {
            let mut c = rustls::ServerConfig::builder_with_provider(provider())
                .with_protocol_versions(&[&rustls::version::TLS13])
                .map_err(tls_err)?
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(tls_err)?;
            c.alpn_protocols = alpn;
            c.max_early_data_size = 0;
            Ok(c)
        };
        let config = build(vec![b"h2".to_vec(), b"http/1.1".to_vec()])?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(build(vec![
            crate::quic::ALPN_H3.to_vec(),
        ])?)
        .map_err(tls_err)?;
        Ok(TlsServer {
            config: Arc::new(config),
            quic: Arc::new(quic),
            cert_der,
            path: DEFAULT_PATH.to_owned(),
            tickets,
            decoy: Arc::new(StaticDecoy),
        })
    }

    /// A fresh self-signed certificate for `hostname` (the client pins it); returns the
    /// server settings and the certificate and key as PEM (to persist).
    pub fn self_signed(
        hostname: &str,
        tickets: Arc<TicketKeys>,
    ) -> Result<(Self, String, String), NetError> {
        let ck = rcgen::generate_simple_self_signed(vec![hostname.to_owned()]).map_err(tls_err)?;
        let cert_pem = ck.cert.pem();
        let key_pem = ck.key_pair.serialize_pem();
        let chain = vec![ck.cert.der().clone()];
        let key = PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into());
        Ok((Self::new(chain, key, tickets)?, cert_pem, key_pem))
    }

    /// Loads the certificate chain and key from PEM files.
    pub fn from_pem_files(
        cert_path: &std::path::Path,
        key_path: &std::path::Path,
        tickets: Arc<TicketKeys>,
    ) -> Result<Self, NetError> {
        let file_err =
            |what: &'static str, path: &std::path::Path, e: rustls_pki_types::pem::Error| {
                NetError::File {
                    what,
                    path: path.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                }
            };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_path)
            .map_err(|e| file_err("cannot read certificate", cert_path, e))?
            .collect::<Result<_, _>>()
            .map_err(|e| file_err("invalid certificate PEM", cert_path, e))?;
        if chain.is_empty() {
            return Err(NetError::Config(format!(
                "no certificate in {}",
                cert_path.display()
            )));
        }
        let key = PrivateKeyDer::from_pem_file(key_path)
            .map_err(|e| file_err("cannot read private key", key_path, e))?;
        Self::new(chain, key, tickets)
    }

    /// The leaf certificate (DER), for clients that pin it.
    #[must_use]
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The QUIC server crypto (same certificate, ALPN `h3`).
    pub(crate) fn quic_crypto(&self) -> Arc<quinn::crypto::rustls::QuicServerConfig> {
        self.quic.clone()
    }

    /// SHA-256 of the leaf certificate (the pin clients use).
    #[must_use]
    pub fn cert_sha256(&self) -> [u8; 32] {
        betanet_crypto::hash::sha256(&self.cert_der)
    }
}

pub(crate) fn h2_client() -> h2::client::Builder {
    // Chrome's SETTINGS: HEADER_TABLE_SIZE 65536, ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 6 MiB,
    // MAX_HEADER_LIST_SIZE 256 KiB; connection window 15 MiB.
    let mut b = h2::client::Builder::new();
    b.header_table_size(65_536)
        .enable_push(false)
        .initial_window_size(6_291_456)
        .max_header_list_size(262_144)
        .initial_connection_window_size(15_728_640);
    b
}

fn h2_server() -> h2::server::Builder {
    let mut b = h2::server::Builder::new();
    b.max_concurrent_streams(128)
        .initial_window_size(6_291_456)
        .initial_connection_window_size(15_728_640)
        .max_header_list_size(262_144);
    b
}

/// The `:authority` of a front: its name, with the port unless it is 443.
pub(crate) fn authority(addr: &str, server_name: &str) -> String {
    match addr.rsplit_once(':').map(|(_, p)| p) {
        None | Some("443") => server_name.to_owned(),
        Some(port) => format!("{server_name}:{port}"),
    }
}

/// The request that opens an HTX session (SPEC PD-1): a streaming `POST` to the front's path
/// with Chrome's headers and a fresh access ticket in the `__Host-bn1` cookie. The same for
/// HTTP/2 and HTTP/3.
pub(crate) fn htx_request(authority: &str, tls: &TlsClient) -> Result<Request<()>, NetError> {
    let ticket = tls
        .ticket
        .make(now_unix(), &mut rand_core::OsRng)
        .ok_or_else(|| NetError::Config("the front's ticket key is invalid".into()))?;
    Request::builder()
        .method(Method::POST)
        .uri(format!("https://{authority}{}", tls.path))
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(
            "sec-ch-ua",
            "\"Google Chrome\";v=\"131\", \"Chromium\";v=\"131\", \"Not_A Brand\";v=\"24\"",
        )
        .header("sec-ch-ua-mobile", "?0")
        .header("sec-ch-ua-platform", "\"Linux\"")
        .header(header::USER_AGENT, CHROME_UA)
        .header(header::ACCEPT, "*/*")
        .header(header::ORIGIN, format!("https://{authority}"))
        .header("sec-fetch-site", "same-origin")
        .header("sec-fetch-mode", "cors")
        .header("sec-fetch-dest", "empty")
        .header(header::ACCEPT_ENCODING, "gzip, deflate, br, zstd")
        .header(header::ACCEPT_LANGUAGE, "en-US,en;q=0.9")
        .header(
            header::COOKIE,
            format!("{}={ticket}", crate::ticket::COOKIE_NAME),
        )
        .header("priority", "u=1, i")
        .body(())
        .map_err(carriage_err)
}

/// The head of the front's answer that opens an HTX session: 200, a binary stream, not
/// cacheable, the same `server` as the decoy.
pub(crate) fn htx_response_head() -> Response<()> {
    let mut head = Response::new(());
    let h = head.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static("no-store"),
    );
    h.insert(header::SERVER, http::HeaderValue::from_static("nginx"));
    head
}

pub(crate) async fn dial(
    tcp: TcpStream,
    addr: &str,
    remote: &VerifyingKey,
    cfg: &ClientConfig,
    tls: &TlsClient,
) -> Result<Connection, NetError> {
    // SPEC §4.1: the origin's template, fetched like a visitor before the HTX session (or
    // cached). A failure here is fatal only under REQUIRED.
    let policy = cfg.calibration.policy;
    let template = match policy {
        Policy::Off => None,
        _ => match crate::calibrate::template_for(addr, tls, &cfg.calibration, cfg.connect_timeout)
            .await
        {
            Ok(t) => Some(t),
            Err(e) if policy == Policy::Required => {
                return Err(NetError::Calibration(format!(
                    "cannot calibrate against the front ({e}) and the policy is REQUIRED"
                )));
            }
            Err(e) => {
                tracing::warn!(error = %e, "origin calibration failed; going on (policy DEV)");
                None
            }
        },
    };
    let sess = tokio::time::timeout(TLS_TIMEOUT, tls.tls.connect(tcp, &tls.server_name))
        .await
        .map_err(|_| NetError::Timeout {
            what: "TLS handshake",
            secs: TLS_TIMEOUT.as_secs(),
        })??;
    if sess.alpn().as_deref() != Some(b"h2") {
        return Err(NetError::Carriage(
            "the server did not negotiate HTTP/2 (ALPN h2)".into(),
        ));
    }
    let exporter = sess.export_inner()?;
    let base = crate::calibrate::tls_part(&tls.tls.alpn_offered(), sess.params(), sess.alpn());
    let (sess, seen) = crate::calibrate::SettingsTap::new(sess);
    // SPEC §4.1 cover: an HTTP/2 PRIORITY frame on a random 0.5–3 % of connections.
    let mut rng = rand_core::OsRng;
    let priority = crate::priority::decide(cfg.h2_priority_probability, &mut rng)
        .then(|| crate::priority::priority_frame(&mut rng).to_vec());
    let priority_sent = priority.is_some();
    let (mut send_req, h2conn) = h2_client()
        .handshake::<_, Bytes>(crate::priority::PriorityInject::new(sess, priority))
        .await
        .map_err(carriage_err)?;
    tokio::spawn(async move {
        let _ = h2conn.await;
    });
    let authority = authority(addr, &tls.server_name);
    let req = htx_request(&authority, tls)?;
    let (resp, send) = send_req.send_request(req, false).map_err(carriage_err)?;
    let side = H2Side {
        priority_sent,
        send: tokio::sync::Mutex::new(send_req),
        authority: authority.clone(),
        counter: std::sync::atomic::AtomicU64::new(0),
    };
    let resp = tokio::time::timeout(TLS_TIMEOUT, resp)
        .await
        .map_err(|_| NetError::Timeout {
            what: "HTTP/2 response",
            secs: TLS_TIMEOUT.as_secs(),
        })?
        .map_err(carriage_err)?;
    if resp.status() != StatusCode::OK {
        return Err(NetError::Carriage(format!(
            "the front answered {} like a plain web site: the access ticket was refused or it is \
             not a Betanet front",
            resp.status()
        )));
    }
    if let Some(t) = template {
        // The server's SETTINGS arrived before its response.
        let got = crate::calibrate::with_preface(base, &seen);
        let diffs = t.check(&got);
        if !diffs.is_empty() {
            let msg = format!(
                "the HTX connection does not look like the origin (template {}): {}",
                hex::encode(&t.id()[..8]),
                diffs.join("; ")
            );
            if policy == Policy::Required {
                return Err(NetError::Calibration(msg));
            }
            tracing::warn!("{msg} (policy DEV)");
        }
    }
    let io = H2Io::new(send, resp.into_body());
    let engine = cfg.engine(remote, exporter)?;
    let mut conn = established(spawn_driver(engine, io, "tls")).await?;
    conn.set_h2(side);
    Ok(conn)
}

/// The client's HTTP/2 connection kept for later requests of the session.
pub(crate) struct H2Side {
    /// Whether this connection was chosen for the PRIORITY cover frame.
    pub(crate) priority_sent: bool,
    send: tokio::sync::Mutex<h2::client::SendRequest<Bytes>>,
    authority: String,
    counter: std::sync::atomic::AtomicU64,
}

impl H2Side {
    pub(crate) fn next_ctx(&self) -> u64 {
        self.counter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1
    }

    pub(crate) async fn request(&self, path: &str, ticket: &str) -> Result<StatusCode, NetError> {
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("https://{}{path}", self.authority))
            .header(header::USER_AGENT, CHROME_UA)
            .header(header::ACCEPT, "*/*")
            .header(HEADER_NAME, ticket)
            .body(())
            .map_err(carriage_err)?;
        let resp = {
            let mut send = self.send.lock().await;
            let ready = send.clone().ready().await.map_err(carriage_err)?;
            *send = ready;
            let (resp, _) = send.send_request(req, true).map_err(carriage_err)?;
            resp
        };
        let resp = tokio::time::timeout(TLS_TIMEOUT, resp)
            .await
            .map_err(|_| NetError::Timeout {
                what: "HTTP/2 response",
                secs: TLS_TIMEOUT.as_secs(),
            })?
            .map_err(carriage_err)?;
        Ok(resp.status())
    }
}

fn ticket_of(parts: &http::request::Parts) -> Option<String> {
    for v in parts.headers.get_all(header::COOKIE) {
        if let Some(t) = v.to_str().ok().and_then(from_cookie) {
            return Some(t.to_owned());
        }
    }
    parts.uri.query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("bn1=").map(str::to_owned))
    })
}

/// Whether `parts` opens an HTX session: `POST` to the configured path with a valid, fresh
/// access ticket. The ticket check commits to the replay store (a durable redb write), so it
/// runs on the blocking pool, not on the runtime thread that serves other connections.
pub(crate) async fn is_htx_request(
    parts: &http::request::Parts,
    tls: &TlsServer,
    peer: SocketAddr,
) -> bool {
    if parts.method != Method::POST || parts.uri.path() != tls.path {
        return false;
    }
    let Some(ticket) = ticket_of(parts) else {
        return false;
    };
    let tickets = tls.tickets.clone();
    tokio::task::spawn_blocking(move || tickets.verify(&ticket, now_unix(), peer.ip()))
        .await
        .unwrap_or(false)
}

/// Reads (a bounded amount of) the request body, then sends the decoy's response.
fn serve_decoy(
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    decoy: Arc<dyn Decoy>,
) {
    tokio::spawn(async move {
        let (parts, mut body) = req.into_parts();
        let mut total = 0usize;
        while total < (1 << 20) {
            match tokio::time::timeout(Duration::from_secs(5), body.data()).await {
                Ok(Some(Ok(b))) => {
                    total += b.len();
                    let _ = body.flow_control().release_capacity(b.len());
                }
                _ => break,
            }
        }
        let resp = decoy.respond(&parts);
        let (head, content) = resp.into_parts();
        let empty = content.is_empty() || parts.method == Method::HEAD;
        if let Ok(mut send) = respond.send_response(Response::from_parts(head, ()), empty)
            && !empty
        {
            let _ = send.send_data(content, true);
        }
    });
}

pub(crate) async fn wait_finished(shared: &Arc<Shared>) {
    std::future::poll_fn(|cx| shared.poll_finished(cx)).await;
}

/// Serves the rest of an HTTP/2 connection whose HTX session runs on its first request.
async fn serve_rest(
    mut h2c: h2::server::Connection<tokio_rustls::server::TlsStream<TcpStream>, Bytes>,
    shared: Arc<Shared>,
    tls: TlsServer,
) {
    let mut seen_ctx: HashSet<String> = HashSet::new();
    loop {
        let next = tokio::select! {
            r = h2c.accept() => r,
            () = wait_finished(&shared) => {
                h2c.graceful_shutdown();
                let _ = tokio::time::timeout(Duration::from_secs(2), std::future::poll_fn(|cx| h2c.poll_closed(cx))).await;
                return;
            }
        };
        let Some(Ok((req, mut respond))) = next else {
            shared.transport_gone();
            return;
        };
        match bn_ticket_check(&shared, req.headers().get(HEADER_NAME), &mut seen_ctx) {
            BnTicketCheck::Absent | BnTicketCheck::Refused => {
                serve_decoy(req, respond, tls.decoy.clone());
            }
            BnTicketCheck::Malformed => {} // the session is closed
            BnTicketCheck::Accepted => {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::NO_CONTENT;
                let _ = respond.send_response(r, true);
            }
        }
    }
}

/// What a later request on a carriage's HTTP connection gets (SPEC §4.3).
pub(crate) enum BnTicketCheck {
    /// No `BN-Ticket` header: a request like any other (the decoy answers).
    Absent,
    /// Unparsable: the session was closed with `L2_TICKET_INVALID`.
    Malformed,
    /// Wrong token or a context seen before: the decoy answers.
    Refused,
    /// A fresh, valid token: 204.
    Accepted,
}

/// Checks a `BN-Ticket` header against the session's exporter-derived token; a context is
/// accepted once (at most 65 536 remembered per connection).
pub(crate) fn bn_ticket_check(
    shared: &Shared,
    header: Option<&http::HeaderValue>,
    seen_ctx: &mut HashSet<String>,
) -> BnTicketCheck {
    let Some(v) = header else {
        return BnTicketCheck::Absent;
    };
    match BnTicket::parse(v.as_bytes()) {
        Err(_) => {
            shared.close(ErrorCode::L2_TICKET_INVALID, "invalid BN-Ticket header");
            BnTicketCheck::Malformed
        }
        Ok(t) => {
            let ctx = t.ctx.clone().unwrap_or_default();
            let expected = shared.bn_ticket_token(&ctx);
            let fresh = seen_ctx.len() < 65_536 && seen_ctx.insert(ctx);
            if fresh && expected.is_some_and(|e| ct_eq(&e, &t.tok)) {
                BnTicketCheck::Accepted
            } else {
                BnTicketCheck::Refused
            }
        }
    }
}

pub(crate) async fn accept(
    tcp: TcpStream,
    peer: SocketAddr,
    cfg: &ServerConfig,
    tls: &TlsServer,
) -> Result<Option<Connection>, NetError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    let sess = tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(tcp))
        .await
        .map_err(|_| NetError::Timeout {
            what: "TLS handshake",
            secs: TLS_TIMEOUT.as_secs(),
        })?
        .map_err(tls_err)?;
    let exporter = sess
        .get_ref()
        .1
        .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, Some(&[]))
        .map_err(tls_err)?;
    let mut h2c = tokio::time::timeout(TLS_TIMEOUT, h2_server().handshake::<_, Bytes>(sess))
        .await
        .map_err(|_| NetError::Timeout {
            what: "HTTP/2 preface",
            secs: TLS_TIMEOUT.as_secs(),
        })?
        .map_err(carriage_err)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for _ in 0..MAX_DECOY_REQUESTS {
        let next = match tokio::time::timeout_at(deadline, h2c.accept()).await {
            Err(_) | Ok(None) => return Ok(None),
            Ok(Some(r)) => r.map_err(carriage_err)?,
        };
        let (req, mut respond) = next;
        let (parts, body) = req.into_parts();
        if !is_htx_request(&parts, tls, peer).await {
            serve_decoy(Request::from_parts(parts, body), respond, tls.decoy.clone());
            continue;
        }
        let head = htx_response_head();
        let send = respond.send_response(head, false).map_err(carriage_err)?;
        let engine = cfg.engine(exporter)?;
        let shared = spawn_driver(engine, H2Io::new(send, body), "tls");
        tokio::spawn(serve_rest(h2c, shared.clone(), tls.clone()));
        return established(shared).await.map(Some);
    }
    Ok(None)
}
