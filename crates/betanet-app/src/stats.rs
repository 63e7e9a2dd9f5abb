//! Live node statistics shared by every service of a node (site, gateway, HTX, mixnode):
//! Prometheus metrics (`prometheus-client`) plus the cheap aggregates the dashboard shows
//! (requests per second over a 60 s window, latency percentiles over the last 4096 requests).
//!
//! Services update it through [`NodeStats::record_request`], [`NodeStats::connection_guard`],
//! [`NodeStats::stream_guard`], [`NodeStats::rekey`], [`NodeStats::ticket`]; they may register
//! their own metrics with [`NodeStats::with_registry`].

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use betanet_wire::bar::Method;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

use crate::error::AppError;

/// Content type of [`NodeStats::encode_metrics`]: OpenMetrics 1.0 text, which Prometheus
/// scrapes natively (and which ends with `# EOF`).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const WINDOW_SECS: usize = 60;
const LATENCY_SAMPLES: usize = 4096;

/// Label set `{service}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    /// Service name (`site`, `gateway`, `htx`, `mix`, …).
    pub service: String,
}

/// Label set `{service, method, status}`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Service name.
    pub service: String,
    /// BAR method (`OTHER` for unknown methods, bounding cardinality).
    pub method: String,
    /// Status code.
    pub status: String,
}

/// Label set `{result}` for tickets.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TicketLabels {
    /// `admitted` or `refused`.
    pub result: String,
}

fn latency_histogram() -> Histogram {
    // 100 µs … ~13 s.
    Histogram::new(exponential_buckets(0.0001, 2.0, 18))
}

struct RateWindow {
    buckets: [(u64, u64); WINDOW_SECS],
}

impl RateWindow {
    fn record(&mut self, sec: u64) {
        let slot = &mut self.buckets[(sec % WINDOW_SECS as u64) as usize];
        if slot.0 != sec {
            *slot = (sec, 0);
        }
        slot.1 += 1;
    }

    fn count_at(&self, sec: u64) -> u64 {
        let slot = self.buckets[(sec % WINDOW_SECS as u64) as usize];
        if slot.0 == sec { slot.1 } else { 0 }
    }

    /// Counts for the last 60 seconds, oldest first, ending with the current second.
    fn series(&self, now: u64) -> Vec<u64> {
        (0..WINDOW_SECS as u64)
            .rev()
            .map(|back| now.checked_sub(back).map_or(0, |s| self.count_at(s)))
            .collect()
    }
}

struct LatencyRing {
    micros: Vec<u32>,
    next: usize,
}

impl LatencyRing {
    fn push(&mut self, d: Duration) {
        let us = u32::try_from(d.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < LATENCY_SAMPLES {
            self.micros.push(us);
        } else if let Some(slot) = self.micros.get_mut(self.next) {
            *slot = us;
        }
        self.next = (self.next + 1) % LATENCY_SAMPLES;
    }

    fn summary(&self) -> LatencySummary {
        let mut v = self.micros.clone();
        v.sort_unstable();
        let pick = |q: f64| -> f64 {
            if v.is_empty() {
                return 0.0;
            }
            let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
            f64::from(v.get(idx).copied().unwrap_or(0)) / 1000.0
        };
        LatencySummary {
            p50: pick(0.50),
            p90: pick(0.90),
            p99: pick(0.99),
            max: pick(1.0),
            samples: v.len(),
        }
    }
}

/// Latency percentiles in milliseconds over the most recent requests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
    /// Number of samples.
    pub samples: usize,
}

/// Per-service request counters.
#[derive(Debug, Clone, Serialize, Default, PartialEq)]
pub struct ServiceSnapshot {
    /// Service name.
    pub name: String,
    /// Requests handled.
    pub requests: u64,
    /// Server errors (5xx and aborted exchanges).
    pub errors: u64,
}

/// What the dashboard shows (`/dashboard/api/stats`).
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    /// Seconds since the stats object was created (node start).
    pub uptime_secs: u64,
    /// Open transport connections (all services).
    pub connections: i64,
    /// Open streams (all services).
    pub streams: i64,
    /// Requests handled.
    pub requests_total: u64,
    /// Server errors: 5xx responses and aborted exchanges.
    pub errors_total: u64,
    /// 4xx responses.
    pub client_errors_total: u64,
    /// Requests per second, averaged over the last 5 complete seconds.
    pub rps: f64,
    /// Requests per second for each of the last 60 seconds (oldest first).
    pub rps_series: Vec<u64>,
    /// Latency percentiles (ms).
    pub latency_ms: LatencySummary,
    /// Key updates performed by HTX connections.
    pub rekeys: u64,
    /// Access tickets admitted.
    pub tickets_admitted: u64,
    /// Access tickets refused.
    pub tickets_refused: u64,
    /// Per-service counters.
    pub services: Vec<ServiceSnapshot>,
}

