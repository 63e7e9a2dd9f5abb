//! HTTP/2 PRIORITY cover (SPEC §4.1: "PRIORITY on 0.5–3 % of connections").
//!
//! The `h2` crate cannot send PRIORITY frames, so the client carriage injects one raw,
//! well-formed frame into the bytes `h2` writes: [`PriorityInject`] wraps the TLS session
//! given to `h2` and inserts the frame at the first frame boundary after the connection
//! preface and the client's first SETTINGS frame (before any request). Nothing is parsed or
//! changed beyond that point: afterwards the wrapper is a plain pass-through.
//!
//! The frame (RFC 9113 §6.3, type `0x2`, flags 0, 5-byte payload) names stream 1, the stream
//! the client's first request (the HTX `POST`) opens next, while it is still idle (RFC 9113
//! §5.1: an idle stream may receive PRIORITY, which does not change its state; RFC 7540
//! §5.3 used exactly this to set a priority before HEADERS): exclusive bit 0, dependency on
//! stream 0, and a browser-like weight. Receivers must parse PRIORITY and may ignore it
//! (RFC 9113 §5.3.2); our own listener (`h2`) ignores it.
//!
//! The decisions are sans-IO: [`draw_probability`] picks a client's probability uniformly
//! from [`PROBABILITY_RANGE`] once (at `ClientConfig::new`), [`decide`] flips the coin per
//! connection; both take the RNG as an argument.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rand_core::RngCore;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The range a client's per-connection PRIORITY probability is drawn from (SPEC §4.1).
pub const PROBABILITY_RANGE: (f64, f64) = (0.005, 0.03);

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// HTTP/2 frame header length.
const FRAME_HEADER: usize = 9;
/// HTTP/2 frame type of SETTINGS.
const TYPE_SETTINGS: u8 = 0x4;
/// HTTP/2 frame type of PRIORITY.
pub const TYPE_PRIORITY: u8 = 0x2;
/// The stream the injected frame names (the client's first request stream, still idle).
pub const PRIORITY_STREAM: u32 = 1;
/// Weights (wire value = weight − 1) browsers used for their request classes.
const WEIGHTS: [u8; 5] = [255, 219, 182, 146, 109];

fn unit(rng: &mut impl RngCore) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A client's PRIORITY probability, uniform in [`PROBABILITY_RANGE`].
pub fn draw_probability(rng: &mut impl RngCore) -> f64 {
    let (lo, hi) = PROBABILITY_RANGE;
    lo + (hi - lo) * unit(rng)
}

/// Whether this connection carries a PRIORITY frame (`probability` is clamped to [0, 1]; 1
/// always, 0 never).
pub fn decide(probability: f64, rng: &mut impl RngCore) -> bool {
    let p = if probability.is_nan() {
        0.0
    } else {
        probability.clamp(0.0, 1.0)
    };
    p >= 1.0 || unit(rng) < p
}

/// A complete PRIORITY frame for [`PRIORITY_STREAM`]: dependency 0, not exclusive, a
/// browser-like weight chosen by `rng`.
pub fn priority_frame(rng: &mut impl RngCore) -> [u8; 14] {
    let weight = WEIGHTS
        .get((rng.next_u32() as usize) % WEIGHTS.len())
        .copied()
        .unwrap_or(255);
    let sid = PRIORITY_STREAM.to_be_bytes();
    [
        0,
        0,
        5, // length
        TYPE_PRIORITY,
        0, // flags
        sid[0],
        sid[1],
        sid[2],
        sid[3], // stream id (R bit 0)
        0,
        0,
        0,
        0, // E = 0, stream dependency 0
        weight,
    ]
}

/// An `AsyncRead + AsyncWrite` pass-through that inserts `frame` into the written bytes right
/// after the HTTP/2 preface and the first SETTINGS frame (see the module documentation).
///
/// If the written bytes do not start with the preface and a SETTINGS frame, nothing is
/// inserted. Writes are only shortened (never reordered) until the insertion is done.
pub struct PriorityInject<T> {
    inner: T,
    /// The frame still to insert (`None`: nothing (more) to do, pass-through).
    frame: Option<Vec<u8>>,
    /// Bytes of `frame` already written.
    frame_written: usize,
    /// Bytes of the caller's stream written so far (counted only while injecting).
    seen: usize,
    /// The first bytes of the caller's stream: preface ‖ SETTINGS header.
    head: [u8; 24 + FRAME_HEADER],
    /// Offset in the caller's stream where the frame goes, once the SETTINGS header is known.
    at: Option<usize>,
    injected: bool,
}

