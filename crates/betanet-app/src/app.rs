//! The application: routes, blueprints, hooks, error handlers and dispatch.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_wire::bar::{Method, status};
use futures_util::FutureExt;

use crate::error::AppError;
use crate::request::{Request, RequestHead};
use crate::response::{IntoResponse, Response};
use crate::router::Pattern;
use crate::stats::NodeStats;
use crate::templates::Templates;

/// The future a handler returns.
pub type BoxFuture = Pin<Box<dyn Future<Output = Response> + Send>>;
/// A type-erased route handler.
pub type Handler = Arc<dyn Fn(Request) -> BoxFuture + Send + Sync>;
/// Runs before routing; may change the request or answer it directly.
pub type BeforeHook = Arc<dyn Fn(&mut Request) -> Option<Response> + Send + Sync>;
/// Runs after every response is built (also for errors and hook short-cuts).
pub type AfterHook = Arc<dyn Fn(&RequestHead, &mut Response) + Send + Sync>;
/// Replaces a response of one status.
pub type ErrorHandler = Arc<dyn Fn(&RequestHead, Response) -> Response + Send + Sync>;

/// Wraps an async function `Request -> impl IntoResponse` into a [`Handler`].
pub fn handler<F, Fut, R>(f: F) -> Handler
where
    F: Fn(Request) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
    R: IntoResponse,
{
    Arc::new(move |req| {
        let fut = f(req);
        Box::pin(async move { fut.await.into_response() })
    })
}

/// Limits applied by the stream server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted request body (head `b` plus continuation); larger → 400.
    pub max_body: u64,
    /// How long a peer may make no progress (request bytes or response credit) — SPEC §10's
    /// 15 s. A stalled request gets 503; a stalled response is aborted.
    pub stall_timeout: Duration,
    /// Concurrent connections accepted by [`crate::serve_tcp_bar`].
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 16 * 1024 * 1024,
            stall_timeout: Duration::from_secs(15),
            max_connections: 1024,
        }
    }
}

/// State shared by every request: templates, stats, service name.
#[derive(Debug)]
pub struct AppContext {
    /// Template environment over the configured roots.
    pub templates: Templates,
    /// Live counters and the Prometheus registry.
    pub stats: Arc<NodeStats>,
    /// Service label used for this app's metrics (`"site"`).
    pub service: String,
    /// Human-readable site name (dashboard title).
    pub site_name: String,
    /// Routes and plugins, fixed when the app is shared ([`App::into_shared`]).
    pub info: std::sync::OnceLock<SiteInfo>,
}

/// What the app serves, for the dashboard.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SiteInfo {
    /// Installed plugins in order.
    pub plugins: Vec<String>,
    /// `(method, pattern)` of every route.
    pub routes: Vec<(String, String)>,
}

struct Route {
    method: Method,
    pattern: Pattern,
    rank: Vec<u8>,
    handler: Handler,
}

/// A group of routes mounted together under a prefix ([`App::mount`]).
pub struct Blueprint {
    prefix: String,
    routes: Vec<(Method, String, Handler)>,
}

impl std::fmt::Debug for Blueprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blueprint")
            .field("prefix", &self.prefix)
            .field("routes", &self.routes.len())
            .finish()
    }
}

impl Blueprint {
    /// An empty blueprint for `prefix` (e.g. `/api`).
    #[must_use]
    pub fn new(prefix: &str) -> Self {
        Blueprint {
            prefix: prefix.to_owned(),
            routes: Vec::new(),
        }
    }

    /// Adds a route relative to the prefix.
    #[must_use]
    pub fn route<F, Fut, R>(mut self, method: Method, pattern: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.routes.push((method, pattern.to_owned(), handler(f)));
        self
    }

    /// `GET` route.
    #[must_use]
    pub fn get<F, Fut, R>(self, pattern: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Get, pattern, f)
    }

    /// `POST` route.
    #[must_use]
    pub fn post<F, Fut, R>(self, pattern: &str, f: F) -> Self
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Post, pattern, f)
    }
}

/// What the router found for a method and path.
enum Lookup<'a> {
    Found(&'a Handler, Vec<(String, String)>),
    WrongMethod(Vec<String>),
    NotFound,
}

