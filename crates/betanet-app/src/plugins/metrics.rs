//! `metrics`: `GET /metrics` in OpenMetrics text format.

use crate::app::App;
use crate::error::AppError;
use crate::plugin::Plugin;
use crate::request::Request;
use crate::response::{IntoResponse, Response};
use crate::stats::METRICS_CONTENT_TYPE;

/// Serves the node's Prometheus registry at `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsPlugin;

impl Plugin for MetricsPlugin {
    fn name(&self) -> &str {
        "metrics"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        let stats = app.stats().clone();
        app.get("/metrics", move |_req: Request| {
            let stats = stats.clone();
            async move {
                match stats.encode_metrics() {
                    Ok(text) => Response::with_body(METRICS_CONTENT_TYPE, text)
                        .with_header("cache-control", "no-store"),
                    Err(e) => e.into_response(),
                }
            }
        })?;
        Ok(())
    }
}
