//! The TOML configuration ([`ProxyConfig`]) and the site table built from it.

use std::net::SocketAddr;
use std::time::Duration;

use betanet_crypto::identity::PeerId;
use betanet_crypto::sign::VerifyingKey;
use betanet_net::Transport;
use serde::Deserialize;

use crate::ProxyError;

/// The whole proxy configuration.
///
/// ```toml
/// listen = "127.0.0.1:8118"
///
/// [[site]]
/// host = "demo.bn"
/// addr = "127.0.0.1:7443"
/// public_key = "<64 hex: the site's Ed25519 key, printed by `betanet serve`>"
/// transport = "tcp12"
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    /// Where applications connect (SOCKS5 and HTTP proxy on the same port). Keep it on
    /// loopback: the proxy has no authentication.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Concurrent client connections; later ones wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send its SOCKS messages or a complete HTTP request head.
    #[serde(default = "default_header_timeout")]
    pub header_timeout_secs: u64,
    /// Seconds to open a stream to a site (dial + handshake included).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Seconds from the end of the request head until the site's response head.
    #[serde(default = "default_response_timeout")]
    pub response_timeout_secs: u64,
    /// Longest pause, in seconds, between request-body chunks from the application.
    #[serde(default = "default_body_timeout")]
    pub body_timeout_secs: u64,
    /// HTX connections kept per site (each carries many streams).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Use the classic (non-hybrid) inner handshake; only for sites that cannot do hybrid.
    #[serde(default)]
    pub classic_handshake: bool,
    /// The Betanet sites this proxy can reach.
    #[serde(default, rename = "site")]
    pub sites: Vec<SiteConfig>,
    /// The mixnet, for hidden services (`<64 hex service id>.betanet` and `[[mix.alias]]`
    /// names); absent = no hidden services.
    #[serde(default)]
    pub mix: Option<MixSettings>,
}

/// The `[mix]` table: how the proxy reaches hidden services through the mixnet.
///
/// ```toml
/// [mix]
/// seeds = ["127.0.0.1:9000"]          # mixnodes asked for their signed descriptors
/// lookup_timeout_secs = 15            # descriptor lookup, and again for the rendezvous join
/// fetch_timeout_secs = 25             # one request/response through the rendezvous
///
/// [[mix.alias]]                       # optional friendly names
/// host = "hidden.bn"
/// service = "<64 hex service id>"
/// ```
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MixSettings {
    /// Mixnode addresses (their length-prefixed TCP ingress) to discover the node set from.
    pub seeds: Vec<SocketAddr>,
    /// Where mix replies arrive (default `127.0.0.1:0`; mixnodes must reach it).
    #[serde(default = "default_reply_listen")]
    pub reply_listen: SocketAddr,
    /// Seconds for a descriptor lookup (and, separately, for joining the rendezvous).
    #[serde(default = "default_lookup_timeout")]
    pub lookup_timeout_secs: u64,
    /// Seconds for one request/response exchange through the rendezvous.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_secs: u64,
    /// Friendly host names for hidden services.
    #[serde(default, rename = "alias")]
    pub aliases: Vec<HsAliasConfig>,
}

impl MixSettings {
    /// Settings with `seeds` and default timeouts, no aliases.
    pub fn new(seeds: Vec<SocketAddr>) -> Self {
        MixSettings {
            seeds,
            reply_listen: default_reply_listen(),
            lookup_timeout_secs: default_lookup_timeout(),
            fetch_timeout_secs: default_fetch_timeout(),
            aliases: Vec::new(),
        }
    }
}

/// One `[[mix.alias]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HsAliasConfig {
    /// Host name applications use.
    pub host: String,
    /// The hidden service's id (64 hex digits, as in `betanet://<id>`).
    pub service: String,
}

/// If `host` is `<64 lowercase-able hex>.betanet`, the service id it names.
pub fn hidden_service_id(host: &str) -> Option<[u8; 32]> {
    let h = normalize_host(host);
    let label = h.strip_suffix(".betanet")?;
    if label.len() != 64 {
        return None;
    }
    let mut id = [0u8; 32];
    hex::decode_to_slice(label, &mut id).ok()?;
    Some(id)
}