/// The site application.
pub struct App {
    routes: Vec<Route>,
    before: Vec<BeforeHook>,
    after: Vec<AfterHook>,
    error_handlers: HashMap<u16, ErrorHandler>,
    ctx: Arc<AppContext>,
    plugins: Vec<String>,
    /// Server limits (body size, stall timeout, connections).
    pub limits: Limits,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("routes", &self.route_list())
            .field("plugins", &self.plugins)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Default for App {
    fn default() -> Self {
        App::new()
    }
}

impl App {
    /// An empty app with its own [`NodeStats`].
    #[must_use]
    pub fn new() -> Self {
        App::with_stats(Arc::new(NodeStats::new()))
    }

    /// An empty app reporting into shared `stats` (so the dashboard shows the whole node).
    #[must_use]
    pub fn with_stats(stats: Arc<NodeStats>) -> Self {
        App {
            routes: Vec::new(),
            before: Vec::new(),
            after: Vec::new(),
            error_handlers: HashMap::new(),
            ctx: Arc::new(AppContext {
                templates: Templates::new(),
                stats,
                service: "site".to_owned(),
                site_name: "Betanet site".to_owned(),
                info: std::sync::OnceLock::new(),
            }),
            plugins: Vec::new(),
            limits: Limits::default(),
        }
    }

    /// Sets the site name shown by the dashboard (call before sharing the app).
    pub fn set_site_name(&mut self, name: &str) {
        if let Some(ctx) = Arc::get_mut(&mut self.ctx) {
            ctx.site_name = name.to_owned();
        } else {
            let c = &self.ctx;
            self.ctx = Arc::new(AppContext {
                templates: c.templates.clone(),
                stats: c.stats.clone(),
                service: c.service.clone(),
                site_name: name.to_owned(),
                info: std::sync::OnceLock::new(),
            });
        }
    }

    /// The shared context (templates, stats).
    #[must_use]
    pub fn context(&self) -> &Arc<AppContext> {
        &self.ctx
    }

    /// The node statistics this app reports into.
    #[must_use]
    pub fn stats(&self) -> &Arc<NodeStats> {
        &self.ctx.stats
    }

    /// The template environment.
    #[must_use]
    pub fn templates(&self) -> &Templates {
        &self.ctx.templates
    }

    /// Adds a template root; earlier roots win when several hold the same name.
    pub fn add_template_root(&mut self, dir: impl AsRef<Path>) {
        self.ctx.templates.add_root(dir.as_ref());
    }

    /// Renders a template to a string.
    pub fn render<T: serde::Serialize>(&self, name: &str, ctx: T) -> Result<String, AppError> {
        self.ctx.templates.render(name, ctx)
    }

    /// Adds a route with a pre-built [`Handler`].
    pub fn route_handler(
        &mut self,
        method: Method,
        pattern: &str,
        handler: Handler,
    ) -> Result<&mut Self, AppError> {
        let pattern = Pattern::parse(pattern)?;
        self.push_route(method, pattern, handler);
        Ok(self)
    }

    fn push_route(&mut self, method: Method, pattern: Pattern, handler: Handler) {
        let rank = pattern.rank();
        self.routes.push(Route {
            method,
            pattern,
            rank,
            handler,
        });
    }

    /// Adds a route: `app.route(Method::Get, "/hello/{name}", |req| async move { .. })`.
    pub fn route<F, Fut, R>(
        &mut self,
        method: Method,
        pattern: &str,
        f: F,
    ) -> Result<&mut Self, AppError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route_handler(method, pattern, handler(f))
    }

