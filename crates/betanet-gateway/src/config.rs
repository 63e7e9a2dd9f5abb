//! `GatewayConfig`: the TOML configuration (see `gateway.example.toml` in the crate).
//!
//! Unknown keys are rejected (`deny_unknown_fields`), and [`GatewayConfig::validate`] names the
//! offending key and the fix for every semantic error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::GatewayError;

/// The whole gateway configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the HTTP(S) front listens on, e.g. `"0.0.0.0:443"`.
    pub listen: SocketAddr,
    /// Optional address for the Prometheus `/metrics` endpoint (plain HTTP).
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Forward the request path and query to the site (`true`), or always `upstream_path`.
    #[serde(default = "default_true")]
    pub forward_path: bool,
    /// The BAR `u` used when `forward_path = false`.
    #[serde(default = "default_root")]
    pub upstream_path: String,
    /// Require a voucher on every admitted request (403 otherwise).
    #[serde(default)]
    pub require_voucher: bool,
    /// The request header carrying the voucher (hex or unpadded Base64URL).
    #[serde(default = "default_voucher_header")]
    pub voucher_header: String,
    /// TLS (optional; absent = plain HTTP).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// The decoy everyone who is not admitted sees.
    pub decoy: DecoyConfig,
    /// The site server admitted requests go to.
    pub site: SiteConfig,
    /// Access-ticket admission.
    pub ticket: TicketConfig,
    /// Vouchers (L6).
    #[serde(default)]
    pub voucher: VoucherConfig,
    /// Connection and request limits.
    #[serde(default)]
    pub limits: LimitsConfig,
}

fn default_true() -> bool {
    true
}
fn default_root() -> String {
    "/".to_owned()
}
fn default_voucher_header() -> String {
    "x-betanet-voucher".to_owned()
}

/// TLS certificate and key (PEM files).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Certificate chain, PEM.
    pub cert_pem: PathBuf,
    /// Private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key_pem: PathBuf,
}

/// Exactly one of `origin` or `static_dir`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecoyConfig {
    /// A decoy origin (`host:port`, plain HTTP): every connection that is not admitted is
    /// relayed to it byte for byte.
    #[serde(default)]
    pub origin: Option<SocketAddr>,
    /// A directory served as a static site to everyone not admitted.
    #[serde(default)]
    pub static_dir: Option<PathBuf>,
}

/// The site server (BAR over a byte stream).
///
/// With `public_key` set the gateway reaches the site over HTX (`betanet serve`), on
/// `pool_size` multiplexed connections; without it, over BAR/TCP (`betanet serve
/// --bar-listen`, development only).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Address of the site server (its HTX listener, or its BAR/TCP listener).
    pub addr: SocketAddr,
    /// The site's Ed25519 public key (64 hex digits, printed by `betanet serve`): selects HTX.
    #[serde(default)]
    pub public_key: Option<String>,
    /// HTX carriage towards the site: `tcp12` (default) or `tcp11`.
    #[serde(default = "default_site_transport")]
    pub transport: String,
    /// HTX connections kept to the site (streams are multiplexed on them).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Connect timeout, ms.
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time allowed until the site's response head arrives, ms.
    #[serde(default = "default_response_ms")]
    pub response_timeout_ms: u64,
    /// Health-check interval, ms.
    #[serde(default = "default_health_ms")]
    pub health_interval_ms: u64,
}

fn default_site_transport() -> String {
    "tcp12".to_owned()
}
fn default_pool_size() -> usize {
    2
}

fn default_connect_ms() -> u64 {
    1000
}
fn default_response_ms() -> u64 {
    30_000
}
fn default_health_ms() -> u64 {
    1000
}

