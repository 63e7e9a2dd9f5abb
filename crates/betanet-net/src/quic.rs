//! QUIC v1 + HTTP/3 carriage (SPEC §4.1 PD-1 over QUIC, §4.8), with quinn and h3.
//!
//! The same rules as the TLS + HTTP/2 carriage ([`crate::tls`]), one layer down:
//! * the client opens QUIC (TLS 1.3 inside, ALPN `h3`, never 0-RTT), then HTTP/3, and sends one
//!   full-duplex streaming `POST` to the configured path with browser-like headers and an
//!   access ticket; the Noise handshake and then HTX frames flow in the request and response
//!   bodies (HTTP/3 DATA frames);
//! * the Noise prologue binds the QUIC connection's TLS exporter
//!   (`EXPORTER-betanet/1.2/inner`, empty context);
//! * the server answers every request that is not a valid HTX request with its decoy, and
//!   later requests on the same HTTP/3 connection must carry a fresh `BN-Ticket` (a malformed
//!   one closes the session with `L2_TICKET_INVALID`).
//!
//! The server uses the TLS front's certificate, ticket keys, path and decoy
//! ([`crate::tls::TlsServer`]); the client uses [`crate::tls::TlsClient`] and needs a
//! [`crate::tls::ClientTls`] that can hand out a QUIC-ready rustls configuration
//! ([`crate::tls::RustlsClient`] does).

use std::collections::HashSet;
use std::future::Future;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use betanet_crypto::handshake::TLS_EXPORTER_LABEL;
use betanet_crypto::sign::VerifyingKey;
use betanet_wire::ticket_header::HEADER_NAME;
use bytes::{Buf, Bytes, BytesMut};
use h3::error::StreamError;
use http::{Method, Response, StatusCode};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Semaphore, mpsc};

use crate::conn::{Connection, Shared, established, spawn_driver};
use crate::endpoint::{ClientConfig, Listener, ServerConfig};
use crate::error::NetError;
use crate::tls::{
    BnTicketCheck, Decoy, MAX_DECOY_REQUESTS, TLS_TIMEOUT, TlsClient, TlsServer, authority,
    bn_ticket_check, htx_request, htx_response_head, is_htx_request, wait_finished,
};

/// ALPN of HTTP/3.
pub const ALPN_H3: &[u8] = b"h3";

/// Largest chunk handed to h3 in one DATA frame.
const MAX_SEND: usize = 64 * 1024;

fn quic_err(e: impl std::fmt::Display) -> NetError {
    NetError::Quic(e.to_string())
}

/// Transport parameters close to Chrome's (SPEC §4.1 lists `initial_max_data`,
/// `active_connection_id_limit` and `max_idle_timeout` among what is calibrated): 15 MiB
/// connection and 6 MiB stream windows, 30 s idle timeout, no QUIC keep-alives (HTX sends its
/// own PINGs at random intervals).
pub(crate) fn transport_config() -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.receive_window(quinn::VarInt::from_u32(15 * 1024 * 1024))
        .stream_receive_window(quinn::VarInt::from_u32(6 * 1024 * 1024))
        .send_window(15 * 1024 * 1024)
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(100))
        .keep_alive_interval(None);
    if let Ok(idle) = quinn::IdleTimeout::try_from(Duration::from_secs(30)) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

fn exporter(conn: &quinn::Connection) -> Result<[u8; 32], NetError> {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, TLS_EXPORTER_LABEL, &[])
        .map_err(|_| NetError::Tls("the QUIC TLS exporter failed".into()))?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// A byte pipe over one HTTP/3 request/response pair.

type SendFut<S> = Pin<Box<dyn Future<Output = (S, Result<(), StreamError>)> + Send>>;

/// The sending half of an HTTP/3 request stream (client or server side).
pub(crate) trait H3Send: Sized + Send + Unpin + 'static {
    fn send(self, b: Bytes) -> SendFut<Self>;
    fn finish(self) -> SendFut<Self>;
}

/// The receiving half of an HTTP/3 request stream (client or server side).
pub(crate) trait H3Recv: Send + Unpin + 'static {
    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, StreamError>>;
}

type ServerSend = h3::server::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type ServerRecv = h3::server::RequestStream<h3_quinn::RecvStream, Bytes>;
type ClientSend = h3::client::RequestStream<h3_quinn::SendStream<Bytes>, Bytes>;
type ClientRecv = h3::client::RequestStream<h3_quinn::RecvStream, Bytes>;