/// The node's live statistics and Prometheus registry. Share it as `Arc<NodeStats>`.
pub struct NodeStats {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    errors: Family<ServiceLabels, Counter>,
    latency: Family<ServiceLabels, Histogram, fn() -> Histogram>,
    connections: Family<ServiceLabels, Gauge>,
    streams: Family<ServiceLabels, Gauge>,
    rekeys: Counter,
    tickets: Family<TicketLabels, Counter>,
    uptime: Gauge<f64, AtomicU64>,
    started: Instant,
    requests_total: AtomicU64,
    errors_total: AtomicU64,
    client_errors_total: AtomicU64,
    conns_now: AtomicI64,
    streams_now: AtomicI64,
    rekeys_total: AtomicU64,
    tickets_ok: AtomicU64,
    tickets_refused: AtomicU64,
    live: Mutex<Live>,
}

/// Dashboard aggregates, updated under one lock per request.
struct Live {
    window: RateWindow,
    lat: LatencyRing,
    per_service: BTreeMap<String, ServiceSnapshot>,
    /// Metric handles per service, resolved from the families once: a request then costs no
    /// label allocation, hashing or family lookup (the handles share the families' values,
    /// so the exported metrics are the same).
    handles: HashMap<String, ServiceHandles>,
}

/// Cached handles of one service's metrics, each created (in its family) on first use, as
/// `get_or_create` would.
#[derive(Default)]
struct ServiceHandles {
    /// `betanet_requests` by (method index, status).
    requests: HashMap<(u8, u16), Counter>,
    latency: Option<Histogram>,
    errors: Option<Counter>,
    connections: Option<Gauge>,
    streams: Option<Gauge>,
}

/// Index of a method label in [`ServiceHandles::requests`] keys.
fn method_index(method: &str) -> u8 {
    match method {
        "GET" => 0,
        "PUT" => 1,
        "POST" => 2,
        "DEL" => 3,
        _ => 4,
    }
}

impl Live {
    /// The cached handles of `service` (created empty on first use; `None` never happens).
    fn handles(&mut self, service: &str) -> Option<&mut ServiceHandles> {
        if !self.handles.contains_key(service) {
            self.handles
                .insert(service.to_owned(), ServiceHandles::default());
        }
        self.handles.get_mut(service)
    }

    fn service_entry(&mut self, service: &str) -> Option<&mut ServiceSnapshot> {
        if !self.per_service.contains_key(service) {
            self.per_service.insert(
                service.to_owned(),
                ServiceSnapshot {
                    name: service.to_owned(),
                    ..ServiceSnapshot::default()
                },
            );
        }
        self.per_service.get_mut(service)
    }
}

impl std::fmt::Debug for NodeStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeStats")
            .field("requests_total", &self.requests_total)
            .finish_non_exhaustive()
    }
}

impl Default for NodeStats {
    fn default() -> Self {
        NodeStats::new()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl NodeStats {
    /// Fresh stats; uptime starts now.
    #[must_use]
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ServiceLabels, Counter>::default();
        let latency: Family<ServiceLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let connections = Family::<ServiceLabels, Gauge>::default();
        let streams = Family::<ServiceLabels, Gauge>::default();
        let rekeys = Counter::default();
        let tickets = Family::<TicketLabels, Counter>::default();
        let uptime = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "betanet_requests",
            "Requests handled, by service, method and status",
            requests.clone(),
        );
        registry.register(
            "betanet_errors",
            "Server errors (5xx responses and aborted exchanges), by service",
            errors.clone(),
        );
        registry.register(
            "betanet_request_duration_seconds",
            "Time from request head to response head, by service",
            latency.clone(),
        );
        registry.register(
            "betanet_connections",
            "Open transport connections, by service",
            connections.clone(),
        );
        registry.register(
            "betanet_streams",
            "Open streams, by service",
            streams.clone(),
        );
        registry.register(
            "betanet_rekeys",
            "HTX key updates performed",
            rekeys.clone(),
        );
        registry.register(
            "betanet_tickets",
            "Access tickets checked, by result",
            tickets.clone(),
        );
        registry.register(
            "betanet_uptime_seconds",
            "Seconds since the node started",
            uptime.clone(),
        );
        NodeStats {
            registry: Mutex::new(registry),
            requests,
            errors,
            latency,
            connections,
            streams,
            rekeys,
            tickets,
            uptime,
            started: Instant::now(),
            requests_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            client_errors_total: AtomicU64::new(0),
            conns_now: AtomicI64::new(0),
            streams_now: AtomicI64::new(0),
            rekeys_total: AtomicU64::new(0),
            tickets_ok: AtomicU64::new(0),
            tickets_refused: AtomicU64::new(0),
            live: Mutex::new(Live {
                window: RateWindow {
                    buckets: [(u64::MAX, 0); WINDOW_SECS],
                },
                lat: LatencyRing {
                    micros: Vec::with_capacity(LATENCY_SAMPLES),
                    next: 0,
                },
                per_service: BTreeMap::new(),
                handles: HashMap::new(),
            }),
        }
    }

