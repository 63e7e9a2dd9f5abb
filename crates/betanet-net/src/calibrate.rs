//! Origin calibration for the TLS + HTTP/2 carriage (SPEC §4.1).
//!
//! Before dialing a front, the client fetches `/robots.txt` from it like any visitor and
//! records what the origin's TLS and HTTP/2 stack negotiated: the ALPN list offered and the
//! protocol chosen, the TLS version, cipher suite and key-exchange group, and the server's
//! HTTP/2 SETTINGS (ordered by id) with its first connection WINDOW_UPDATE. That set is the
//! [`Template`]; `TemplateID = SHA-256(det-CBOR(template))`; templates are cached for 24 h
//! under `BETANET_FP_DIR` (or the directory the caller gives). The HTX connection's own
//! negotiation is then compared with the template ([`Template::check`]): ALPN (offered order
//! and choice), version, suite and group must match exactly, SETTINGS values within ±10 %.
//! Policy `DEV` (default) logs a warning on a mismatch; `REQUIRED` fails closed.
//!
//! What rustls does not expose is not recorded: the server's extension order and GREASE
//! presence, the signature algorithm, and QUIC transport parameters (the QUIC carriage is not
//! calibrated yet). The ping/idle cadence is the engine's cover configuration.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use betanet_wire::cbor::{self, Value};
use bytes::Bytes;
use http::{Method, Request};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::endpoint::{connect_tcp, now_unix};
use crate::error::NetError;
use crate::tls::{CHROME_UA, TLS_TIMEOUT, TlsClient};

/// How long a cached template stays valid.
pub const TEMPLATE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Relative tolerance for numeric values (HTTP/2 SETTINGS, windows).
pub const TOLERANCE: f64 = 0.10;

/// What to do when the HTX connection does not match the origin's template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Do not calibrate.
    Off,
    /// Calibrate; log a warning on a mismatch (the default).
    #[default]
    Dev,
    /// Calibrate; refuse the connection on a mismatch or when calibration fails.
    Required,
}

impl std::str::FromStr for Policy {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, NetError> {
        match s.to_ascii_uppercase().as_str() {
            "OFF" => Ok(Policy::Off),
            "DEV" => Ok(Policy::Dev),
            "REQUIRED" => Ok(Policy::Required),
            other => Err(NetError::Config(format!(
                "calibration policy {other:?}: use DEV, REQUIRED or OFF"
            ))),
        }
    }
}

/// Calibration settings of a client.
#[derive(Debug, Clone, Default)]
pub struct Calibration {
    /// The policy (`BETANET_FP_POLICY`, default DEV).
    pub policy: Policy,
    /// Where templates are cached (`BETANET_FP_DIR`); `None`: only in this process.
    pub dir: Option<PathBuf>,
}

impl Calibration {
    /// From `BETANET_FP_POLICY` and `BETANET_FP_DIR` (an invalid policy falls back to DEV
    /// with a warning).
    #[must_use]
    pub fn from_env() -> Self {
        let policy = std::env::var("BETANET_FP_POLICY")
            .ok()
            .map_or(Policy::Dev, |v| {
                v.parse().unwrap_or_else(|e| {
                    tracing::warn!(error = %e, "BETANET_FP_POLICY ignored");
                    Policy::Dev
                })
            });
        Calibration {
            policy,
            dir: std::env::var_os("BETANET_FP_DIR").map(PathBuf::from),
        }
    }
}

/// What one TLS + HTTP/2 connection negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Template {
    /// ALPN protocols offered, in order.
    pub alpn_offered: Vec<String>,
    /// ALPN protocol chosen by the server.
    pub alpn: Option<String>,
    /// TLS version (`TLSv1_3`).
    pub version: Option<String>,
    /// Cipher suite (`TLS13_AES_128_GCM_SHA256`, ...).
    pub cipher_suite: Option<String>,
    /// Key-exchange group (`X25519MLKEM768`, `X25519`, ...).
    pub group: Option<String>,
    /// The server's first HTTP/2 SETTINGS, `(id, value)` ordered by id.
    pub h2_settings: Vec<(u16, u32)>,
    /// The increment of the server's first connection-level WINDOW_UPDATE, if it sent one
    /// right after its SETTINGS.
    pub h2_connection_window: Option<u32>,
}