/// `H3Send` / `H3Recv` for the client and server halves (same methods, distinct types).
macro_rules! h3_halves {
    ($send:ty, $recv:ty) => {
        impl H3Send for $send {
            fn send(mut self, b: Bytes) -> SendFut<Self> {
                Box::pin(async move {
                    let r = self.send_data(b).await;
                    (self, r)
                })
            }
            fn finish(mut self) -> SendFut<Self> {
                Box::pin(async move {
                    let r = <$send>::finish(&mut self).await;
                    (self, r)
                })
            }
        }

        impl H3Recv for $recv {
            fn poll_recv(
                &mut self,
                cx: &mut Context<'_>,
            ) -> Poll<Result<Option<Bytes>, StreamError>> {
                self.poll_recv_data(cx)
                    .map(|r| r.map(|o| o.map(|mut b| b.copy_to_bytes(b.remaining()))))
            }
        }
    };
}

h3_halves!(ServerSend, ServerRecv);
h3_halves!(ClientSend, ClientRecv);

enum SendState<S> {
    Idle(S),
    Busy(SendFut<S>),
    Done,
}

/// `AsyncRead` from the peer's body, `AsyncWrite` into ours. One DATA frame is in flight at a
/// time (h3 resolves it once quinn has taken the bytes, which is quinn's flow control).
pub(crate) struct H3Io<S: H3Send, R: H3Recv> {
    send: SendState<S>,
    recv: R,
    pending: Bytes,
    eof: bool,
    err: Option<io::Error>,
}

impl<S: H3Send, R: H3Recv> H3Io<S, R> {
    pub(crate) fn new(send: S, recv: R) -> Self {
        H3Io {
            send: SendState::Idle(send),
            recv,
            pending: Bytes::new(),
            eof: false,
            err: None,
        }
    }

    /// Completes the DATA frame in flight, if any.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let SendState::Busy(f) = &mut self.send {
            let (s, r) = ready!(f.as_mut().poll(cx));
            self.send = SendState::Idle(s);
            r.map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e))?;
        }
        Poll::Ready(Ok(()))
    }

    fn start(&mut self, b: Bytes) {
        if let SendState::Idle(s) = std::mem::replace(&mut self.send, SendState::Done) {
            self.send = SendState::Busy(s.send(b));
        }
    }
}