    fn now_sec(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    fn svc(service: &str) -> ServiceLabels {
        ServiceLabels {
            service: service.to_owned(),
        }
    }

    /// Records one handled request.
    pub fn record_request(&self, service: &str, method: &Method, status: u16, took: Duration) {
        let method = match method {
            Method::Unknown(_) => "OTHER",
            m => m.as_str(),
        };
        self.requests_total.fetch_add(1, Ordering::Relaxed);
        let server_error = status >= 500;
        if server_error {
            self.errors_total.fetch_add(1, Ordering::Relaxed);
        } else if status >= 400 {
            self.client_errors_total.fetch_add(1, Ordering::Relaxed);
        }
        let sec = self.now_sec();
        let labels = || RequestLabels {
            service: service.to_owned(),
            method: method.to_owned(),
            status: status.to_string(),
        };
        let mut live = lock(&self.live);
        match live.handles(service) {
            Some(h) => {
                h.requests
                    .entry((method_index(method), status))
                    .or_insert_with(|| self.requests.get_or_create(&labels()).clone())
                    .inc();
                h.latency
                    .get_or_insert_with(|| self.latency.get_or_create(&Self::svc(service)).clone())
                    .observe(took.as_secs_f64());
                if server_error {
                    h.errors
                        .get_or_insert_with(|| {
                            self.errors.get_or_create(&Self::svc(service)).clone()
                        })
                        .inc();
                }
            }
            None => {
                self.requests.get_or_create(&labels()).inc();
                self.latency
                    .get_or_create(&Self::svc(service))
                    .observe(took.as_secs_f64());
                if server_error {
                    self.errors.get_or_create(&Self::svc(service)).inc();
                }
            }
        }
        live.window.record(sec);
        live.lat.push(took);
        if let Some(e) = live.service_entry(service) {
            e.requests += 1;
            if server_error {
                e.errors += 1;
            }
        }
    }

    /// Records an exchange aborted after its head was sent (stall, reset, body error).
    pub fn record_error(&self, service: &str) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
        let mut live = lock(&self.live);
        match live.handles(service) {
            Some(h) => h
                .errors
                .get_or_insert_with(|| self.errors.get_or_create(&Self::svc(service)).clone())
                .inc(),
            None => self.errors.get_or_create(&Self::svc(service)).inc(),
        };
        if let Some(e) = live.service_entry(service) {
            e.errors += 1;
        }
    }