/// Ticket admission.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// The site's ticket X25519 secret key, 64 hex chars (`betanet ticket-keygen`).
    pub secret_hex: String,
    /// The ticket key id, 16 hex chars.
    pub key_id_hex: String,
    /// Replay database (redb). Absent: in-memory replay set (lost on restart — dev only).
    #[serde(default)]
    pub replay_db: Option<PathBuf>,
    /// Token-bucket burst per IPv4 /24 or IPv6 /56.
    #[serde(default = "default_burst")]
    pub per_prefix_burst: u32,
    /// Token-bucket refill per second per prefix.
    #[serde(default = "default_refill")]
    pub per_prefix_per_sec: u32,
    /// `"immediate"` (default): every admission is an fsynced commit (~3 ms, run on the
    /// blocking pool), so no admitted ticket can be replayed after a crash. `"batched"`:
    /// committed without fsync and made durable every second (~15x the admission rate; a
    /// crash can forget up to ~1 s of admissions).
    #[serde(default)]
    pub replay_durability: ReplayFsync,
}

/// Replay-store durability.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ReplayFsync {
    /// fsync per admission.
    #[default]
    Immediate,
    /// fsync once a second.
    Batched,
}

fn default_burst() -> u32 {
    64
}
fn default_refill() -> u32 {
    8
}

/// Voucher settings.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoucherConfig {
    /// Known mint keysets.
    #[serde(default)]
    pub keysets: Vec<KeysetConfig>,
    /// Spent-voucher database (redb). Absent: the replay database when set, else memory.
    #[serde(default)]
    pub spent_db: Option<PathBuf>,
}

/// One known keyset.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeysetConfig {
    /// Keyset id, 64 hex chars.
    pub id_hex: String,
    /// Group Ed25519 public key, 64 hex chars.
    pub group_pub_hex: String,
}

/// Limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time for a client to send a complete request head (slowloris guard), ms.
    #[serde(default = "default_header_ms")]
    pub header_timeout_ms: u64,
    /// Longest pause allowed between request-body chunks, ms.
    #[serde(default = "default_body_ms")]
    pub body_timeout_ms: u64,
    /// Largest request head, bytes.
    #[serde(default = "default_header_bytes")]
    pub max_header_bytes: usize,
    /// Most simultaneous client connections.
    #[serde(default = "default_max_conns")]
    pub max_connections: usize,
    /// Largest form body read before admission (body carrier), bytes.
    #[serde(default = "default_form_bytes")]
    pub max_form_body_bytes: usize,
}

fn default_header_ms() -> u64 {
    10_000
}
fn default_body_ms() -> u64 {
    30_000
}
fn default_header_bytes() -> usize {
    16 * 1024
}
fn default_max_conns() -> usize {
    8192
}
fn default_form_bytes() -> usize {
    4096
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_timeout_ms: default_header_ms(),
            body_timeout_ms: default_body_ms(),
            max_header_bytes: default_header_bytes(),
            max_connections: default_max_conns(),
            max_form_body_bytes: default_form_bytes(),
        }
    }
}

impl LimitsConfig {
    /// Header timeout.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    /// Body timeout.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
}

pub(crate) fn hex_array<const N: usize>(
    key: &'static str,
    text: &str,
    fix: &'static str,
) -> Result<[u8; N], GatewayError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| GatewayError::config(key, format!("not hex ({e})"), fix))?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        GatewayError::config(
            key,
            format!("expected {} hex chars, got {}", 2 * N, text.trim().len()),
            fix,
        )
    })
}

impl GatewayConfig {
    /// Parses TOML text and validates it.
    pub fn from_toml(text: &str) -> Result<Self, GatewayError> {
        let c: GatewayConfig = toml::from_str(text)?;
        c.validate()?;
        Ok(c)
    }