impl<S: H3Send, R: H3Recv> AsyncRead for H3Io<S, R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut copied = false;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(this.pending.get(..n).unwrap_or_default());
                this.pending.advance(n);
                copied = true;
                if buf.remaining() == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            if let Some(e) = this.err.take() {
                return Poll::Ready(Err(e));
            }
            match this.recv.poll_recv(cx) {
                Poll::Ready(Ok(Some(b))) => this.pending = b,
                Poll::Ready(Ok(None)) => this.eof = true,
                Poll::Ready(Err(e)) => {
                    // Hand over what was copied first; the error comes with the next read.
                    this.err = Some(io::Error::new(io::ErrorKind::BrokenPipe, e));
                    if copied {
                        return Poll::Ready(Ok(()));
                    }
                }
                Poll::Pending if copied => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: H3Send, R: H3Recv> AsyncWrite for H3Io<S, R> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        if matches!(this.send, SendState::Done) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = buf.len().min(MAX_SEND);
        this.start(Bytes::copy_from_slice(buf.get(..n).unwrap_or_default()));
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        if matches!(this.send, SendState::Done) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Gather whole slices up to MAX_SEND (at least the first) into one DATA frame.
        let mut out = BytesMut::new();
        for b in bufs {
            if !out.is_empty() && out.len() + b.len() > MAX_SEND {
                break;
            }
            let take = b.len().min(MAX_SEND - out.len());
            out.extend_from_slice(b.get(..take).unwrap_or_default());
            if out.len() >= MAX_SEND {
                break;
            }
        }
        let n = out.len();
        if n > 0 {
            this.start(out.freeze());
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_idle(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_idle(cx))?;
        loop {
            match std::mem::replace(&mut this.send, SendState::Done) {
                SendState::Idle(s) => this.send = SendState::Busy(s.finish()),
                SendState::Busy(mut f) => match f.as_mut().poll(cx) {
                    Poll::Ready((_, r)) => {
                        return Poll::Ready(
                            r.map_err(|e| io::Error::new(io::ErrorKind::BrokenPipe, e)),
                        );
                    }
                    Poll::Pending => {
                        this.send = SendState::Busy(f);
                        return Poll::Pending;
                    }
                },
                SendState::Done => return Poll::Ready(Ok(())),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Server.

/// Binds UDP `addr` and accepts HTX sessions over QUIC + HTTP/3 with the TLS front's
/// certificate, tickets and decoy.
pub(crate) fn listen(addr: &str, cfg: ServerConfig) -> Result<Listener, NetError> {
    let tls = cfg.tls.clone().ok_or_else(|| {
        NetError::Config("transport quic needs a TLS server configuration".into())
    })?;
    let sa: SocketAddr = addr
        .parse()
        .map_err(|_| NetError::Config(format!("transport quic: {addr:?} is not an IP:port")))?;
    let mut sc = quinn::ServerConfig::with_crypto(tls.quic_crypto());
    sc.transport_config(Arc::new(transport_config()));
    let endpoint = quinn::Endpoint::server(sc, sa).map_err(|e| NetError::File {
        what: "cannot listen (UDP) on",
        path: addr.to_owned(),
        source: e,
    })?;
    let local_addr = endpoint.local_addr()?;
    let (tx, rx) = mpsc::channel(64);
    let cfg = Arc::new(cfg);
    let permits = Arc::new(Semaphore::new(cfg.max_handshakes.max(1)));
    let task = tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (tx, cfg, tls) = (tx.clone(), cfg.clone(), tls.clone());
            tokio::spawn(async move {
                let peer = incoming.remote_address();
                let r = accept(incoming, &cfg, &tls).await;
                drop(permit);
                match r {
                    Ok(Some(conn)) => {
                        let _ = tx.send(conn).await;
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(%peer, error = %e, "inbound QUIC session failed"),
                }
            });
        }
    });
    Ok(Listener::from_parts(local_addr, rx, task))
}

type H3Server = h3::server::Connection<h3_quinn::Connection, Bytes>;
type H3Stream = h3::server::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>;

async fn accept(
    incoming: quinn::Incoming,
    cfg: &ServerConfig,
    tls: &TlsServer,
) -> Result<Option<Connection>, NetError> {
    let peer = incoming.remote_address();
    let conn = tokio::time::timeout(TLS_TIMEOUT, async {
        incoming.accept().map_err(quic_err)?.await.map_err(quic_err)
    })
    .await
    .map_err(|_| NetError::Timeout {
        what: "QUIC handshake",
        secs: TLS_TIMEOUT.as_secs(),
    })??;
    let exporter = exporter(&conn)?;
    let mut h3c: H3Server = tokio::time::timeout(
        TLS_TIMEOUT,
        h3::server::builder().build(h3_quinn::Connection::new(conn)),
    )
    .await
    .map_err(|_| NetError::Timeout {
        what: "HTTP/3 set-up",
        secs: TLS_TIMEOUT.as_secs(),
    })?
    .map_err(quic_err)?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    for _ in 0..MAX_DECOY_REQUESTS {
        let resolver = match tokio::time::timeout_at(deadline, h3c.accept()).await {
            Err(_) | Ok(Ok(None)) => return Ok(None),
            Ok(Ok(Some(r))) => r,
            Ok(Err(e)) => return Err(quic_err(e)),
        };
        let Ok(Ok((req, mut stream))) =
            tokio::time::timeout(TLS_TIMEOUT, resolver.resolve_request()).await
        else {
            continue;
        };
        let (parts, ()) = req.into_parts();
        if !is_htx_request(&parts, tls, peer).await {
            serve_decoy(parts, stream, tls.decoy.clone());
            continue;
        }
        let head = htx_response_head();
        stream.send_response(head).await.map_err(quic_err)?;
        let (send, recv) = stream.split();
        let engine = cfg.engine(exporter)?;
        let shared = spawn_driver(engine, H3Io::new(send, recv), "quic");
        tokio::spawn(serve_rest(h3c, shared.clone(), tls.clone()));
        return established(shared).await.map(Some);
    }
    Ok(None)
}

/// Reads (a bounded amount of) the request body, then sends the decoy's response.
fn serve_decoy(parts: http::request::Parts, mut stream: H3Stream, decoy: Arc<dyn Decoy>) {
    tokio::spawn(async move {
        let mut total = 0usize;
        while total < (1 << 20) {
            match tokio::time::timeout(Duration::from_secs(5), stream.recv_data()).await {
                Ok(Ok(Some(b))) => total += b.remaining(),
                _ => break,
            }
        }
        let (head, content) = decoy.respond(&parts).into_parts();
        if stream
            .send_response(Response::from_parts(head, ()))
            .await
            .is_err()
        {
            return;
        }
        if !content.is_empty() && parts.method != Method::HEAD {
            let _ = stream.send_data(content).await;
        }
        let _ = stream.finish().await;
    });
}

/// Serves the rest of an HTTP/3 connection whose HTX session runs on its first request.
async fn serve_rest(mut h3c: H3Server, shared: Arc<Shared>, tls: TlsServer) {
    let mut seen_ctx: HashSet<String> = HashSet::new();
    loop {
        let next = tokio::select! {
            r = h3c.accept() => r,
            () = wait_finished(&shared) => {
                let _ = tokio::time::timeout(Duration::from_secs(2), h3c.shutdown(0)).await;
                return;
            }
        };
        let Ok(Some(resolver)) = next else {
            shared.transport_gone();
            return;
        };
        let Ok(Ok((req, mut stream))) =
            tokio::time::timeout(TLS_TIMEOUT, resolver.resolve_request()).await
        else {
            continue;
        };
        let (parts, ()) = req.into_parts();
        match bn_ticket_check(&shared, parts.headers.get(HEADER_NAME), &mut seen_ctx) {
            BnTicketCheck::Absent | BnTicketCheck::Refused => {
                serve_decoy(parts, stream, tls.decoy.clone());
            }
            BnTicketCheck::Malformed => {} // the session is closed
            BnTicketCheck::Accepted => {
                let mut r = Response::new(());
                *r.status_mut() = StatusCode::NO_CONTENT;
                tokio::spawn(async move {
                    if stream.send_response(r).await.is_ok() {
                        let _ = stream.finish().await;
                    }
                });
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Client.

/// Dials `addr` (`host:port`, UDP) over QUIC + HTTP/3 and authenticates the peer as
/// `remote`; the QUIC handshake must finish within `handshake_timeout`.
pub(crate) async fn dial(
    addr: &str,
    remote: &VerifyingKey,
    cfg: &ClientConfig,
    tls: &TlsClient,
    handshake_timeout: Duration,
) -> Result<Connection, NetError> {
    let crypto = tls.tls.quic_config().ok_or_else(|| {
        NetError::Config(
            "transport quic needs a TLS client that supports QUIC (RustlsClient does)".into(),
        )
    })?;
    let sa = tokio::net::lookup_host(addr)
        .await
        .map_err(|e| NetError::Config(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| NetError::Config(format!("cannot resolve {addr:?}")))?;
    let bind: SocketAddr = if sa.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let mut endpoint = quinn::Endpoint::client(bind)?;
    let mut qc = quinn::ClientConfig::new(crypto);
    qc.transport_config(Arc::new(transport_config()));
    endpoint.set_default_client_config(qc);
    let connecting = endpoint.connect(sa, &tls.server_name).map_err(quic_err)?;
    let timeout = NetError::Timeout {
        what: "QUIC handshake",
        secs: handshake_timeout.as_secs().max(1),
    };
    let conn = match tokio::time::timeout(handshake_timeout, connecting).await {
        Err(_) | Ok(Err(quinn::ConnectionError::TimedOut)) => return Err(timeout),
        Ok(Err(e)) => return Err(quic_err(e)),
        Ok(Ok(c)) => c,
    };
    if conn
        .handshake_data()
        .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
        .and_then(|d| d.protocol)
        .as_deref()
        != Some(ALPN_H3)
    {
        return Err(NetError::Quic(
            "the server did not negotiate HTTP/3 (ALPN h3)".into(),
        ));
    }
    let exporter = exporter(&conn)?;
    let quic = conn.clone();
    let (mut driver, mut send_req) = h3::client::builder()
        .build::<_, _, Bytes>(h3_quinn::Connection::new(conn))
        .await
        .map_err(quic_err)?;
    let req = htx_request(&authority(addr, &tls.server_name), tls)?;
    let mut stream = send_req.send_request(req).await.map_err(quic_err)?;
    let resp = tokio::time::timeout(TLS_TIMEOUT, stream.recv_response())
        .await
        .map_err(|_| NetError::Timeout {
            what: "HTTP/3 response",
            secs: TLS_TIMEOUT.as_secs(),
        })?
        .map_err(quic_err)?;
    if resp.status() != StatusCode::OK {
        return Err(NetError::Quic(format!(
            "the front answered {} like a plain web site: the access ticket was refused or it is \
             not a Betanet front",
            resp.status()
        )));
    }
    let (send, recv) = stream.split();
    let engine = cfg.engine(remote, exporter)?;
    let shared = spawn_driver(engine, H3Io::new(send, recv), "quic");
    // The HTTP/3 connection's control streams run here until the HTX session ends; then the
    // QUIC connection is closed (the request sender and the endpoint live as long).
    let finished = shared.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = std::future::poll_fn(|cx| driver.poll_close(cx)) => finished.transport_gone(),
            () = wait_finished(&finished) => {
                quic.close(quinn::VarInt::from_u32(0x100), b""); // H3_NO_ERROR
            }
        }
        drop(send_req);
        endpoint.wait_idle().await;
    });
    established(shared).await
}