    /// Counts an open connection until the guard drops.
    #[must_use]
    pub fn connection_guard(self: &Arc<Self>, service: &str) -> ActiveGuard {
        let gauge = lock(&self.live).handles(service).map_or_else(
            || self.connections.get_or_create(&Self::svc(service)).clone(),
            |h| {
                h.connections
                    .get_or_insert_with(|| {
                        self.connections.get_or_create(&Self::svc(service)).clone()
                    })
                    .clone()
            },
        );
        gauge.inc();
        self.conns_now.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            stats: self.clone(),
            gauge,
            stream: false,
        }
    }

    /// Counts an open stream until the guard drops.
    #[must_use]
    pub fn stream_guard(self: &Arc<Self>, service: &str) -> ActiveGuard {
        let gauge = lock(&self.live).handles(service).map_or_else(
            || self.streams.get_or_create(&Self::svc(service)).clone(),
            |h| {
                h.streams
                    .get_or_insert_with(|| self.streams.get_or_create(&Self::svc(service)).clone())
                    .clone()
            },
        );
        gauge.inc();
        self.streams_now.fetch_add(1, Ordering::Relaxed);
        ActiveGuard {
            stats: self.clone(),
            gauge,
            stream: true,
        }
    }

    /// Counts one HTX key update.
    pub fn rekey(&self) {
        self.rekeys.inc();
        self.rekeys_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one access-ticket decision.
    pub fn ticket(&self, admitted: bool) {
        let result = if admitted { "admitted" } else { "refused" };
        self.tickets
            .get_or_create(&TicketLabels {
                result: result.to_owned(),
            })
            .inc();
        if admitted {
            self.tickets_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.tickets_refused.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Lets a service register its own metrics in the node registry.
    pub fn with_registry<R>(&self, f: impl FnOnce(&mut Registry) -> R) -> R {
        f(&mut lock(&self.registry))
    }

    /// Seconds since start.
    #[must_use]
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The registry as OpenMetrics text ([`METRICS_CONTENT_TYPE`]).
    pub fn encode_metrics(&self) -> Result<String, AppError> {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        let mut out = String::with_capacity(4096);
        prometheus_client::encoding::text::encode(&mut out, &lock(&self.registry))
            .map_err(AppError::Metrics)?;
        Ok(out)
    }

    /// A consistent-enough copy of the live values for the dashboard.
    #[must_use]
    pub fn snapshot(&self) -> StatsSnapshot {
        let now = self.now_sec();
        let live = lock(&self.live);
        let series = live.window.series(now);
        let last5: u64 = series.iter().rev().skip(1).take(5).sum();
        let secs = now.clamp(1, 5) as f64;
        StatsSnapshot {
            uptime_secs: now,
            connections: self.conns_now.load(Ordering::Relaxed),
            streams: self.streams_now.load(Ordering::Relaxed),
            requests_total: self.requests_total.load(Ordering::Relaxed),
            errors_total: self.errors_total.load(Ordering::Relaxed),
            client_errors_total: self.client_errors_total.load(Ordering::Relaxed),
            rps: last5 as f64 / secs,
            rps_series: series,
            latency_ms: live.lat.summary(),
            rekeys: self.rekeys_total.load(Ordering::Relaxed),
            tickets_admitted: self.tickets_ok.load(Ordering::Relaxed),
            tickets_refused: self.tickets_refused.load(Ordering::Relaxed),
            services: live.per_service.values().cloned().collect(),
        }
    }
}

/// Decrements the connection or stream gauge when dropped.
#[derive(Debug)]
pub struct ActiveGuard {
    stats: Arc<NodeStats>,
    /// The service's gauge (shared with its family).
    gauge: Gauge,
    stream: bool,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.gauge.dec();
        if self.stream {
            self.stats.streams_now.fetch_sub(1, Ordering::Relaxed);
        } else {
            self.stats.conns_now.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_guards_and_percentiles() {
        let s = Arc::new(NodeStats::new());
        for ms in 1..=100u64 {
            s.record_request("site", &Method::Get, 200, Duration::from_millis(ms));
        }
        s.record_request("site", &Method::Unknown("X".into()), 400, Duration::ZERO);
        s.record_request("gateway", &Method::Post, 503, Duration::ZERO);
        s.record_error("site");
        s.rekey();
        s.ticket(true);
        s.ticket(false);
        s.ticket(false);
        let g1 = s.connection_guard("site");
        let g2 = s.stream_guard("site");
        let snap = s.snapshot();
        assert_eq!(snap.requests_total, 102);
        assert_eq!(snap.errors_total, 2);
        assert_eq!(snap.client_errors_total, 1);
        assert_eq!((snap.connections, snap.streams), (1, 1));
        assert_eq!(
            (snap.rekeys, snap.tickets_admitted, snap.tickets_refused),
            (1, 1, 2)
        );
        assert_eq!(snap.latency_ms.samples, 102);
        assert!(
            (snap.latency_ms.p50 - 49.0).abs() < 1.01,
            "{:?}",
            snap.latency_ms
        );
        assert!((snap.latency_ms.max - 100.0).abs() < 0.01);
        assert_eq!(snap.rps_series.len(), 60);
        assert_eq!(*snap.rps_series.last().unwrap(), 102);
        let site = snap.services.iter().find(|x| x.name == "site").unwrap();
        assert_eq!((site.requests, site.errors), (101, 1));
        drop((g1, g2));
        let snap = s.snapshot();
        assert_eq!((snap.connections, snap.streams), (0, 0));
        let text = s.encode_metrics().unwrap();
        assert!(text.contains(
            "betanet_requests_total{service=\"site\",method=\"OTHER\",status=\"400\"} 1"
        ));
        assert!(text.contains("betanet_tickets_total{result=\"refused\"} 2"));
        assert!(text.trim_end().ends_with("# EOF"));
    }

    #[test]
    fn rate_window_wraps() {
        let mut w = RateWindow {
            buckets: [(u64::MAX, 0); WINDOW_SECS],
        };
        w.record(5);
        w.record(5);
        w.record(65);
        let s = w.series(65);
        assert_eq!(s.last(), Some(&1));
        assert_eq!(s.iter().sum::<u64>(), 1);
        assert_eq!(w.series(5).last(), Some(&0));
    }
}
