//! The `betanet echo-server` and `betanet stream` commands as library functions (the binary
//! parses flags and prints; everything else is here).
//!
//! The data directory holds `node.key` (the Ed25519 seed, hex, mode 0600), and for the TLS
//! carriage `tls-cert.pem` / `tls-key.pem` (generated once, self-signed, pinned by clients
//! through the printed SHA-256) and `ticket.key` (the access-ticket X25519 secret and key id).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_crypto::hash::Sha256;
use betanet_crypto::identity::PeerId;
use betanet_crypto::sign::{SigningKey, VerifyingKey};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::NetError;
use crate::ticket::{TicketKeys, TicketPublic};
use crate::tls::{RustlsClient, TlsClient, TlsServer};
use crate::{
    ClientConfig, Connection, ConnectionStats, ServerConfig, Stream, Transport, dial, listen,
};

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetError {
    let path = path.display().to_string();
    move |source| NetError::File { what, path, source }
}

fn write_secret(path: &Path, contents: &str) -> Result<(), NetError> {
    std::fs::write(path, contents).map_err(file_err("cannot write", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(file_err("cannot set permissions on", path))?;
    }
    Ok(())
}

fn read_hex<const N: usize>(path: &Path, what: &'static str) -> Result<Option<[u8; N]>, NetError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            let bytes = hex::decode(s.trim())
                .ok()
                .and_then(|b| <[u8; N]>::try_from(b).ok());
            bytes.map(Some).ok_or_else(|| {
                NetError::Config(format!(
                    "{} does not hold a {N}-byte hex {what}; delete it to generate a new one",
                    path.display()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err("cannot read", path)(e)),
    }
}

/// Loads the node key from `data_dir/node.key` (the `betanet keygen` format of
/// [`betanet_crypto::keyfile`]), creating it (mode 0600) on first use.
pub fn load_or_create_identity(data_dir: &Path) -> Result<SigningKey, NetError> {
    std::fs::create_dir_all(data_dir)
        .map_err(file_err("cannot create data directory", data_dir))?;
    let path = data_dir.join("node.key");
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let text = zeroize::Zeroizing::new(text);
            betanet_crypto::keyfile::decode(&text)
                .map_err(|e| NetError::Config(format!("{} {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = SigningKey::generate(&mut rand_core::OsRng);
            write_secret(&path, &betanet_crypto::keyfile::encode(&key))?;
            Ok(key)
        }
        Err(e) => Err(file_err("cannot read", &path)(e)),
    }
}

/// Loads or creates `ticket.key` (X25519 secret ‖ key id, hex); the replay set of admitted
/// tickets lives in `ticket-replay.redb` next to it and survives restarts.
pub fn load_or_create_ticket_keys(data_dir: &Path) -> Result<TicketKeys, NetError> {
    std::fs::create_dir_all(data_dir)
        .map_err(file_err("cannot create data directory", data_dir))?;
    let path = data_dir.join("ticket.key");
    let replay = data_dir.join("ticket-replay.redb");
    let bad = || NetError::Config("the ticket key is invalid; delete ticket.key".into());
    if let Some(b) = read_hex::<40>(&path, "ticket key")? {
        let (s, k) = b.split_at(32);
        let s = <[u8; 32]>::try_from(s).map_err(|_| bad())?;
        let k = <[u8; 8]>::try_from(k).map_err(|_| bad())?;
        return TicketKeys::with_replay_db(s, k, &replay);
    }
    let mut secret = [0u8; 32];
    let mut key_id = [0u8; 8];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key_id);
    let keys = TicketKeys::with_replay_db(secret, key_id, &replay)?;
    write_secret(
        &path,
        &hex::encode([secret.as_slice(), key_id.as_slice()].concat()),
    )?;
    Ok(keys)
}

/// Loads `tls-cert.pem`/`tls-key.pem` or generates a self-signed pair for `hostname`.
pub fn load_or_create_tls(
    data_dir: &Path,
    hostname: &str,
    tickets: Arc<TicketKeys>,
) -> Result<TlsServer, NetError> {
    let cert = data_dir.join("tls-cert.pem");
    let key = data_dir.join("tls-key.pem");
    if cert.exists() && key.exists() {
        return TlsServer::from_pem_files(&cert, &key, tickets);
    }
    let (server, cert_pem, key_pem) = TlsServer::self_signed(hostname, tickets)?;
    std::fs::write(&cert, cert_pem).map_err(file_err("cannot write", &cert))?;
    write_secret(&key, &key_pem)?;
    Ok(server)
}

/// Settings of `betanet echo-server`.
#[derive(Debug, Clone)]
pub struct EchoServerOptions {
    /// `host:port` to listen on.
    pub listen: String,
    /// The carriage.
    pub transport: Transport,
    /// The data directory (keys).
    pub data_dir: PathBuf,
    /// TLS host name for a generated certificate.
    pub tls_hostname: String,
    /// Use this identity instead of `data_dir/node.key`.
    pub identity: Option<SigningKey>,
}

/// What `echo-server` prints once it listens.
#[derive(Debug, Clone)]
pub struct EchoServerInfo {
    /// The bound address.
    pub addr: std::net::SocketAddr,
    /// The node's PeerID.
    pub peer_id: PeerId,
    /// The node's Ed25519 public key.
    pub public_key: VerifyingKey,
    /// TLS only: SHA-256 of the certificate (the client's `--cert-pin`).
    pub cert_sha256: Option<[u8; 32]>,
    /// TLS only: the access-ticket public key and id (the client's `--ticket`).
    pub ticket: Option<TicketPublic>,
    /// The carriage it listens with.
    pub transport: Transport,
}

impl std::fmt::Display for EchoServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "listening  {}", self.addr)?;
        let carriage = match self.transport {
            Transport::Tcp12 => "tcp12 (HTX straight on TCP)",
            Transport::Tcp11 => "tcp11 (legacy HTX 1.1 framing on TCP)",
            Transport::Tls => "tls (TLS 1.3 + HTTP/2 on TCP)",
            Transport::Quic => "quic (QUIC v1 + HTTP/3 on UDP)",
            Transport::QuicThenTls => {
                "auto (TLS 1.3 + HTTP/2 on TCP and QUIC v1 + HTTP/3 on UDP, same port)"
            }
        };
        writeln!(f, "carriage   {carriage}")?;
        writeln!(f, "peer id    {}", self.peer_id)?;
        write!(f, "public key {}", hex::encode(self.public_key.to_bytes()))?;
        if let Some(pin) = self.cert_sha256 {
            write!(f, "\ncert pin   {}", hex::encode(pin))?;
        }
        if let Some(t) = self.ticket {
            write!(
                f,
                "\nticket     {}{}",
                hex::encode(t.public),
                hex::encode(t.key_id)
            )?;
        }
        Ok(())
    }
}