    /// Reads and parses a config file.
    pub fn load(path: &std::path::Path) -> Result<Self, GatewayError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| GatewayError::io(format!("reading {}", path.display()), e))?;
        Self::from_toml(&text)
    }

    /// Semantic checks; every error names the key and the fix.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if let Some(pk) = &self.site.public_key {
            hex_array::<32>(
                "site.public_key",
                pk,
                "use the `public key` line that `betanet serve` prints (64 hex digits)",
            )?;
        }
        if !matches!(self.site.transport.as_str(), "tcp12" | "tcp11") {
            return Err(GatewayError::config(
                "site.transport",
                format!("unknown HTX carriage {:?}", self.site.transport),
                "use \"tcp12\" (default) or \"tcp11\"",
            ));
        }
        if self.site.pool_size == 0 || self.site.pool_size > 64 {
            return Err(GatewayError::config(
                "site.pool_size",
                "must be between 1 and 64",
                "2 connections are plenty: streams are multiplexed",
            ));
        }
        match (&self.decoy.origin, &self.decoy.static_dir) {
            (Some(_), Some(_)) | (None, None) => {
                return Err(GatewayError::config(
                    "decoy",
                    "exactly one of `decoy.origin` and `decoy.static_dir` must be set",
                    "set `origin = \"host:port\"` (reverse proxy) or `static_dir = \"path\"`",
                ));
            }
            _ => {}
        }
        hex_array::<32>(
            "ticket.secret_hex",
            &self.ticket.secret_hex,
            "run `betanet ticket-keygen` and paste `secret_hex`",
        )?;
        hex_array::<8>(
            "ticket.key_id_hex",
            &self.ticket.key_id_hex,
            "run `betanet ticket-keygen` and paste `key_id_hex`",
        )?;
        if self.ticket.per_prefix_burst == 0 || self.ticket.per_prefix_per_sec == 0 {
            return Err(GatewayError::config(
                "ticket.per_prefix_burst / ticket.per_prefix_per_sec",
                "must be at least 1",
                "use e.g. burst 64, 8 per second",
            ));
        }
        for k in &self.voucher.keysets {
            hex_array::<32>(
                "voucher.keysets.id_hex",
                &k.id_hex,
                "the keyset id is 32 bytes (64 hex chars)",
            )?;
            hex_array::<32>(
                "voucher.keysets.group_pub_hex",
                &k.group_pub_hex,
                "the group key is an Ed25519 public key (64 hex chars)",
            )?;
        }
        if self.require_voucher && self.voucher.keysets.is_empty() {
            return Err(GatewayError::config(
                "voucher.keysets",
                "require_voucher = true but no keyset is configured",
                "add a [[voucher.keysets]] entry or set require_voucher = false",
            ));
        }
        if http::HeaderName::from_bytes(self.voucher_header.as_bytes()).is_err() {
            return Err(GatewayError::config(
                "voucher_header",
                format!("`{}` is not a valid header name", self.voucher_header),
                "use a token such as `x-betanet-voucher`",
            ));
        }
        if !self.upstream_path.starts_with('/') {
            return Err(GatewayError::config(
                "upstream_path",
                "must start with `/`",
                "e.g. upstream_path = \"/\"",
            ));
        }
        let l = &self.limits;
        if l.max_header_bytes < 1024 || l.max_header_bytes > 1 << 20 {
            return Err(GatewayError::config(
                "limits.max_header_bytes",
                format!("{} is outside 1024..=1048576", l.max_header_bytes),
                "use e.g. 16384",
            ));
        }
        if l.max_connections == 0 || l.header_timeout_ms == 0 || l.body_timeout_ms == 0 {
            return Err(GatewayError::config(
                "limits",
                "max_connections, header_timeout_ms and body_timeout_ms must be > 0",
                "use the defaults (8192, 10000, 30000)",
            ));
        }
        if l.max_form_body_bytes > betanet_ticket::carrier::MAX_FORM_LEN {
            return Err(GatewayError::config(
                "limits.max_form_body_bytes",
                format!("larger than {}", betanet_ticket::carrier::MAX_FORM_LEN),
                "use 4096",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses() {
        let c = GatewayConfig::from_toml(include_str!("../gateway.example.toml")).unwrap();
        assert!(c.forward_path);
        assert_eq!(c.limits.max_header_bytes, 16384);
    }

    #[test]
    fn errors_name_the_key() {
        let base = include_str!("../gateway.example.toml");
        let bad = base.replace("key_id_hex = \"0011223344556677\"", "key_id_hex = \"00\"");
        let e = GatewayConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("ticket.key_id_hex"), "{e}");
        let bad = base.replace("# static_dir = \"/var/www/decoy\"", "static_dir = \"/x\"");
        let e = GatewayConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("decoy"), "{e}");
        let bad = base.replace("forward_path = true", "forward_pth = true");
        let e = GatewayConfig::from_toml(&bad).unwrap_err().to_string();
        assert!(e.contains("forward_pth"), "{e}");
    }
}
