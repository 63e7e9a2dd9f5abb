//! # betanet-proxy
//!
//! The client side of Betanet (DESIGN flow 2): a local proxy on loopback that applications
//! (curl, browsers) use to reach Betanet sites over the cover transport. One listener speaks
//! both **SOCKS5** (RFC 1928, no-auth, CONNECT with domain or IP targets) and **HTTP
//! proxying** (absolute-form requests and `CONNECT host:port`), told apart by the first byte.
//!
//! * [`config`]: the TOML [`ProxyConfig`]: the listen address, limits and the `[[site]]`
//!   table (host name, HTX address, the site's Ed25519 key, `tcp12` or `tls` carriage).
//! * [`socks`]: sans-IO SOCKS5 parsing and protocol detection.
//! * [`connector`]: one pooled, multiplexed HTX connector per site (the gateway's
//!   `HtxConnector` for `tcp12`, a TLS-carriage equivalent for `tls`).
//! * [`hidden`]: hidden services through the mixnet (`<service id>.betanet`, `[mix]`
//!   table): descriptor lookup in the mixnet's directories, one rendezvous session per id,
//!   each BAR exchange carried as one `HsSession::fetch`.
//! * [`server`]: [`Proxy`]: every HTTP request (absolute-form, or HTTP/1.1 inside a SOCKS5 /
//!   CONNECT tunnel, served with hyper) becomes one BAR exchange on a fresh HTX stream
//!   (`betanet_gateway::barmap`), bodies streamed both ways.
//!
//! What it is **not**: there is no clearnet exit — hosts that are not configured sites are
//! refused (SOCKS5 reply 0x02, HTTP 502 with a plain explanation); it is not a TLS
//! man-in-the-middle (tunnels to port 443 and tunnels that start with TLS are refused). Mix
//! hops are used only for hidden services; configured HTX sites are dialed directly.

pub mod config;
pub mod connector;
mod error;
pub mod hidden;
pub mod server;
pub mod socks;

pub use config::{HsAliasConfig, MixSettings, ProxyConfig, SiteConfig};
pub use error::ProxyError;
pub use server::Proxy;
