//! # betanet-app — the Betanet site framework
//!
//! **What it is.** The L7 side of a Betanet site server (SPEC §10): a router with methods,
//! `{param}` segments, a trailing wildcard and blueprints; `before_request` / `after_request`
//! hooks and per-status error handlers; extractors (path params, query, headers, body, JSON)
//! and response helpers (`json`, `text`, `html`, `redirect`, `error`); streamed bodies;
//! static files with validators and ranges; minijinja templates over several roots with
//! reload on change; plugins selected by name (`dashboard`, `metrics`, `static`, `proxy`, and
//! your own); and [`NodeStats`], the node-wide live statistics and Prometheus registry that
//! the dashboard and `/metrics` show.
//!
//! **How it fits.** [`serve_stream`] runs one BAR exchange over any
//! `AsyncRead + AsyncWrite` stream: the binary hands it each HTX stream accepted by
//! `betanet-net`. [`serve_tcp_bar`] carries one exchange per plain TCP connection (tests,
//! benchmarks, a development upstream for the gateway). With the `htx` feature, the `htx` module serves an app on
//! `betanet-net` connections (what `betanet serve` runs). [`run_site`] builds an [`App`] from an
//! [`AppConfig`] and a [`PluginRegistry`] and serves it.
//!
//! **What it is not.** No transport security or access control of its own: encryption,
//! tickets and vouchers live in `betanet-htx` / `betanet-net` / `betanet-gateway`. It speaks
//! BAR, not HTTP (the `proxy` plugin is the one HTTP client, towards a local app).
//!
//! ```no_run
//! use betanet_app::{App, Request, serve_tcp_bar};
//! # async fn run() -> std::io::Result<()> {
//! let mut app = App::new();
//! app.get("/hello/{name}", |req: Request| async move {
//!     format!("hello {}", req.param("name").unwrap_or("world"))
//! })
//! .expect("valid pattern");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! serve_tcp_bar(app.into_shared(), listener).await
//! # }
//! ```

pub mod app;
mod barcodec;
pub mod body;
pub mod client;
pub mod config;
pub mod error;
#[cfg(feature = "htx")]
pub mod htx;
pub mod plugin;
pub mod plugins;
pub mod request;
pub mod response;
pub mod router;
pub mod server;
pub mod static_files;
pub mod stats;
pub mod templates;

pub use app::{App, AppContext, Blueprint, Handler, Limits, SiteInfo, handler};
pub use body::{Body, BodySender};
pub use config::{AppConfig, ProxyConfig};
pub use error::AppError;
pub use plugin::{Plugin, PluginRegistry};
pub use request::{PeerInfo, Request, RequestHead};
pub use response::{IntoResponse, Response};
pub use server::{run_site, serve_stream, serve_tcp_bar, serve_tcp_bar_until, write_response};
pub use stats::{METRICS_CONTENT_TYPE, NodeStats, StatsSnapshot};
pub use templates::Templates;

pub use betanet_wire::bar::Method;

/// `200 application/json` from any serializable value.
#[must_use]
pub fn json<T: serde::Serialize + ?Sized>(value: &T) -> Response {
    Response::json(value)
}

/// `200 text/plain`.
#[must_use]
pub fn text(s: impl Into<String>) -> Response {
    Response::text(s)
}

/// `200 text/html`.
#[must_use]
pub fn html(s: impl Into<String>) -> Response {
    Response::html(s)
}

/// `302` to `location`.
#[must_use]
pub fn redirect(location: impl Into<String>) -> Response {
    Response::redirect(location)
}

/// An error response with a JSON body `{"status", "error"}`.
#[must_use]
pub fn error(status: u16, msg: impl AsRef<str>) -> Response {
    Response::error(status, msg)
}