/// Echoes one stream until the peer's FIN.
async fn echo(mut s: Stream) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        s.write_all(buf.get(..n).unwrap_or_default()).await?;
        total += n as u64;
    }
    s.shutdown().await?;
    Ok(total)
}

async fn serve_connection(conn: Connection) {
    let peer = PeerId::from_ed25519(conn.peer_identity());
    tracing::info!(%peer, "connection");
    while let Ok(s) = conn.accept_stream().await {
        tokio::spawn(async move {
            if let Err(e) = echo(s).await {
                tracing::debug!(error = %e, "echo stream ended with an error");
            }
        });
    }
}

/// Runs `betanet echo-server`: calls `ready` once listening, then serves forever.
pub async fn echo_server(
    opts: EchoServerOptions,
    ready: impl FnOnce(&EchoServerInfo),
) -> Result<(), NetError> {
    let identity = match opts.identity.clone() {
        Some(k) => k,
        None => load_or_create_identity(&opts.data_dir)?,
    };
    let public_key = identity.verifying_key();
    let mut cfg = ServerConfig::new(identity);
    cfg.transport = opts.transport;
    let mut info = EchoServerInfo {
        addr: "0.0.0.0:0"
            .parse()
            .map_err(|_| NetError::Config("address".into()))?,
        peer_id: PeerId::from_ed25519(&public_key),
        public_key,
        cert_sha256: None,
        ticket: None,
        transport: opts.transport,
    };
    if opts.transport.uses_tls() {
        let tickets = Arc::new(load_or_create_ticket_keys(&opts.data_dir)?);
        info.ticket = Some(tickets.public());
        let tls = load_or_create_tls(&opts.data_dir, &opts.tls_hostname, tickets)?;
        info.cert_sha256 = Some(tls.cert_sha256());
        cfg.tls = Some(tls);
    }
    let mut listener = listen(&opts.listen, cfg).await?;
    info.addr = listener.local_addr();
    ready(&info);
    loop {
        let conn = listener.accept().await?;
        tokio::spawn(serve_connection(conn));
    }
}

/// Settings of `betanet stream`.
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// Server host.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// The server's Ed25519 public key (64 hex chars).
    pub server_pub_hex: String,
    /// The carriage.
    pub transport: Transport,
    /// TLS: SHA-256 pin of the server certificate (hex).
    pub cert_pin_hex: Option<String>,
    /// TLS: `ticketPub ‖ ticketKeyID` (80 hex chars).
    pub ticket_hex: Option<String>,
    /// TLS: SNI / host name (defaults to `host`).
    pub server_name: Option<String>,
    /// Overall time limit.
    pub timeout: Duration,
}

/// What `stream` measured.
#[derive(Debug, Clone)]
pub struct StreamReport {
    /// The server's PeerID.
    pub peer_id: PeerId,
    /// Bytes sent.
    pub sent: u64,
    /// Bytes echoed back.
    pub received: u64,
    /// SHA-256 of what was sent.
    pub sent_sha256: [u8; 32],
    /// SHA-256 of what came back.
    pub received_sha256: [u8; 32],
    /// Wall time from dial to the echo's end.
    pub elapsed: Duration,
    /// Handshake time.
    pub handshake: Duration,
    /// Whether the ML-KEM hybrid was used.
    pub post_quantum: bool,
    /// Key updates sent.
    pub rekeys: u64,
    /// The connection's counters at the end (bytes, frames, rekeys, RTT): print with
    /// [`StreamReport::stats_line`].
    pub stats: ConnectionStats,
}