/// One `[[site]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// The host name applications use (e.g. `demo.bn`). The site is also reachable as
    /// `<PeerID hex>.betanet` and `<SHA-256(key) hex>.betanet`.
    pub host: String,
    /// `host:port` of the site's HTX listener (or its front, for `tls`).
    pub addr: String,
    /// The site's Ed25519 public key (64 hex digits), proven in the inner handshake.
    pub public_key: String,
    /// `tcp12` (default) or `tls`.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// `tls`: SNI / `:authority` (default `localhost`).
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// `tls`: SHA-256 of the front's certificate (64 hex; `betanet serve` prints it as
    /// `cert pin`).
    #[serde(default)]
    pub tls_cert_sha256: Option<String>,
    /// `tls`: path of the HTX POST (default `betanet_net::tls::DEFAULT_PATH`).
    #[serde(default)]
    pub tls_path: Option<String>,
    /// `tls`: the site's ticket key, `ticketPub ‖ keyID` as 80 hex digits (`betanet serve`
    /// prints it as `ticket key`); the access ticket goes in the first POST.
    #[serde(default)]
    pub ticket_key: Option<String>,
}

impl SiteConfig {
    /// A `tcp12` site from the command-line form `HOST=ADDR=PUBLIC_KEY_HEX`
    /// (e.g. `demo.bn=127.0.0.1:7443=3b6a…`).
    pub fn parse_flag(flag: &str) -> Result<Self, ProxyError> {
        let mut parts = flag.splitn(3, '=');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(host), Some(addr), Some(key)) if !host.is_empty() && !addr.is_empty() => {
                Ok(SiteConfig {
                    host: host.to_owned(),
                    addr: addr.to_owned(),
                    public_key: key.to_owned(),
                    transport: default_transport(),
                    tls_server_name: None,
                    tls_cert_sha256: None,
                    tls_path: None,
                    ticket_key: None,
                })
            }
            _ => Err(ProxyError::config(
                "--site",
                format!(
                    "{flag:?} must be HOST=ADDR=PUBLIC_KEY_HEX, e.g. demo.bn=127.0.0.1:7443=<64 hex>"
                ),
            )),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8118))
}
fn default_max_connections() -> usize {
    256
}
fn default_header_timeout() -> u64 {
    10
}
fn default_connect_timeout() -> u64 {
    10
}
fn default_response_timeout() -> u64 {
    30
}
fn default_body_timeout() -> u64 {
    30
}
fn default_pool_size() -> usize {
    2
}
fn default_reply_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}
fn default_lookup_timeout() -> u64 {
    15
}
fn default_fetch_timeout() -> u64 {
    25
}
fn default_transport() -> String {
    "tcp12".to_owned()
}

/// The validated TLS carriage settings of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// SNI / `:authority`.
    pub server_name: String,
    /// Pinned certificate hash.
    pub cert_sha256: [u8; 32],
    /// Path of the HTX POST.
    pub path: String,
    /// `ticketPub`.
    pub ticket_public: [u8; 32],
    /// `ticketKeyID`.
    pub ticket_key_id: [u8; 8],
}

/// A validated site entry.
#[derive(Clone, Debug)]
pub struct Site {
    /// Lowercase host name without a trailing dot.
    pub host: String,
    /// Dial address.
    pub addr: String,
    /// The site's key.
    pub public_key: VerifyingKey,
    /// Its PeerID.
    pub peer_id: PeerId,
    /// The carriage.
    pub transport: Transport,
    /// TLS settings when `transport` is `tls`.
    pub tls: Option<TlsSettings>,
}

fn hex_array<const N: usize>(key: &str, value: &str, what: &str) -> Result<[u8; N], ProxyError> {
    let mut out = [0u8; N];
    hex::decode_to_slice(value.trim(), &mut out)
        .map_err(|_| ProxyError::config(key, format!("must be {} hex digits ({what})", N * 2)))?;
    Ok(out)
}