    /// `GET` route.
    pub fn get<F, Fut, R>(&mut self, pattern: &str, f: F) -> Result<&mut Self, AppError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Get, pattern, f)
    }

    /// `PUT` route.
    pub fn put<F, Fut, R>(&mut self, pattern: &str, f: F) -> Result<&mut Self, AppError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Put, pattern, f)
    }

    /// `POST` route.
    pub fn post<F, Fut, R>(&mut self, pattern: &str, f: F) -> Result<&mut Self, AppError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Post, pattern, f)
    }

    /// `DEL` route.
    pub fn del<F, Fut, R>(&mut self, pattern: &str, f: F) -> Result<&mut Self, AppError>
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + Send + 'static,
        R: IntoResponse,
    {
        self.route(Method::Del, pattern, f)
    }

    /// Mounts every route of `bp` under its prefix. Nothing is added if any pattern is bad.
    pub fn mount(&mut self, bp: Blueprint) -> Result<&mut Self, AppError> {
        let mut parsed = Vec::with_capacity(bp.routes.len());
        for (m, p, h) in bp.routes {
            parsed.push((m, Pattern::parse(&p)?.prefixed(&bp.prefix)?, h));
        }
        for (m, p, h) in parsed {
            self.push_route(m, p, h);
        }
        Ok(self)
    }

    /// Python-style blueprint: mounts `(method, pattern, handler)` triples under `prefix`.
    pub fn blueprint(
        &mut self,
        prefix: &str,
        routes: Vec<(Method, &str, Handler)>,
    ) -> Result<&mut Self, AppError> {
        let bp = Blueprint {
            prefix: prefix.to_owned(),
            routes: routes
                .into_iter()
                .map(|(m, p, h)| (m, p.to_owned(), h))
                .collect(),
        };
        self.mount(bp)
    }

    /// Adds a hook run before routing; returning `Some(response)` skips the handler.
    pub fn before_request<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&mut Request) -> Option<Response> + Send + Sync + 'static,
    {
        self.before.push(Arc::new(f));
        self
    }

    /// Adds a hook run on every response.
    pub fn after_request<F>(&mut self, f: F) -> &mut Self
    where
        F: Fn(&RequestHead, &mut Response) + Send + Sync + 'static,
    {
        self.after.push(Arc::new(f));
        self
    }

    /// Installs the handler for responses with `status` (e.g. a custom 404 page). It runs once
    /// per response, before the after-request hooks.
    pub fn error_handler<F>(&mut self, status: u16, f: F) -> &mut Self
    where
        F: Fn(&RequestHead, Response) -> Response + Send + Sync + 'static,
    {
        self.error_handlers.insert(status, Arc::new(f));
        self
    }

    /// Serves files of `dir` under URL `prefix` (ETag, Last-Modified, 304, Range).
    pub fn add_static(&mut self, prefix: &str, dir: impl AsRef<Path>) -> Result<(), AppError> {
        crate::static_files::mount(self, prefix, dir.as_ref())
    }

    /// Records that plugin `name` registered itself.
    pub fn note_plugin(&mut self, name: &str) {
        if !self.plugins.iter().any(|p| p == name) {
            self.plugins.push(name.to_owned());
        }
    }

    /// Plugins registered so far, in order.
    #[must_use]
    pub fn plugins(&self) -> &[String] {
        &self.plugins
    }

    /// `(method, pattern)` for every route, in registration order.
    #[must_use]
    pub fn route_list(&self) -> Vec<(String, String)> {
        self.routes
            .iter()
            .map(|r| (r.method.as_str().to_owned(), r.pattern.as_str().to_owned()))
            .collect()
    }

    /// Shares the finished app with the servers.
    #[must_use]
    pub fn into_shared(self) -> Arc<App> {
        let _ = self.ctx.info.set(SiteInfo {
            plugins: self.plugins.clone(),
            routes: self.route_list(),
        });
        Arc::new(self)
    }

    fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let mut best: Option<(&Route, Vec<(String, String)>)> = None;
        let mut other_methods: Vec<String> = Vec::new();
        for r in &self.routes {
            let Some(caps) = r.pattern.matches(path) else {
                continue;
            };
            if r.method != *method {
                let m = r.method.as_str().to_owned();
                if !other_methods.contains(&m) {
                    other_methods.push(m);
                }
                continue;
            }
            if best.as_ref().is_none_or(|(b, _)| r.rank < b.rank) {
                best = Some((r, caps));
            }
        }
        match best {
            Some((r, caps)) => Lookup::Found(&r.handler, caps),
            None if !other_methods.is_empty() => Lookup::WrongMethod(other_methods),
            None => Lookup::NotFound,
        }
    }

    /// Runs hooks, routing, the handler and error handlers for one request, and records the
    /// request in the stats. Never fails: every problem becomes a response.
    ///
    /// Hooks and routing run when called; the returned future only awaits the handler and
    /// finishes the response, so it holds a few words rather than the request (servers keep
    /// one per exchange in flight).
    pub fn dispatch(&self, mut req: Request) -> impl Future<Output = Response> + Send + '_ {
        let started = Instant::now();
        let mut early = None;
        for hook in &self.before {
            if let Some(r) = hook(&mut req) {
                early = Some(r);
                break;
            }
        }
        // The head outlives the request only for error handlers and after-hooks (a clone
        // is several allocations per request).
        let head = (!self.error_handlers.is_empty() || !self.after.is_empty())
            .then(|| Box::new(req.head.clone()));
        let method = req.head.method.clone();
        let routed = match early {
            Some(r) => Routed::Answer(r),
            None => self.route_request(req),
        };
        async move {
            let mut resp =
                match routed {
                    Routed::Handler(fut) => AssertUnwindSafe(fut)
                        .catch_unwind()
                        .await
                        .unwrap_or_else(|_| {
                            tracing::error!("handler panicked");
                            Response::error(status::INTERNAL_ERROR, "internal error")
                        }),
                    Routed::Answer(r) => r,
                };
            if let Some(head) = &head {
                if resp.status >= 400
                    && let Some(h) = self.error_handlers.get(&resp.status)
                {
                    resp = h(head, resp);
                }
                for hook in &self.after {
                    hook(head, &mut resp);
                }
            }
            self.ctx.stats.record_request(
                &self.ctx.service,
                &method,
                resp.status,
                started.elapsed(),
            );
            resp
        }
    }

    /// Routes `req`: the handler's future, or the answer when no handler runs (unknown
    /// method, GET with a body, no route, wrong method, a handler panicking when called).
    /// Not an `async fn`: the request moves into the handler's (boxed) future only, so the
    /// dispatch future stays small (it is allocated per HTX stream).
    fn route_request(&self, mut req: Request) -> Routed {
        if let Method::Unknown(_) = req.head.method {
            return Routed::Answer(Response::error(status::BAD_REQUEST, "unknown method"));
        }
        if req.head.method == Method::Get && !req.body.is_empty() {
            return Routed::Answer(Response::error(status::BAD_REQUEST, "GET carries no body"));
        }
        match self.lookup(&req.head.method, &req.head.path) {
            Lookup::Found(h, caps) => {
                req.params = caps;
                match std::panic::catch_unwind(AssertUnwindSafe(|| h(req))) {
                    Ok(fut) => Routed::Handler(fut),
                    Err(_) => {
                        tracing::error!("handler panicked");
                        Routed::Answer(Response::error(status::INTERNAL_ERROR, "internal error"))
                    }
                }
            }
            Lookup::WrongMethod(allowed) => Routed::Answer(
                Response::error(status::BAD_REQUEST, "method not allowed for this path")
                    .with_header("allow", allowed.join(", ")),
            ),
            Lookup::NotFound => Routed::Answer(Response::error(status::NOT_FOUND, "not found")),
        }
    }
}