impl<T> PriorityInject<T> {
    /// Wraps `inner`; `frame` is inserted when `Some`.
    pub fn new(inner: T, frame: Option<Vec<u8>>) -> Self {
        PriorityInject {
            inner,
            frame,
            frame_written: 0,
            seen: 0,
            head: [0; 24 + FRAME_HEADER],
            at: None,
            injected: false,
        }
    }

    /// Whether the frame was completely written.
    pub fn injected(&self) -> bool {
        self.injected
    }

    /// The wrapped transport.
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Records `buf` (just written) and finds the insertion point once the SETTINGS header
    /// is complete.
    fn observe(&mut self, buf: &[u8]) {
        let head_len = self.head.len();
        if self.seen < head_len {
            let k = buf.len().min(head_len - self.seen);
            if let (Some(dst), Some(src)) =
                (self.head.get_mut(self.seen..self.seen + k), buf.get(..k))
            {
                dst.copy_from_slice(src);
            }
        }
        self.seen += buf.len();
        if self.at.is_none() && self.seen >= head_len {
            let ok = self.head.get(..24) == Some(PREFACE.as_slice())
                && self.head.get(27) == Some(&TYPE_SETTINGS);
            match (ok, self.head.get(24..27)) {
                (true, Some(&[a, b, c])) => {
                    let len = u32::from_be_bytes([0, a, b, c]) as usize;
                    self.at = Some(head_len + len);
                }
                _ => self.frame = None,
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> PriorityInject<T> {
    fn poll_write_injecting(
        &mut self,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            let Some(frame) = self.frame.as_ref() else {
                return Pin::new(&mut self.inner).poll_write(cx, buf);
            };
            if self.at == Some(self.seen) {
                let rest = frame.get(self.frame_written..).unwrap_or_default();
                match Pin::new(&mut self.inner).poll_write(cx, rest) {
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => {
                        self.frame_written += n;
                        if self.frame_written >= frame.len() {
                            self.frame = None;
                            self.injected = true;
                        }
                        continue;
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => return Poll::Pending,
                }
            }
            // Never write past the header we must see, or past the insertion point.
            let limit = match self.at {
                Some(at) => at.saturating_sub(self.seen),
                None => self.head.len().saturating_sub(self.seen),
            };
            let chunk = buf.get(..buf.len().min(limit.max(1))).unwrap_or_default();
            return match Pin::new(&mut self.inner).poll_write(cx, chunk) {
                Poll::Ready(Ok(n)) => {
                    self.observe(chunk.get(..n).unwrap_or_default());
                    Poll::Ready(Ok(n))
                }
                other => other,
            };
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for PriorityInject<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for PriorityInject<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.get_mut().poll_write_injecting(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.frame.is_none() {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        match bufs.iter().find(|b| !b.is_empty()) {
            Some(b) => this.poll_write_injecting(cx, b),
            None => Poll::Ready(Ok(0)),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::{Arc, Mutex};

    #[test]
    fn probability_and_decision() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..1000 {
            let p = draw_probability(&mut rng);
            assert!((0.005..=0.03).contains(&p), "{p}");
        }
        assert!((0..100).all(|_| decide(1.0, &mut rng)));
        assert!((0..100).all(|_| !decide(0.0, &mut rng)));
        assert!(!decide(f64::NAN, &mut rng));
        // 3 % over many connections: about 300 of 10 000.
        let n = (0..10_000).filter(|_| decide(0.03, &mut rng)).count();
        assert!((200..400).contains(&n), "{n}");
    }

    #[test]
    fn frame_layout() {
        let mut rng = StdRng::seed_from_u64(4);
        let f = priority_frame(&mut rng);
        assert_eq!(&f[..9], &[0, 0, 5, 2, 0, 0, 0, 0, 1]);
        assert_eq!(&f[9..13], &[0, 0, 0, 0]);
        assert!(WEIGHTS.contains(&f[13]));
    }

    /// Records everything read through it (the server's view of the wire).
    struct Tap<T> {
        inner: T,
        seen: Arc<Mutex<Vec<u8>>>,
    }

    impl<T: AsyncRead + Unpin> AsyncRead for Tap<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            let this = self.get_mut();
            let before = buf.filled().len();
            let r = Pin::new(&mut this.inner).poll_read(cx, buf);
            this.seen
                .lock()
                .unwrap()
                .extend_from_slice(&buf.filled()[before..]);
            r
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Tap<T> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_flush(cx)
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
        }
    }

    /// Accepts at most 5 bytes per write: h2's writes arrive in many partial pieces.
    struct Trickle<T>(T);

    impl<T: AsyncRead + Unpin> AsyncRead for Trickle<T> {
        fn poll_read(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
        }
    }

    impl<T: AsyncWrite + Unpin> AsyncWrite for Trickle<T> {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            let n = buf.len().min(5);
            Pin::new(&mut self.get_mut().0).poll_write(cx, &buf[..n])
        }
        fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_flush(cx)
        }
        fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
        }
    }

    /// One h2 request through the wrapper (over a transport that takes 5 bytes per write);
    /// returns the server's view of the client's bytes.
    async fn exchange(frame: Option<Vec<u8>>) -> Vec<u8> {
        let (a, b) = tokio::io::duplex(1 << 16);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let tap = Tap {
            inner: b,
            seen: seen.clone(),
        };
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(tap).await.unwrap();
            let (req, mut respond) = conn.accept().await.unwrap().unwrap();
            assert_eq!(req.uri().path(), "/x");
            let mut send = respond
                .send_response(http::Response::new(()), false)
                .unwrap();
            send.send_data(Bytes::from_static(b"pong"), true).unwrap();
            // Keep serving until the client goes away.
            while let Some(r) = conn.accept().await {
                r.unwrap();
            }
        });
        let (mut send, conn) = h2::client::handshake(PriorityInject::new(Trickle(a), frame))
            .await
            .unwrap();
        let driver = tokio::spawn(conn);
        let req = http::Request::builder()
            .uri("https://front.example/x")
            .body(())
            .unwrap();
        let (resp, _) = send.send_request(req, true).unwrap();
        let resp = resp.await.unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(d) = body.data().await {
            got.extend_from_slice(&d.unwrap());
        }
        assert_eq!(got, b"pong");
        // The server has read the request (it answered), so the tap holds the bytes.
        driver.abort();
        server.abort();
        seen.lock().unwrap().clone()
    }

    /// Splits the client's bytes after the preface into (type, stream, payload) frames.
    fn frames(wire: &[u8]) -> Vec<(u8, u32, Vec<u8>)> {
        assert_eq!(&wire[..24], PREFACE);
        let mut out = Vec::new();
        let mut rest = &wire[24..];
        while rest.len() >= 9 {
            let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
            let sid = u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) & 0x7fff_ffff;
            out.push((rest[3], sid, rest[9..9 + len].to_vec()));
            rest = &rest[9 + len..];
        }
        assert!(rest.is_empty());
        out
    }

