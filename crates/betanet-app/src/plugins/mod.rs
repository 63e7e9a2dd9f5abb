//! Built-in plugins: `dashboard`, `metrics`, `static`, `proxy`.

mod dashboard;
mod metrics;
mod proxy;
mod static_plugin;

pub use dashboard::DashboardPlugin;
pub use metrics::MetricsPlugin;
pub use proxy::ProxyPlugin;
pub use static_plugin::StaticPlugin;
