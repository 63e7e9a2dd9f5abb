//! `dashboard`: a live page at `/dashboard` (template `betanet/dashboard.html`, overridable
//! from any template root) that polls `/dashboard/api/stats` every second.

use crate::app::App;
use crate::error::AppError;
use crate::plugin::Plugin;
use crate::request::Request;
use crate::response::Response;

/// The node dashboard.
#[derive(Debug, Clone, Copy, Default)]
pub struct DashboardPlugin;

impl Plugin for DashboardPlugin {
    fn name(&self) -> &str {
        "dashboard"
    }

    fn register(&self, app: &mut App) -> Result<(), AppError> {
        app.get("/dashboard", |req: Request| async move {
            let ctx = req.context().clone();
            let snap = ctx.stats.snapshot();
            // Safe to embed in <script>: no raw '<' can close the tag.
            let json = serde_json::to_string(&snap)
                .unwrap_or_else(|_| "{}".to_owned())
                .replace('<', "\\u003c");
            req.render(
                "betanet/dashboard.html",
                serde_json::json!({
                    "site_name": ctx.site_name,
                    "snapshot_json": json,
                    "snapshot": snap,
                    "info": ctx.info.get().cloned().unwrap_or_default(),
                }),
            )
            .with_header("cache-control", "no-store")
        })?;
        app.get("/dashboard/api/stats", |req: Request| async move {
            Response::json(&req.context().stats.snapshot()).with_header("cache-control", "no-store")
        })?;
        Ok(())
    }
}