/// Lowercases `host`, drops a trailing dot and a `:port`/brackets it may carry.
pub fn normalize_host(host: &str) -> String {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or(h)
    } else {
        h
    };
    h.trim_end_matches('.').to_ascii_lowercase()
}

impl ProxyConfig {
    /// Parses and validates a TOML document.
    pub fn from_toml_str(text: &str) -> Result<Self, ProxyError> {
        let cfg: ProxyConfig = toml::from_str(text).map_err(|e| ProxyError::Toml(e.to_string()))?;
        cfg.sites()?;
        cfg.check_limits()?;
        Ok(cfg)
    }

    /// A config with defaults and no sites (for building one in code).
    pub fn new(listen: SocketAddr) -> Self {
        ProxyConfig {
            listen,
            max_connections: default_max_connections(),
            header_timeout_secs: default_header_timeout(),
            connect_timeout_secs: default_connect_timeout(),
            response_timeout_secs: default_response_timeout(),
            body_timeout_secs: default_body_timeout(),
            pool_size: default_pool_size(),
            classic_handshake: false,
            sites: Vec::new(),
            mix: None,
        }
    }

    pub(crate) fn check_limits(&self) -> Result<(), ProxyError> {
        for (key, v) in [
            ("max_connections", self.max_connections as u64),
            ("header_timeout_secs", self.header_timeout_secs),
            ("connect_timeout_secs", self.connect_timeout_secs),
            ("response_timeout_secs", self.response_timeout_secs),
            ("body_timeout_secs", self.body_timeout_secs),
            ("pool_size", self.pool_size as u64),
        ] {
            if v == 0 {
                return Err(ProxyError::config(key, "must be at least 1"));
            }
        }
        self.hidden_aliases()?;
        Ok(())
    }

    /// Validates the `[mix]` table; returns the aliases as `(host, service id)`.
    pub fn hidden_aliases(&self) -> Result<Vec<(String, [u8; 32])>, ProxyError> {
        let Some(m) = &self.mix else {
            return Ok(Vec::new());
        };
        if m.seeds.is_empty() {
            return Err(ProxyError::config(
                "mix.seeds",
                "must list at least one mixnode address, e.g. [\"127.0.0.1:9000\"]",
            ));
        }
        for (key, v) in [
            ("mix.lookup_timeout_secs", m.lookup_timeout_secs),
            ("mix.fetch_timeout_secs", m.fetch_timeout_secs),
        ] {
            if v == 0 {
                return Err(ProxyError::config(key, "must be at least 1"));
            }
        }
        if m.fetch_timeout_secs >= self.response_timeout_secs {
            return Err(ProxyError::config(
                "mix.fetch_timeout_secs",
                format!(
                    "must be below response_timeout_secs ({}) so a slow hidden service gets a \
                     504 rather than a cut exchange",
                    self.response_timeout_secs
                ),
            ));
        }
        let mut out: Vec<(String, [u8; 32])> = Vec::with_capacity(m.aliases.len());
        for (i, a) in m.aliases.iter().enumerate() {
            let host = normalize_host(&a.host);
            if !crate::socks::valid_host(&host) || out.iter().any(|(h, _)| *h == host) {
                return Err(ProxyError::config(
                    format!("mix.alias[{i}].host"),
                    "must be a host name such as \"hidden.bn\", listed once",
                ));
            }
            let id: [u8; 32] = hex_array(
                &format!("mix.alias[{i}].service"),
                a.service.strip_prefix("betanet://").unwrap_or(&a.service),
                "the hidden service id, as in betanet://<id>",
            )?;
            out.push((host, id));
        }
        Ok(out)
    }