fn opt_text(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| Value::text(s.clone()))
}

impl Template {
    /// The template as deterministic CBOR.
    #[must_use]
    pub fn to_cbor(&self) -> Value {
        Value::map([
            (
                "alpn_offered",
                Value::Array(self.alpn_offered.iter().cloned().map(Value::text).collect()),
            ),
            ("alpn", opt_text(&self.alpn)),
            ("version", opt_text(&self.version)),
            ("cipher", opt_text(&self.cipher_suite)),
            ("group", opt_text(&self.group)),
            (
                "h2_settings",
                Value::Array(
                    self.h2_settings
                        .iter()
                        .map(|(id, v)| {
                            Value::Array(vec![
                                Value::Uint(u64::from(*id)),
                                Value::Uint(u64::from(*v)),
                            ])
                        })
                        .collect(),
                ),
            ),
            (
                "h2_window",
                self.h2_connection_window
                    .map_or(Value::Null, |w| Value::Uint(u64::from(w))),
            ),
        ])
    }

    /// Parses [`Template::to_cbor`]'s output.
    pub fn from_cbor(v: &Value) -> Option<Template> {
        let text = |k: &str| v.get(k).and_then(Value::as_text).map(str::to_owned);
        let settings = v
            .get("h2_settings")?
            .as_array()?
            .iter()
            .map(|e| {
                let a = e.as_array()?;
                let id = u16::try_from(a.first()?.as_u64()?).ok()?;
                let val = u32::try_from(a.get(1)?.as_u64()?).ok()?;
                Some((id, val))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Template {
            alpn_offered: v
                .get("alpn_offered")?
                .as_array()?
                .iter()
                .map(|s| s.as_text().map(str::to_owned))
                .collect::<Option<Vec<_>>>()?,
            alpn: text("alpn"),
            version: text("version"),
            cipher_suite: text("cipher"),
            group: text("group"),
            h2_settings: settings,
            h2_connection_window: v
                .get("h2_window")
                .and_then(Value::as_u64)
                .and_then(|w| u32::try_from(w).ok()),
        })
    }

    /// `TemplateID = SHA-256(det-CBOR(template))`.
    #[must_use]
    pub fn id(&self) -> [u8; 32] {
        betanet_crypto::hash::sha256(&cbor::encode(&self.to_cbor()).unwrap_or_default())
    }

    /// The differences between this template (the origin) and `got` (the HTX connection);
    /// empty when they match.
    #[must_use]
    pub fn check(&self, got: &Template) -> Vec<String> {
        let mut out = Vec::new();
        let mut exact = |what: &str, a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
            let (a, b) = (format!("{a:?}"), format!("{b:?}"));
            if a != b {
                out.push(format!("{what}: origin {a}, connection {b}"));
            }
        };
        exact("ALPN offered", &self.alpn_offered, &got.alpn_offered);
        exact("ALPN", &self.alpn, &got.alpn);
        exact("TLS version", &self.version, &got.version);
        exact("cipher suite", &self.cipher_suite, &got.cipher_suite);
        exact("key exchange group", &self.group, &got.group);
        let ids = |t: &Template| t.h2_settings.iter().map(|(i, _)| *i).collect::<Vec<_>>();
        if ids(self) != ids(got) {
            out.push(format!(
                "HTTP/2 SETTINGS ids: origin {:?}, connection {:?}",
                ids(self),
                ids(got)
            ));
        } else {
            for ((id, a), (_, b)) in self.h2_settings.iter().zip(&got.h2_settings) {
                if !within(*a, *b) {
                    out.push(format!(
                        "HTTP/2 SETTINGS 0x{id:x}: origin {a}, connection {b}"
                    ));
                }
            }
        }
        match (self.h2_connection_window, got.h2_connection_window) {
            (Some(a), Some(b)) if !within(a, b) => out.push(format!(
                "HTTP/2 connection window: origin {a}, connection {b}"
            )),
            (Some(_), None) | (None, Some(_)) => out.push(format!(
                "HTTP/2 connection window: origin {:?}, connection {:?}",
                self.h2_connection_window, got.h2_connection_window
            )),
            _ => {}
        }
        out
    }
}

