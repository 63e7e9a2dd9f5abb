//! Prometheus metrics (prometheus-client), all prefixed `betanet_gateway_`.
//!
//! [`Metrics::render`] returns the text exposition format; mount it at `/metrics` anywhere
//! (the gateway serves it itself on `metrics_listen` when configured).

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Label = [(&'static str, &'static str); 1];

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Requests by outcome: `forwarded`, `decoy`, `voucher_refused`, `upstream_error`.
    pub requests: Family<Label, Counter>,
    /// Admission decisions by outcome: `admitted` or a refusal label (`replay`, ...).
    pub admissions: Family<Label, Counter>,
    /// Seconds from opening the upstream stream to the response head.
    pub upstream_latency: Histogram,
    /// 1 when the last upstream health check (or request) succeeded, else 0.
    pub upstream_healthy: Gauge,
    /// Upstream connect failures.
    pub upstream_failures: Counter,
    /// Currently open client connections.
    pub connections: Gauge,
    /// Connections closed for being too slow (header timeout).
    pub slow_reaped: Counter,
    /// Handles on the per-request hot outcomes, created once so counting them is one atomic
    /// add (no label hashing or family lock).
    hot_requests: [(&'static str, Counter); 2],
    hot_admissions: [(&'static str, Counter); 2],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("betanet_gateway");
        let requests = Family::<Label, Counter>::default();
        let admissions = Family::<Label, Counter>::default();
        let upstream_latency = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let upstream_healthy = Gauge::default();
        let upstream_failures = Counter::default();
        let connections = Gauge::default();
        let slow_reaped = Counter::default();
        registry.register("requests", "HTTP requests by outcome", requests.clone());
        registry.register(
            "admissions",
            "Admission decisions by outcome",
            admissions.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time to the site's response head",
            upstream_latency.clone(),
        );
        registry.register(
            "upstream_healthy",
            "1 if the site server is reachable",
            upstream_healthy.clone(),
        );
        registry.register(
            "upstream_failures",
            "Failed upstream stream opens",
            upstream_failures.clone(),
        );
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        registry.register(
            "slow_reaped",
            "Connections closed by the header timeout",
            slow_reaped.clone(),
        );
        let hot_requests =
            ["forwarded", "decoy"].map(|o| (o, requests.get_or_create(&[("outcome", o)]).clone()));
        let hot_admissions = ["admitted", "rate_limited"]
            .map(|o| (o, admissions.get_or_create(&[("outcome", o)]).clone()));
        Metrics {
            hot_requests,
            hot_admissions,
            registry,
            requests,
            admissions,
            upstream_latency,
            upstream_healthy,
            upstream_failures,
            connections,
            slow_reaped,
        }
    }

    /// Counts a request outcome.
    pub fn request(&self, outcome: &'static str) {
        match self.hot_requests.iter().find(|(o, _)| *o == outcome) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                self.requests.get_or_create(&[("outcome", outcome)]).inc();
            }
        }
    }

    /// Counts an admission outcome.
    pub fn admission(&self, outcome: &'static str) {
        match self.hot_admissions.iter().find(|(o, _)| *o == outcome) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                self.admissions.get_or_create(&[("outcome", outcome)]).inc();
            }
        }
    }

    /// Reads a counter of `requests` (for tests and dashboards).
    pub fn requests_with(&self, outcome: &'static str) -> u64 {
        self.requests.get_or_create(&[("outcome", outcome)]).get()
    }

    /// Reads a counter of `admissions`.
    pub fn admissions_with(&self, outcome: &'static str) -> u64 {
        self.admissions.get_or_create(&[("outcome", outcome)]).get()
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}