    #[tokio::test]
    async fn injected_after_settings_and_the_h2_server_keeps_working() {
        let mut rng = StdRng::seed_from_u64(5);
        let frame = priority_frame(&mut rng);
        let limit = std::time::Duration::from_secs(20);
        let wire = tokio::time::timeout(limit, exchange(Some(frame.to_vec())))
            .await
            .expect("h2 exchange with PRIORITY timed out");
        let f = frames(&wire);
        assert_eq!(f[0].0, TYPE_SETTINGS);
        assert_eq!(f[1], (TYPE_PRIORITY, 1, frame[9..].to_vec()));
        // The exact bytes follow the SETTINGS frame on the wire.
        let settings_end = 24 + 9 + f[0].2.len();
        assert_eq!(&wire[settings_end..settings_end + 14], &frame);
        // Then the request on stream 1 (HEADERS), once.
        assert!(f.iter().any(|(t, s, _)| *t == 0x1 && *s == 1));
        assert_eq!(f.iter().filter(|(t, _, _)| *t == TYPE_PRIORITY).count(), 1);

        // Without a frame: byte stream unchanged, no PRIORITY.
        let wire = tokio::time::timeout(limit, exchange(None))
            .await
            .expect("h2 exchange timed out");
        assert!(frames(&wire).iter().all(|(t, _, _)| *t != TYPE_PRIORITY));
    }

    #[tokio::test]
    async fn not_h2_means_no_injection() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, mut b) = tokio::io::duplex(64);
        let mut w = PriorityInject::new(a, Some(vec![9; 14]));
        w.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nhello world")
            .await
            .unwrap();
        w.shutdown().await.unwrap();
        assert!(!w.injected());
        let mut got = Vec::new();
        b.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"GET / HTTP/1.1\r\nHost: x\r\n\r\nhello world");
    }
}