fn within(a: u32, b: u32) -> bool {
    let (a, b) = (f64::from(a), f64::from(b));
    (a - b).abs() <= TOLERANCE * a.abs().max(b.abs())
}

// ---------------------------------------------------------------------------------------
// The server's first HTTP/2 frames, seen from the client.

/// The start of what an HTTP/2 server sent: its first SETTINGS and connection window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ServerPreface {
    /// The first frame's settings ordered by id (`None`: the first frame was not a valid
    /// SETTINGS frame).
    pub settings: Option<Vec<(u16, u32)>>,
    /// The increment of a stream-0 WINDOW_UPDATE right after it.
    pub window: Option<u32>,
}

/// Passes reads through and records the server's first SETTINGS frame and its first
/// connection WINDOW_UPDATE ([`parse_preface`]; at most ≈ 80 KiB buffered, once).
pub(crate) struct SettingsTap<T> {
    inner: T,
    buf: Vec<u8>,
    done: bool,
    out: Arc<Mutex<ServerPreface>>,
}

const MAX_SETTINGS_PAYLOAD: usize = 16 * 1024;

impl<T> SettingsTap<T> {
    pub(crate) fn new(inner: T) -> (Self, Arc<Mutex<ServerPreface>>) {
        let out = Arc::new(Mutex::new(ServerPreface::default()));
        (
            SettingsTap {
                inner,
                buf: Vec::new(),
                done: false,
                out: out.clone(),
            },
            out,
        )
    }

    fn observe(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        let Some(p) = parse_preface(&self.buf) else {
            if self.buf.len() > SCAN_LIMIT + 9 + MAX_SETTINGS_PAYLOAD {
                self.done = true; // not HTTP/2 as expected: stop looking
            }
            return;
        };
        if let Ok(mut o) = self.out.lock() {
            *o = p;
        }
        self.done = true;
        self.buf = Vec::new();
    }
}

/// The first SETTINGS frame of the server bytes `b` and the first connection WINDOW_UPDATE
/// the server sends before its first HEADERS frame, once that is decided (`None`: more bytes
/// needed). Frames are scanned up to 64 KiB. Never panics on any input.
pub fn parse_preface(b: &[u8]) -> Option<ServerPreface> {
    let header = |at: usize| -> Option<(usize, u8, u32)> {
        let h = b.get(at..at + 9)?;
        let len = u32::from_be_bytes([0, h[0], h[1], h[2]]) as usize;
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        Some((len, h[3], stream))
    };
    let (len, ty, _) = header(0)?;
    if ty != 0x4 || !len.is_multiple_of(6) || len > MAX_SETTINGS_PAYLOAD {
        return Some(ServerPreface::default());
    }
    let payload = b.get(9..9 + len)?;
    let mut settings: Vec<(u16, u32)> = payload
        .chunks_exact(6)
        .map(|c| {
            (
                u16::from_be_bytes([c[0], c[1]]),
                u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
            )
        })
        .collect();
    settings.sort_by_key(|(id, _)| *id);
    let done = |window| {
        Some(ServerPreface {
            settings: Some(settings.clone()),
            window,
        })
    };
    let mut at = 9 + len;
    while at < SCAN_LIMIT {
        let (len, ty, stream) = header(at)?;
        match (ty, stream) {
            (0x8, 0) if len == 4 => {
                let w = b.get(at + 9..at + 13)?;
                return done(Some(
                    u32::from_be_bytes([w[0], w[1], w[2], w[3]]) & 0x7fff_ffff,
                ));
            }
            (0x1, _) => return done(None), // HEADERS: the response has started
            _ => {}
        }
        // Skip the whole frame (it must be there before the next header is).
        b.get(at + 9..at + 9 + len)?;
        at += 9 + len;
    }
    done(None)
}