    /// Header timeout as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// Validates every `[[site]]` entry.
    pub fn sites(&self) -> Result<Vec<Site>, ProxyError> {
        let mut out: Vec<Site> = Vec::with_capacity(self.sites.len());
        for (i, s) in self.sites.iter().enumerate() {
            let k = |f: &str| format!("site[{i}].{f}");
            let host = normalize_host(&s.host);
            if !crate::socks::valid_host(&host) {
                return Err(ProxyError::config(
                    k("host"),
                    "must be a host name such as \"demo.bn\"",
                ));
            }
            if out.iter().any(|o| o.host == host) {
                return Err(ProxyError::config(
                    k("host"),
                    format!("{host:?} is configured twice; remove one entry"),
                ));
            }
            if s.addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none()
            {
                return Err(ProxyError::config(
                    k("addr"),
                    "must be host:port, e.g. \"127.0.0.1:7443\"",
                ));
            }
            let pk: [u8; 32] = hex_array(
                &k("public_key"),
                &s.public_key,
                "the site's Ed25519 key, printed by `betanet serve` as `public key`",
            )?;
            let public_key = VerifyingKey::from_bytes(&pk).map_err(|_| {
                ProxyError::config(k("public_key"), "is not a valid Ed25519 public key")
            })?;
            let transport: Transport = match s.transport.as_str() {
                "tcp12" => Transport::Tcp12,
                "tls" => Transport::Tls,
                "quic" => Transport::Quic,
                "auto" => Transport::QuicThenTls,
                other => {
                    return Err(ProxyError::config(
                        k("transport"),
                        format!(
                            "{other:?} is not supported: use \"tcp12\", \"tls\", \"quic\" or \"auto\" \
                             (QUIC, then TLS)"
                        ),
                    ));
                }
            };
            let tls = if transport.uses_tls() {
                let pin = s.tls_cert_sha256.as_deref().ok_or_else(|| {
                    ProxyError::config(
                        k("tls_cert_sha256"),
                        "is required for transports \"tls\", \"quic\" and \"auto\": the front's certificate SHA-256 \
                         (`betanet serve` prints it as `cert pin`)",
                    )
                })?;
                let ticket = s.ticket_key.as_deref().ok_or_else(|| {
                    ProxyError::config(
                        k("ticket_key"),
                        "is required for transports \"tls\", \"quic\" and \"auto\": ticketPub ‖ keyID as 80 hex \
                         digits (`betanet serve` prints it as `ticket key`)",
                    )
                })?;
                let t: [u8; 40] = hex_array(&k("ticket_key"), ticket, "ticketPub ‖ keyID")?;
                let mut ticket_public = [0u8; 32];
                let mut ticket_key_id = [0u8; 8];
                ticket_public.copy_from_slice(t.get(..32).unwrap_or(&[0; 32]));
                ticket_key_id.copy_from_slice(t.get(32..).unwrap_or(&[0; 8]));
                Some(TlsSettings {
                    server_name: s
                        .tls_server_name
                        .clone()
                        .unwrap_or_else(|| "localhost".to_owned()),
                    cert_sha256: hex_array(&k("tls_cert_sha256"), pin, "certificate SHA-256")?,
                    path: s
                        .tls_path
                        .clone()
                        .unwrap_or_else(|| betanet_net::tls::DEFAULT_PATH.to_owned()),
                    ticket_public,
                    ticket_key_id,
                })
            } else {
                for (f, v) in [
                    ("tls_server_name", &s.tls_server_name),
                    ("tls_cert_sha256", &s.tls_cert_sha256),
                    ("tls_path", &s.tls_path),
                    ("ticket_key", &s.ticket_key),
                ] {
                    if v.is_some() {
                        return Err(ProxyError::config(
                            k(f),
                            "only applies to transport \"tls\"; remove it or set transport = \"tls\"",
                        ));
                    }
                }
                None
            };
            out.push(Site {
                host,
                addr: s.addr.clone(),
                peer_id: PeerId::from_ed25519(&public_key),
                public_key,
                transport,
                tls,
            });
        }
        Ok(out)
    }
}

