//! # betanet-gateway
//!
//! The HTTP(S) front of a Betanet site (SPEC §4.1 active-probing resistance, §4.2 access
//! tickets, §9 vouchers, §10 BAR): everyone who is not admitted gets **exactly the decoy's
//! answer**; admitted requests are mapped to BAR and forwarded to the site server over a
//! pluggable byte-stream upstream, with status, headers and streaming bodies preserved both
//! ways.
//!
//! * [`server`]: accept loop (plain or rustls TLS, HTTP/1.1 and HTTP/2 via hyper-util's auto
//!   builder), per-connection admission on the first request head, decoy relay, voucher check,
//!   limits (header/body timeouts, head size, connection count).
//! * [`decoy`]: the decoy — a raw byte relay to a decoy origin (so the origin's own server
//!   answers every probe, byte for byte) or a static directory.
//! * [`barmap`]: HTTP ↔ BAR mapping and the streaming exchange.
//! * [`upstream`]: the [`SiteConnector`] trait, [`TcpBarConnector`] (BAR over TCP, for
//!   development) and the health/reconnect layer [`Upstream`].
//! * [`htx`]: [`HtxConnector`], the production upstream: one HTX stream per request on a
//!   small pool of authenticated `betanet-net` connections.
//! * [`percore`]: [`PerCoreGateway`] / [`run_per_core`] — one single-threaded event loop per
//!   core, each with its own `SO_REUSEPORT` listener and HTX pool, sharing the verifier,
//!   replay store, buckets and metrics.
//! * [`metrics`]: Prometheus metrics (`betanet_gateway_*`).
//! * [`config`]: the TOML [`GatewayConfig`] (`gateway.example.toml`).
//! * [`tools`]: [`new_site_ticket_key`] and [`ticket_examples`] for the CLI.
//!
//! What it is **not**: no ticket cryptography or replay storage (that is `betanet-ticket`),
//! no HTX transport itself (`betanet-net`; [`HtxConnector`] uses it through [`SiteConnector`]),
//! no site framework (`betanet-app`).

pub mod barmap;
pub mod config;
pub mod decoy;
mod error;
pub mod htx;
pub mod metrics;
pub mod percore;
pub mod prefixed;
pub mod server;
pub mod tools;
pub mod upstream;

pub use config::GatewayConfig;
pub use error::GatewayError;
pub use htx::HtxConnector;
pub use metrics::Metrics;
pub use percore::{PerCoreGateway, run_per_core};
pub use server::{FirstBytes, Gateway, classify_first_bytes, run_gateway, site_connector};
pub use tools::{new_site_ticket_key, ticket_examples};
pub use upstream::{BoxSiteStream, SiteConnector, SiteStream, TcpBarConnector, Upstream};