/// How far [`parse_preface`] looks for the connection WINDOW_UPDATE.
const SCAN_LIMIT: usize = 64 * 1024;

impl<T: AsyncRead + Unpin> AsyncRead for SettingsTap<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.inner).poll_read(cx, buf);
        if !this.done
            && let Some(new) = buf.filled().get(before..)
            && !new.is_empty()
        {
            let new = new.to_vec();
            this.observe(&new);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for SettingsTap<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
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

/// The negotiated TLS values of a session.
pub(crate) fn tls_part(
    alpn_offered: &[Vec<u8>],
    params: Option<crate::tls::TlsParams>,
    alpn: Option<Vec<u8>>,
) -> Template {
    let s = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let p = params.unwrap_or_default();
    Template {
        alpn_offered: alpn_offered.iter().map(|a| s(a)).collect(),
        alpn: alpn.as_deref().map(s),
        version: p.version,
        cipher_suite: p.cipher_suite,
        group: p.group,
        h2_settings: Vec::new(),
        h2_connection_window: None,
    }
}

/// Fills the HTTP/2 part of `t` from what a tap saw.
pub(crate) fn with_preface(mut t: Template, seen: &Arc<Mutex<ServerPreface>>) -> Template {
    if let Ok(p) = seen.lock() {
        t.h2_settings = p.settings.clone().unwrap_or_default();
        t.h2_connection_window = p.window;
    }
    t
}

// ---------------------------------------------------------------------------------------
// Fetching and caching templates.

/// Fetches `/robots.txt` from the front at `addr` like a visitor and returns the template.
pub async fn calibrate(
    addr: &str,
    tls: &TlsClient,
    timeout: Duration,
) -> Result<Template, NetError> {
    let run = async {
        let tcp = connect_tcp(addr, timeout).await?;
        let sess = tls.tls.connect(tcp, &tls.server_name).await?;
        let base = tls_part(&tls.tls.alpn_offered(), sess.params(), sess.alpn());
        let (tap, seen) = SettingsTap::new(sess);
        let (mut send, conn) = crate::tls::h2_client()
            .handshake::<_, Bytes>(tap)
            .await
            .map_err(|e| NetError::Carriage(e.to_string()))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let authority = crate::tls::authority(addr, &tls.server_name);
        let req = Request::builder()
            .method(Method::GET)
            .uri(format!("https://{authority}/robots.txt"))
            .header(http::header::USER_AGENT, CHROME_UA)
            .header(http::header::ACCEPT, "*/*")
            .body(())
            .map_err(|e| NetError::Carriage(e.to_string()))?;
        let (resp, _) = send
            .send_request(req, true)
            .map_err(|e| NetError::Carriage(e.to_string()))?;
        let resp = resp.await.map_err(|e| NetError::Carriage(e.to_string()))?;
        let mut body = resp.into_body();
        let mut total = 0usize;
        while total < (64 << 10) {
            match body.data().await {
                Some(Ok(b)) => {
                    total += b.len();
                    let _ = body.flow_control().release_capacity(b.len());
                }
                _ => break,
            }
        }
        driver.abort();
        Ok::<_, NetError>(with_preface(base, &seen))
    };
    tokio::time::timeout(timeout.max(TLS_TIMEOUT), run)
        .await
        .map_err(|_| NetError::Timeout {
            what: "origin calibration",
            secs: timeout.max(TLS_TIMEOUT).as_secs(),
        })?
}

/// Templates calibrated in this process: key → (unix time, template).
type MemoryCache = Mutex<std::collections::HashMap<[u8; 32], (u64, Template)>>;

fn memory() -> &'static MemoryCache {
    static M: std::sync::OnceLock<MemoryCache> = std::sync::OnceLock::new();
    M.get_or_init(|| Mutex::new(std::collections::HashMap::new()))
}