/// What routing decided: run a handler, or answer directly.
enum Routed {
    Handler(BoxFuture),
    Answer(Response),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::PeerInfo;
    use bytes::Bytes;

    fn req(app: &App, method: Method, uri: &str, body: &'static [u8]) -> Request {
        Request::new(
            RequestHead::new(method, uri, vec![], PeerInfo::local()),
            Bytes::from_static(body),
            app.context().clone(),
        )
    }

    async fn call(app: &App, method: Method, uri: &str, body: &'static [u8]) -> (u16, String) {
        let r = app.dispatch(req(app, method, uri, body)).await;
        let b = r.body_bytes().unwrap();
        (r.status, String::from_utf8(b.to_vec()).unwrap())
    }

    fn app() -> App {
        let mut app = App::new();
        app.get("/hello/{name}", |r: Request| async move {
            format!("hello {}", r.param("name").unwrap_or("?"))
        })
        .unwrap();
        app.get("/hello/admin", |_r: Request| async { "admin page" })
            .unwrap();
        app.get("/files/{*path}", |r: Request| async move {
            format!("file {}", r.param("path").unwrap_or(""))
        })
        .unwrap();
        app.post("/echo", |r: Request| async move {
            Response::new(200, r.body.clone())
        })
        .unwrap();
        app.get(
            "/q",
            |r: Request| async move { format!("{:?}", r.query("a")) },
        )
        .unwrap();
        app.get("/boom", |_r: Request| async move {
            if true {
                panic!("boom");
            }
            "never"
        })
        .unwrap();
        app.mount(
            Blueprint::new("/api")
                .get("/info", |_r: Request| async {
                    Response::json(&serde_json::json!({"ok": true}))
                })
                .post("/items/{id}", |r: Request| async move {
                    Response::created(format!("/api/items/{}", r.param("id").unwrap_or("")), "")
                }),
        )
        .unwrap();
        app
    }

