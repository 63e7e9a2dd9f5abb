//! A user's own plugin: `GET /hello/{name}`, selected by name from the registry next to the
//! built-ins, served over BAR-on-TCP, then called once with the BAR client.
//!
//! Run: `cargo run -p betanet-app --example hello_plugin`
//! (`-- --serve` keeps the server running on 127.0.0.1:8090 with the dashboard and metrics.)

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use betanet_app::client::{fetch_tcp, request};
use betanet_app::{
    App, AppConfig, AppError, Method, NodeStats, Plugin, PluginRegistry, Request, serve_tcp_bar,
};

/// The plugin: one route.
#[derive(Clone)]
struct HelloPlugin {
    greeting: String,
}

impl Plugin for HelloPlugin {
    fn name(&self) -> &str {
        "hello"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        let greeting = self.greeting.clone();
        app.get("/hello/{name}", move |req: Request| {
            let greeting = greeting.clone();
            async move { format!("{greeting} {}", req.param("name").unwrap_or("world")) }
        })?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|a| a == "--serve");

    // The registry: built-ins plus ours, selectable as `--plugin hello` / `plugins = ["hello"]`.
    let mut registry = PluginRegistry::with_builtins();
    registry.register_plugin(HelloPlugin {
        greeting: "hello".to_owned(),
    });

    let config = AppConfig::from_toml_str(
        r#"
        site_name = "hello example"
        plugins = ["hello", "dashboard", "metrics"]
        "#,
    )?;
    let app = App::from_config(&config, &registry, Arc::new(NodeStats::new()))?.into_shared();

    let bind = if serve {
        "127.0.0.1:8090"
    } else {
        "127.0.0.1:0"
    };
    let listener = tokio::net::TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(serve_tcp_bar(app, listener));

    let resp = fetch_tcp(
        addr,
        &request(Method::Get, "/hello/rust", Vec::new()),
        1 << 20,
    )
    .await?;
    println!(
        "GET /hello/rust -> {} {}",
        resp.status,
        String::from_utf8_lossy(&resp.body)
    );
    if serve {
        println!(
            "serving BAR on {addr} (dashboard at /dashboard, metrics at /metrics); Ctrl-C to stop"
        );
        tokio::signal::ctrl_c().await?;
    }
    server.abort();
    Ok(())
}