fn cache_key(addr: &str, server_name: &str) -> [u8; 32] {
    betanet_crypto::hash::sha256_concat(&[b"bn-fp", server_name.as_bytes(), b"|", addr.as_bytes()])
}

fn cache_file(dir: &Path, key: &[u8; 32]) -> PathBuf {
    dir.join(format!("{}.cbor", hex::encode(key)))
}

/// A cached template for the front, if younger than [`TEMPLATE_TTL`] at `now` (unix s).
pub fn cached(dir: Option<&Path>, addr: &str, server_name: &str, now: u64) -> Option<Template> {
    let key = cache_key(addr, server_name);
    let fresh = |t: u64| now.saturating_sub(t) < TEMPLATE_TTL.as_secs() && t <= now + 300;
    if let Some((t, tpl)) = memory().lock().ok()?.get(&key).cloned()
        && fresh(t)
    {
        return Some(tpl);
    }
    let bytes = std::fs::read(cache_file(dir?, &key)).ok()?;
    let v = cbor::decode(&bytes).ok()?;
    let t = v.get("t")?.as_u64()?;
    let tpl = Template::from_cbor(v.get("template")?)?;
    fresh(t).then_some(tpl)
}

/// Stores a template (in this process, and in `dir` when given).
pub fn store(
    dir: Option<&Path>,
    addr: &str,
    server_name: &str,
    now: u64,
    tpl: &Template,
) -> Result<(), NetError> {
    let key = cache_key(addr, server_name);
    if let Ok(mut m) = memory().lock() {
        if m.len() >= 1024 {
            m.clear();
        }
        m.insert(key, (now, tpl.clone()));
    }
    let Some(dir) = dir else { return Ok(()) };
    std::fs::create_dir_all(dir).map_err(|e| NetError::File {
        what: "cannot create the template cache",
        path: dir.display().to_string(),
        source: e,
    })?;
    let v = Value::map([("t", Value::Uint(now)), ("template", tpl.to_cbor())]);
    let bytes = cbor::encode(&v).map_err(|e| NetError::Config(e.to_string()))?;
    let path = cache_file(dir, &key);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| NetError::File {
            what: "cannot write the template cache",
            path: path.display().to_string(),
            source: e,
        })
}