/// Finds the site for `host`: by its configured name, or by `<PeerID hex>.betanet` /
/// `<SHA-256(key) hex>.betanet`.
pub fn find_site<'a>(sites: &'a [Site], host: &str) -> Option<&'a Site> {
    let h = normalize_host(host);
    if let Some(s) = sites.iter().find(|s| s.host == h) {
        return Some(s);
    }
    let label = h.strip_suffix(".betanet")?;
    sites.iter().find(|s| {
        (label.len() == 64 && label == hex::encode(s.peer_id.digest()))
            || (label.len() == 68 && label == s.peer_id.to_hex())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn parses_and_finds_sites() {
        let cfg = ProxyConfig::from_toml_str(&format!(
            "listen = \"127.0.0.1:0\"\n[[site]]\nhost = \"Demo.BN.\"\naddr = \"127.0.0.1:7443\"\npublic_key = \"{KEY}\"\n"
        ))
        .unwrap();
        let sites = cfg.sites().unwrap();
        assert_eq!(sites.len(), 1);
        assert_eq!(sites[0].host, "demo.bn");
        assert_eq!(sites[0].transport, Transport::Tcp12);
        assert!(find_site(&sites, "demo.bn").is_some());
        assert!(find_site(&sites, "DEMO.bn:80").is_some());
        assert!(find_site(&sites, "other.bn").is_none());
        let digest = hex::encode(sites[0].peer_id.digest());
        assert!(find_site(&sites, &format!("{digest}.betanet")).is_some());
        assert!(find_site(&sites, &format!("{}.betanet", sites[0].peer_id)).is_some());
        assert!(find_site(&sites, &format!("{}.betanet", "0".repeat(64))).is_none());
    }

    #[test]
    fn site_flag() {
        let s = SiteConfig::parse_flag(&format!("demo.bn=127.0.0.1:7443={KEY}")).unwrap();
        assert_eq!(
            (s.host.as_str(), s.addr.as_str()),
            ("demo.bn", "127.0.0.1:7443")
        );
        assert_eq!(s.public_key, KEY);
        let mut cfg = ProxyConfig::new(default_listen());
        cfg.sites.push(s);
        assert_eq!(cfg.sites().unwrap()[0].transport, Transport::Tcp12);
        let e = SiteConfig::parse_flag("demo.bn=127.0.0.1:7443").unwrap_err();
        assert!(e.to_string().contains("`--site`"), "{e}");
    }

    fn err(text: &str) -> String {
        ProxyConfig::from_toml_str(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key() {
        assert!(err("lsten = \"x\"").contains("unknown field `lsten`"));
        assert!(err("max_connections = 0").contains("`max_connections`"));
        let e = err("[[site]]\nhost = \"a.bn\"\naddr = \"x\"\npublic_key = \"00\"\n");
        assert!(e.contains("site[0].addr"), "{e}");
        let e = err("[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"00\"\n");
        assert!(
            e.contains("site[0].public_key") && e.contains("64 hex"),
            "{e}"
        );
        let e = err(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\ntransport = \"tls\"\n"
        ));
        assert!(e.contains("site[0].tls_cert_sha256"), "{e}");
        let e = err(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\ntransport = \"quic\"\n"
        ));
        assert!(e.contains("site[0].tls_cert_sha256"), "{e}");
        let e = err(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\ntransport = \"h3\"\n"
        ));
        assert!(e.contains("site[0].transport"), "{e}");
        let e = err(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\nticket_key = \"00\"\n"
        ));
        assert!(
            e.contains("site[0].ticket_key") && e.contains("only applies"),
            "{e}"
        );
        let e = err(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\n[[site]]\nhost = \"A.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\n"
        ));
        assert!(e.contains("site[1].host") && e.contains("twice"), "{e}");
    }

    #[test]
    fn tls_site() {
        let pin = "ab".repeat(32);
        let tk = "cd".repeat(40);
        let cfg = ProxyConfig::from_toml_str(&format!(
            "[[site]]\nhost = \"a.bn\"\naddr = \"x:1\"\npublic_key = \"{KEY}\"\ntransport = \"tls\"\ntls_cert_sha256 = \"{pin}\"\nticket_key = \"{tk}\"\n"
        ))
        .unwrap();
        let t = cfg.sites().unwrap()[0].tls.clone().unwrap();
        assert_eq!(t.cert_sha256, [0xab; 32]);
        assert_eq!(t.ticket_public, [0xcd; 32]);
        assert_eq!(t.ticket_key_id, [0xcd; 8]);
        assert_eq!(t.server_name, "localhost");
        assert_eq!(t.path, betanet_net::tls::DEFAULT_PATH);
    }
}