impl StreamReport {
    /// Whether the echo is byte-identical.
    #[must_use]
    pub fn echo_ok(&self) -> bool {
        self.sent == self.received && self.sent_sha256 == self.received_sha256
    }

    /// The connection statistics as one human line (what `betanet stream --stats` prints):
    /// see [`ConnectionStats::summary`].
    #[must_use]
    pub fn stats_line(&self) -> String {
        self.stats.summary()
    }
}

fn parse_hex<const N: usize>(s: &str, what: &str) -> Result<[u8; N], NetError> {
    hex::decode(s.trim())
        .ok()
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .ok_or_else(|| NetError::Config(format!("{what} must be {} hex characters", 2 * N)))
}

/// Runs `betanet stream`: dials, sends everything from `input` on one stream, writes the echo
/// to `output`, and checks it.
pub async fn stream(
    opts: StreamOptions,
    input: impl AsyncRead + Unpin + Send,
    output: impl AsyncWrite + Unpin + Send,
) -> Result<StreamReport, NetError> {
    let server = VerifyingKey::from_bytes(&parse_hex::<32>(
        &opts.server_pub_hex,
        "the server public key",
    )?)
    .map_err(|_| NetError::Config("the server public key is not a valid Ed25519 key".into()))?;
    let mut cfg = ClientConfig::new(SigningKey::generate(&mut rand_core::OsRng));
    cfg.transport = opts.transport;
    if opts.transport.uses_tls() {
        let t = opts.transport;
        let pin = opts.cert_pin_hex.as_deref().ok_or_else(|| {
            NetError::Config(format!(
                "--transport {t} needs --cert-pin (printed by the server)"
            ))
        })?;
        let ticket = opts.ticket_hex.as_deref().ok_or_else(|| {
            NetError::Config(format!(
                "--transport {t} needs --ticket (printed by the server)"
            ))
        })?;
        let t = parse_hex::<40>(ticket, "--ticket")?;
        let (p, k) = t.split_at(32);
        let ticket = TicketPublic {
            public: <[u8; 32]>::try_from(p).map_err(|_| NetError::Config("--ticket".into()))?,
            key_id: <[u8; 8]>::try_from(k).map_err(|_| NetError::Config("--ticket".into()))?,
        };
        cfg.tls = Some(TlsClient {
            tls: Arc::new(RustlsClient::pinned_sha256(parse_hex::<32>(
                pin,
                "--cert-pin",
            )?)?),
            server_name: opts
                .server_name
                .clone()
                .unwrap_or_else(|| opts.host.clone()),
            path: crate::tls::DEFAULT_PATH.to_owned(),
            ticket,
        });
    }
    let addr = format!("{}:{}", opts.host, opts.port);
    let limit = opts.timeout;
    let secs = limit.as_secs();
    tokio::time::timeout(limit, run_stream(addr, server, cfg, input, output))
        .await
        .map_err(|_| NetError::Timeout {
            what: "the echo stream",
            secs,
        })?
}

async fn run_stream(
    addr: String,
    server: VerifyingKey,
    cfg: ClientConfig,
    mut input: impl AsyncRead + Unpin + Send,
    mut output: impl AsyncWrite + Unpin + Send,
) -> Result<StreamReport, NetError> {
    let t0 = Instant::now();
    let conn = dial(&addr, &server, &cfg).await?;
    let handshake = t0.elapsed();
    // One PING right away, so that the stats carry an RTT sample even for a short echo.
    conn.ping();
    let s = conn.open_stream()?;
    let (mut rd, mut wr) = tokio::io::split(s);
    let send = async {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n_total = 0u64;
        loop {
            let n = input.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            h.update(chunk);
            wr.write_all(chunk).await?;
            n_total += n as u64;
        }
        wr.shutdown().await?;
        Ok::<_, std::io::Error>((n_total, h.finish()))
    };
    let recv = async {
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut n_total = 0u64;
        loop {
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            h.update(chunk);
            output.write_all(chunk).await?;
            n_total += n as u64;
        }
        output.flush().await?;
        Ok::<_, std::io::Error>((n_total, h.finish()))
    };
    let (sent, received) = tokio::try_join!(send, recv)?;
    let stats = conn.stats();
    let report = StreamReport {
        peer_id: PeerId::from_ed25519(conn.peer_identity()),
        sent: sent.0,
        received: received.0,
        sent_sha256: sent.1,
        received_sha256: received.1,
        elapsed: t0.elapsed(),
        handshake,
        post_quantum: conn.is_post_quantum(),
        rekeys: stats.htx.rekeys_sent,
        stats,
    };
    conn.close(betanet_htx::ErrorCode::Ok, "");
    Ok(report)
}