/// The template for the front: cached, or calibrated now and cached.
pub async fn template_for(
    addr: &str,
    tls: &TlsClient,
    cal: &Calibration,
    timeout: Duration,
) -> Result<Template, NetError> {
    let now = now_unix();
    if let Some(t) = cached(cal.dir.as_deref(), addr, &tls.server_name, now) {
        return Ok(t);
    }
    let t = calibrate(addr, tls, timeout).await?;
    tracing::info!(front = %tls.server_name, template = %hex::encode(t.id()), "origin calibrated");
    if let Err(e) = store(cal.dir.as_deref(), addr, &tls.server_name, now, &t) {
        tracing::warn!(error = %e, "template not cached");
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Template {
        Template {
            alpn_offered: vec!["h2".into(), "http/1.1".into()],
            alpn: Some("h2".into()),
            version: Some("TLSv1_3".into()),
            cipher_suite: Some("TLS13_AES_128_GCM_SHA256".into()),
            group: Some("X25519MLKEM768".into()),
            h2_settings: vec![(1, 65_536), (3, 128), (4, 6_291_456), (6, 262_144)],
            h2_connection_window: Some(15_663_105),
        }
    }

    #[test]
    fn cbor_round_trip_and_id() {
        let t = sample();
        let v = t.to_cbor();
        let bytes = cbor::encode(&v).unwrap();
        let back = Template::from_cbor(&cbor::decode(&bytes).unwrap()).unwrap();
        assert_eq!(back, t);
        assert_eq!(back.id(), t.id());
        let mut u = t.clone();
        u.h2_settings[1].1 = 100;
        assert_ne!(u.id(), t.id());
    }

    #[test]
    fn checks_exact_fields_and_ten_percent_values() {
        let t = sample();
        assert!(t.check(&t).is_empty());
        let mut near = t.clone();
        near.h2_settings[2].1 = 6_291_456 * 105 / 100;
        assert!(t.check(&near).is_empty(), "{:?}", t.check(&near));
        let mut far = t.clone();
        far.h2_settings[2].1 = 6_291_456 * 2;
        far.alpn_offered.reverse();
        far.group = Some("X25519".into());
        let d = t.check(&far);
        assert_eq!(d.len(), 3, "{d:?}");
        let mut ids = t.clone();
        ids.h2_settings.pop();
        assert_eq!(t.check(&ids).len(), 1);
    }

    #[test]
    fn parses_the_server_preface_in_pieces() {
        let mut b = vec![0, 0, 12, 0x4, 0, 0, 0, 0, 0];
        b.extend_from_slice(&[0, 4, 0, 0x60, 0, 0, 0, 3, 0, 0, 0, 128]);
        b.extend_from_slice(&[0, 0, 4, 0x8, 0, 0, 0, 0, 0, 0, 0xef, 0, 1]);
        // Nothing is decided before the WINDOW_UPDATE is complete.
        for cut in 0..b.len() {
            assert!(parse_preface(&b[..cut]).is_none(), "cut {cut}");
        }
        let p = parse_preface(&b).unwrap();
        assert_eq!(p.settings.unwrap(), vec![(3, 128), (4, 0x0060_0000)]);
        assert_eq!(p.window, Some(0xef0001));
        // SETTINGS, a SETTINGS ack, then the window update: found across the ack.
        let mut c = b[..21].to_vec();
        c.extend_from_slice(&[0, 0, 0, 0x4, 1, 0, 0, 0, 0]);
        c.extend_from_slice(&b[21..]);
        assert!(parse_preface(&c[..c.len() - 1]).is_none());
        assert_eq!(parse_preface(&c).unwrap().window, Some(0xef0001));
        // SETTINGS, ack, then HEADERS: the server sent no window update first.
        let mut d = b[..21].to_vec();
        d.extend_from_slice(&[0, 0, 0, 0x4, 1, 0, 0, 0, 0]);
        d.extend_from_slice(&[0, 0, 1, 0x1, 4, 0, 0, 0, 1, 0x88]);
        let p = parse_preface(&d).unwrap();
        assert_eq!(p.window, None);
        assert_eq!(p.settings.unwrap().len(), 2);
        // Not SETTINGS first: recorded as nothing, never a panic.
        assert!(
            parse_preface(&[0, 0, 0, 0x1, 0, 0, 0, 0, 1])
                .unwrap()
                .settings
                .is_none()
        );
    }

    #[test]
    fn cache_in_a_dir_expires_after_a_day() {
        let dir = tempfile::tempdir().unwrap();
        let t = sample();
        let now = 1_700_000_000;
        store(Some(dir.path()), "10.0.0.1:443", "front.example", now, &t).unwrap();
        memory().lock().unwrap().clear();
        assert_eq!(
            cached(
                Some(dir.path()),
                "10.0.0.1:443",
                "front.example",
                now + 3600
            ),
            Some(t.clone())
        );
        memory().lock().unwrap().clear();
        assert_eq!(
            cached(
                Some(dir.path()),
                "10.0.0.1:443",
                "front.example",
                now + 86_400
            ),
            None
        );
        assert_eq!(
            cached(Some(dir.path()), "10.0.0.1:443", "other.example", now + 1),
            None
        );
    }
}
