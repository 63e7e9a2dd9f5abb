//! Helpers shared by the benches.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_crypto::schedule::{KeySchedule, Role};
use betanet_crypto::sign::SigningKey;
use betanet_net::ticket::TicketKeys;
use betanet_net::tls::{ClientTls, RustlsClient, TlsClient, TlsServer};
use betanet_net::{
    ClientConfig, Connection, CoverConfig, HtxConfig, ServerConfig, Transport, dial, listen,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::runtime::Runtime;

pub const MIB: usize = 1 << 20;
pub const TRANSFER: usize = 64 * MIB;

pub fn rt() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn htx() -> HtxConfig {
    let env = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    HtxConfig {
        cover: CoverConfig::off(),
        max_stream_window: env("BETANET_BENCH_STREAM_WINDOW", 4 << 20),
        max_conn_window: env("BETANET_BENCH_CONN_WINDOW", 16 << 20),
        ..HtxConfig::default()
    }
}

pub async fn pair(transport: Transport) -> (Connection, Connection) {
    let skey = SigningKey::from_seed(&[2; 32]);
    let spub = skey.verifying_key();
    let mut scfg = ServerConfig::new(skey);
    scfg.transport = transport;
    scfg.htx = htx();
    let mut ccfg = ClientConfig::new(SigningKey::from_seed(&[1; 32]));
    ccfg.transport = transport;
    ccfg.htx = htx();
    if transport.uses_tls() {
        let tickets = Arc::new(TicketKeys::generate(&mut rand_core::OsRng).unwrap());
        let (server, _, _) = TlsServer::self_signed("front.example", tickets.clone()).unwrap();
        ccfg.tls = Some(TlsClient {
            tls: Arc::new(RustlsClient::pinned(server.cert_der()).unwrap()),
            server_name: "front.example".into(),
            path: server.path.clone(),
            ticket: tickets.public(),
        });
        scfg.tls = Some(server);
    }
    let mut l = listen("127.0.0.1:0", scfg).await.unwrap();
    let addr = l.local_addr().to_string();
    let (c, s) = tokio::join!(dial(&addr, &spub, &ccfg), l.accept());
    (c.unwrap(), s.unwrap())
}

/// One stream, `TRANSFER` bytes client → server, returns the elapsed time.
pub async fn one_stream(c: &Connection, s: &Connection) -> Duration {
    let t0 = Instant::now();
    let mut st = c.open_stream().unwrap();
    let srv = s.clone();
    let reader = tokio::spawn(async move {
        let mut rs = srv.accept_stream().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0;
        loop {
            let n = rs.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    });
    let chunk = vec![0x5au8; 256 * 1024];
    for _ in 0..TRANSFER / chunk.len() {
        st.write_all(&chunk).await.unwrap();
    }
    st.shutdown().await.unwrap();
    assert_eq!(reader.await.unwrap(), TRANSFER);
    t0.elapsed()
}

/// Seals `TRANSFER` bytes in 64 KiB frames on this thread; returns the time.
pub fn seal_ceiling() -> Duration {
    let ks = KeySchedule::from_ekm(&[7u8; 32]);
    let (mut sealer, _) = ks.frame_keys(Role::Initiator);
    let mut frame = vec![0u8; 65_509];
    let t0 = Instant::now();
    for _ in 0..TRANSFER / frame.len() + 1 {
        let tag = sealer.seal(&[0u8; 10], &mut frame).unwrap();
        std::hint::black_box(tag);
    }
    t0.elapsed()
}

/// Seals and opens `TRANSFER` bytes in 64 KiB frames on this thread; returns the time.
pub fn seal_open_ceiling() -> Duration {
    let ks = KeySchedule::from_ekm(&[7u8; 32]);
    let (mut sealer, _) = ks.frame_keys(Role::Initiator);
    let (_, mut opener) = ks.frame_keys(Role::Responder);
    let mut frame = vec![0u8; 65_509 + 16];
    let t0 = Instant::now();
    for _ in 0..TRANSFER / 65_509 + 1 {
        let (pt, tag) = frame.split_at_mut(65_509);
        let t = sealer.seal(&[0u8; 10], pt).unwrap();
        tag.copy_from_slice(&t);
        opener.open(&[0u8; 10], &mut frame).unwrap();
    }
    t0.elapsed()
}

/// A plain rustls TLS 1.3 pair over loopback (default suites).
pub async fn plain_tls_pair() -> (
    Box<dyn betanet_net::tls::TlsSession>,
    tokio::task::JoinHandle<()>,
) {
    let ck = rcgen::generate_simple_self_signed(vec!["front.example".to_owned()]).unwrap();
    let der = ck.cert.der().to_vec();
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![ck.cert.der().clone()],
        rustls_pki_types::PrivateKeyDer::Pkcs8(ck.key_pair.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let srv = tokio::spawn(async move {
        let (tcp, _) = l.accept().await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut s = acceptor.accept(tcp).await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        loop {
            let n = s.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            total += n;
            if total.is_multiple_of(TRANSFER) {
                s.write_all(b"k").await.unwrap();
                s.flush().await.unwrap();
            }
        }
    });
    let client = RustlsClient::pinned(&der).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    (client.connect(tcp, "front.example").await.unwrap(), srv)
}

/// `TRANSFER` bytes over a plain TLS session, acknowledged by the server.
pub async fn plain_tls_transfer(s: &mut Box<dyn betanet_net::tls::TlsSession>) -> Duration {
    let chunk = vec![0x5au8; 256 * 1024];
    let t0 = Instant::now();
    for _ in 0..TRANSFER / chunk.len() {
        s.write_all(&chunk).await.unwrap();
    }
    s.flush().await.unwrap();
    let mut ack = [0u8; 1];
    s.read_exact(&mut ack).await.unwrap();
    t0.elapsed()
}
