#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::handshake::{HandshakeConfig, Initiator, PqMode, split_prefixed};
use betanet_crypto::hash::Sha256;
use betanet_crypto::schedule::{FrameOpener, FrameSealer};
use betanet_crypto::sign::SigningKey;
use betanet_net::ticket::TicketKeys;
use betanet_net::tls::{RustlsClient, TlsClient, TlsServer};
use betanet_net::{ClientConfig, Connection, HtxConfig, Listener, ServerConfig, Transport, listen};
use betanet_wire::ErrorCode;
use betanet_wire::frame::{FrameDecoder, FrameType, Payload};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32])
}

/// A deterministic pseudo-random byte pattern (xorshift) for stream `id`.
pub struct Pattern(u64);

impl Pattern {
    pub fn new(id: u64) -> Self {
        Pattern(id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            let b = self.0.to_le_bytes();
            chunk.copy_from_slice(&b[..chunk.len()]);
        }
    }
}

/// Writes `len` pattern bytes, returns their SHA-256.
pub async fn send_pattern<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    id: u64,
    len: u64,
) -> [u8; 32] {
    let mut p = Pattern::new(id);
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut left = len;
    while left > 0 {
        let n = (buf.len() as u64).min(left) as usize;
        p.fill(&mut buf[..n]);
        h.update(&buf[..n]);
        w.write_all(&buf[..n]).await.unwrap();
        left -= n as u64;
    }
    w.shutdown().await.unwrap();
    h.finish()
}

/// Reads to EOF, returns (bytes, SHA-256).
pub async fn recv_all<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> (u64, [u8; 32]) {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut n_total = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (n_total, h.finish());
        }
        h.update(&buf[..n]);
        n_total += n as u64;
    }
}

pub struct Tls {
    pub server: TlsServer,
    pub client: TlsClient,
}

pub fn tls_pair() -> Tls {
    let tickets = Arc::new(TicketKeys::generate(&mut rand_core::OsRng).unwrap());
    let (server, _, _) = TlsServer::self_signed("front.example", tickets.clone()).unwrap();
    let client = TlsClient {
        tls: Arc::new(RustlsClient::pinned(server.cert_der()).unwrap()),
        server_name: "front.example".into(),
        path: server.path.clone(),
        ticket: tickets.public(),
    };
    Tls { server, client }
}

pub async fn server(transport: Transport, htx: HtxConfig, tls: Option<TlsServer>) -> Listener {
    let mut cfg = ServerConfig::new(key(2));
    cfg.transport = transport;
    cfg.htx = htx;
    cfg.tls = tls;
    listen("127.0.0.1:0", cfg).await.unwrap()
}

pub fn client_cfg(transport: Transport, htx: HtxConfig, tls: Option<TlsClient>) -> ClientConfig {
    let mut cfg = ClientConfig::new(key(1));
    cfg.transport = transport;
    cfg.htx = htx;
    cfg.tls = tls;
    cfg
}

pub fn quiet() -> HtxConfig {
    HtxConfig {
        cover: betanet_net::CoverConfig::off(),
        ..HtxConfig::default()
    }
}

/// Runs `streams` concurrent streams each way carrying `per_stream` bytes in each direction
/// and checks SHA-256 on both ends. Returns (client, server) connections.
pub async fn bidi_transfer(
    client: &Connection,
    server: &Connection,
    streams: u64,
    per_stream: u64,
) {
    let srv = server.clone();
    let server_side = tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let s = srv.accept_stream().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let id = u64::from(s.id().0);
                let (mut r, mut w) = tokio::io::split(s);
                let (got, sent) = tokio::join!(
                    recv_all(&mut r),
                    send_pattern(&mut w, 1_000_000 + id, per_stream)
                );
                (id, got, sent)
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let mut tasks = Vec::new();
    for _ in 0..streams {
        let s = client.open_stream().unwrap();
        tasks.push(tokio::spawn(async move {
            let id = u64::from(s.id().0);
            let (mut r, mut w) = tokio::io::split(s);
            let (sent, got) = tokio::join!(send_pattern(&mut w, id, per_stream), recv_all(&mut r));
            (id, sent, got)
        }));
    }
    let mut client_results = std::collections::HashMap::new();
    for t in tasks {
        let (id, sent, got) = t.await.unwrap();
        client_results.insert(id, (sent, got));
    }
    let server_results = server_side.await.unwrap();
    assert_eq!(server_results.len() as u64, streams);
    for (id, (n, got_hash), server_sent_hash) in server_results {
        let (client_sent_hash, (cn, client_got_hash)) = client_results[&id];
        assert_eq!(
            n, per_stream,
            "stream {id}: bytes lost or duplicated client→server"
        );
        assert_eq!(
            got_hash, client_sent_hash,
            "stream {id}: client→server SHA-256"
        );
        assert_eq!(
            cn, per_stream,
            "stream {id}: bytes lost or duplicated server→client"
        );
        assert_eq!(
            client_got_hash, server_sent_hash,
            "stream {id}: server→client SHA-256"
        );
    }
}

/// A hand-driven initiator over raw TCP (tcp12), to send what a correct engine never would.
pub struct RawClient {
    pub tcp: TcpStream,
    pub sealer: FrameSealer,
    pub opener: FrameOpener,
}

impl RawClient {
    pub async fn connect(addr: std::net::SocketAddr) -> RawClient {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        let mut hs = HandshakeConfig::new(key(1), 1_780_000_000);
        hs.pq = PqMode::Classic;
        let (st, m1) =
            Initiator::start(hs, &key(2).verifying_key(), &mut rand_core::OsRng).unwrap();
        tcp.write_all(&m1).await.unwrap();
        let mut buf = Vec::new();
        let m2 = loop {
            let mut chunk = [0u8; 4096];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some((m, _)) = split_prefixed(&buf) {
                break m.to_vec();
            }
        };
        let (est, m3) = st.read_msg2(&m2).unwrap();
        tcp.write_all(&m3).await.unwrap();
        let (sealer, opener) = est.schedule.frame_keys(est.role);
        RawClient {
            tcp,
            sealer,
            opener,
        }
    }

    pub fn frame(&mut self, payload: &Payload, sid: u32) -> Vec<u8> {
        let h = payload.header(sid, 0).unwrap();
        let mut pt = payload.to_vec().unwrap();
        let tag = self.sealer.seal(&h.aad(), &mut pt).unwrap();
        let mut f = h.encode().to_vec();
        f.extend_from_slice(&pt);
        f.extend_from_slice(&tag);
        f
    }

    /// Reads frames until a CLOSE on stream 0 (or EOF / timeout); returns its code.
    pub async fn close_code(&mut self, limit: Duration) -> Option<ErrorCode> {
        let mut dec = FrameDecoder::new();
        let deadline = tokio::time::Instant::now() + limit;
        let mut chunk = vec![0u8; 65536];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Ok(Ok(n)) if n > 0 => n,
                _ => return None,
            };
            dec.feed(&chunk[..n]);
            while let Ok(Some(raw)) = dec.next_frame() {
                let mut body = raw.body.to_vec();
                let len = self.opener.open(&raw.header.aad(), &mut body).ok()?.len;
                body.truncate(len);
                if raw.header.frame_type() == FrameType::KeyUpdate {
                    self.opener.key_update();
                }
                if let Ok(Payload::Close(c)) = Payload::decode(raw.header.frame_type(), &body)
                    && raw.header.stream_id() == 0
                {
                    return Some(c.code);
                }
            }
        }
    }
}

/// Resident set size in bytes (Linux).
pub fn rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}