    #[tokio::test]
    async fn routing_params_and_specificity() {
        let app = app();
        assert_eq!(
            call(&app, Method::Get, "/hello/rust", b"").await,
            (200, "hello rust".into())
        );
        assert_eq!(
            call(&app, Method::Get, "/hello/admin", b"").await,
            (200, "admin page".into())
        );
        assert_eq!(
            call(&app, Method::Get, "/files/a/b%20c.txt", b"").await,
            (200, "file a/b c.txt".into())
        );
        assert_eq!(
            call(&app, Method::Get, "/q?a=x%20y", b"").await,
            (200, "Some(\"x y\")".into())
        );
        assert_eq!(call(&app, Method::Get, "/nope", b"").await.0, 404);
        assert_eq!(
            call(&app, Method::Post, "/echo", b"payload").await,
            (200, "payload".into())
        );
    }

    #[tokio::test]
    async fn methods_and_errors() {
        let app = app();
        let r = app.dispatch(req(&app, Method::Put, "/echo", b"")).await;
        assert_eq!((r.status, r.header("allow")), (400, Some("POST")));
        assert_eq!(
            call(&app, Method::Unknown("PATCH".into()), "/echo", b"")
                .await
                .0,
            400
        );
        assert_eq!(call(&app, Method::Get, "/hello/x", b"body").await.0, 400);
        assert_eq!(call(&app, Method::Get, "/boom", b"").await.0, 500);
    }

    #[tokio::test]
    async fn blueprints() {
        let app = app();
        assert_eq!(
            call(&app, Method::Get, "/api/info", b"").await,
            (200, "{\"ok\":true}".into())
        );
        let r = app
            .dispatch(req(&app, Method::Post, "/api/items/7", b"x"))
            .await;
        assert_eq!(
            (r.status, r.header("location")),
            (201, Some("/api/items/7"))
        );
        assert!(
            app.route_list()
                .contains(&("GET".into(), "/api/info".into()))
        );
    }

    #[tokio::test]
    async fn hooks_and_error_handlers() {
        let mut app = app();
        app.before_request(|r: &mut Request| {
            if r.header("x-block").is_some() {
                return Some(Response::error(403, "blocked"));
            }
            r.params.push(("seen".into(), "1".into()));
            None
        });
        app.after_request(|head: &RequestHead, resp: &mut Response| {
            resp.set_header("x-path", head.path.clone());
        });
        app.error_handler(404, |head: &RequestHead, _resp: Response| {
            Response::text(format!("custom 404 for {}", head.path)).with_status(404)
        });
        let r = app.dispatch(req(&app, Method::Get, "/missing", b"")).await;
        assert_eq!(r.status, 404);
        assert_eq!(r.header("x-path"), Some("/missing"));
        assert_eq!(
            r.body_bytes().unwrap(),
            Bytes::from_static(b"custom 404 for /missing")
        );
        let mut blocked = req(&app, Method::Get, "/hello/x", b"");
        blocked.head.headers.push((
            "x-block".into(),
            betanet_wire::bar::HeaderValue::Text("1".into()),
        ));
        let r = app.dispatch(blocked).await;
        assert_eq!((r.status, r.header("x-path")), (403, Some("/hello/x")));
        let snap = app.stats().snapshot();
        assert_eq!(snap.requests_total, 2);
        assert_eq!(snap.client_errors_total, 2);
    }
}
