//! # betanet-example-hello — your own plugin on a Betanet site
//!
//! A complete, small example of what a site operator writes: a [`Plugin`] that registers its
//! routes, put in a [`PluginRegistry`] beside the built-ins (`dashboard`, `metrics`, `static`,
//! `proxy`) so it is selected by name, and served over HTX with
//! [`betanet_app::htx::serve_listener`] (the `hello-site` binary in this crate).
//!
//! Routes of [`HelloPlugin`]:
//! * `GET /hello/{name}` → `hello {name}` (text);
//! * `POST /echo` → the request body, unchanged;
//! * `GET /download/{bytes}` → a streamed body of that many bytes of [`pattern`] (at most
//!   [`MAX_DOWNLOAD`]), produced chunk by chunk under backpressure, never held in memory.
//!
//! The end-to-end test (`tests/e2e.rs`) runs the real `hello-site` process behind a real
//! gateway and talks HTTP to the gateway; the bench (`benches/htx_vs_hyper.rs`) serves the
//! same handler over HTX and over plain hyper.

use std::sync::Arc;

use betanet_app::{
    App, AppConfig, AppError, Body, NodeStats, Plugin, PluginRegistry, Request, Response,
};
use bytes::Bytes;

/// Largest `/download/{bytes}` served (1 GiB).
pub const MAX_DOWNLOAD: u64 = 1 << 30;
/// Chunk size of streamed downloads.
const CHUNK: usize = 64 * 1024;

/// Byte `i` of every download: a pattern that catches lost, duplicated or reordered chunks.
#[must_use]
pub fn pattern(i: u64) -> u8 {
    let block = i / 251;
    // Truncation intended: the byte value mixes the offset in the block and the block number.
    ((i % 251) as u8) ^ (block.wrapping_mul(0x9e37_79b9) >> 24) as u8
}

/// Fills `buf` with the pattern starting at offset `start`.
pub fn fill_pattern(start: u64, buf: &mut [u8]) {
    for (k, b) in buf.iter_mut().enumerate() {
        *b = pattern(start + k as u64);
    }
}

/// The plugin: greeting, echo and streamed download routes.
#[derive(Clone, Debug)]
pub struct HelloPlugin {
    /// The first word of `/hello/{name}` answers.
    pub greeting: String,
}

impl Default for HelloPlugin {
    fn default() -> Self {
        HelloPlugin {
            greeting: "hello".to_owned(),
        }
    }
}

fn download(req: &Request) -> Response {
    let Some(len) = req.param("bytes").and_then(|b| b.parse::<u64>().ok()) else {
        return Response::error(400, "bytes must be a number");
    };
    if len > MAX_DOWNLOAD {
        return Response::error(400, "at most 1 GiB");
    }
    let (tx, body) = Body::channel(4);
    tokio::spawn(async move {
        let mut sent = 0u64;
        while sent < len {
            let n = usize::try_from(len - sent).unwrap_or(CHUNK).min(CHUNK);
            let mut chunk = vec![0u8; n];
            fill_pattern(sent, &mut chunk);
            if !tx.send(Bytes::from(chunk)).await {
                return; // the client went away
            }
            sent += n as u64;
        }
    });
    Response::with_body("application/octet-stream", body)
}

impl Plugin for HelloPlugin {
    fn name(&self) -> &str {
        "hello"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        let greeting = self.greeting.clone();
        app.get("/hello/{name}", move |req: Request| {
            let answer = format!("{greeting} {}", req.param("name").unwrap_or("world"));
            async move { answer }
        })?;
        app.post("/echo", |req: Request| {
            let body = req.body().clone();
            let ty = req
                .header("content-type")
                .unwrap_or("application/octet-stream")
                .to_owned();
            async move { Response::with_body(&ty, body) }
        })?;
        app.get("/download/{bytes}", |req: Request| {
            let resp = download(&req);
            async move { resp }
        })?;
        Ok(())
    }
}

/// The built-in plugins plus `hello`.
#[must_use]
pub fn registry() -> PluginRegistry {
    let mut r = PluginRegistry::with_builtins();
    r.register_plugin(HelloPlugin::default());
    r
}

/// The example site: `hello`, `dashboard` and `metrics`.
pub fn build_app(stats: Arc<NodeStats>) -> Result<Arc<App>, AppError> {
    let cfg = AppConfig {
        site_name: "hello example".to_owned(),
        plugins: vec!["hello".into(), "dashboard".into(), "metrics".into()],
        ..AppConfig::default()
    };
    Ok(App::from_config(&cfg, &registry(), stats)?.into_shared())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_is_not_periodic_in_the_chunk_size() {
        let mut a = vec![0u8; CHUNK];
        let mut b = vec![0u8; CHUNK];
        fill_pattern(0, &mut a);
        fill_pattern(CHUNK as u64, &mut b);
        assert_ne!(a, b);
        assert_eq!(pattern(5), 5);
    }
}
