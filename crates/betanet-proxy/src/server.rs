//! The listener: protocol detection, the SOCKS5 handshake, the HTTP proxy (absolute-form
//! requests and `CONNECT`), tunnels served with hyper, and the BAR exchange per request.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_gateway::SiteConnector;
use betanet_gateway::barmap::{self, ExchangeLimits, GwBody};
use betanet_gateway::prefixed::Prefixed;
use bytes::{Bytes, BytesMut};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::histogram::Histogram;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::ProxyError;
use crate::config::{ProxyConfig, Site, find_site, normalize_host};
use crate::connector::site_connector;
use crate::hidden::HiddenServices;
use crate::socks::{self, Detected, Reply};

/// The most bytes of SOCKS messages buffered before giving up.
const MAX_SOCKS_BYTES: usize = 600;

/// A configured site with its connector.
struct Route {
    site: Site,
    connector: Arc<dyn SiteConnector>,
}

/// What every connection task shares.
struct Shared {
    routes: Vec<Route>,
    sites: Vec<Site>,
    header_timeout: Duration,
    connect_timeout: Duration,
    limits: ExchangeLimits,
    latency: Histogram,
    /// Hidden services through the mixnet, when `[mix]` is configured.
    hidden: Option<HiddenServices>,
    /// Flips to `true` on shutdown (ends CONNECT tunnels, which run on their own tasks).
    stop: watch::Receiver<bool>,
}

/// Where a host name leads.
#[derive(Clone, Copy)]
enum Target<'a> {
    /// A configured HTX site.
    Site(&'a Route),
    /// A hidden service (its id), through the mixnet.
    Hidden([u8; 32]),
}

impl Shared {
    fn route(&self, host: &str) -> Option<&Route> {
        let site = find_site(&self.sites, host)?;
        self.routes.iter().find(|r| r.site.host == site.host)
    }

    fn target(&self, host: &str) -> Option<Target<'_>> {
        if let Some(r) = self.route(host) {
            return Some(Target::Site(r));
        }
        self.hidden
            .as_ref()
            .and_then(|h| h.resolve(host))
            .map(Target::Hidden)
    }

    /// The name a tunnel keeps to find its target again.
    fn target_name(t: Target<'_>, host: &str) -> String {
        match t {
            Target::Site(r) => r.site.host.clone(),
            Target::Hidden(_) => normalize_host(host),
        }
    }
}

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Validates `config`, binds its listen address and starts serving. The proxy dials sites
    /// with a fresh Ed25519 identity (sites do not authenticate clients).
    pub async fn start(config: ProxyConfig) -> Result<Proxy, ProxyError> {
        config.check_limits()?;
        let sites = config.sites()?;
        let identity = betanet_crypto::sign::SigningKey::generate(&mut rand_core::OsRng);
        let pq = if config.classic_handshake {
            betanet_net::PqMode::Classic
        } else {
            betanet_net::PqMode::Hybrid
        };
        let connect_timeout = Duration::from_secs(config.connect_timeout_secs);
        let hidden = match &config.mix {
            Some(m) => Some(HiddenServices::start(m, config.hidden_aliases()?).await?),
            None => None,
        };
        let mut routes = Vec::with_capacity(sites.len());
        for site in &sites {
            let connector = site_connector(site, &identity, config.pool_size, connect_timeout, pq)?;
            routes.push(Route {
                site: site.clone(),
                connector,
            });
        }
        let (stop, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            stop: stop_rx.clone(),
            routes,
            sites,
            header_timeout: config.header_timeout(),
            connect_timeout,
            limits: ExchangeLimits {
                body_timeout: Duration::from_secs(config.body_timeout_secs),
                response_timeout: Duration::from_secs(config.response_timeout_secs),
            },
            latency: Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
            hidden,
        });
        let listener = TcpListener::bind(config.listen).await.map_err(|e| {
            ProxyError::config(
                "listen",
                format!("cannot bind {}: {e}; pick a free address", config.listen),
            )
        })?;
        let local_addr = listener.local_addr()?;
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        tracing::info!(%local_addr, sites = shared.routes.len(), "betanet proxy listening");
        let task = tokio::spawn(accept_loop(listener, shared, slots, stop_rx));
        Ok(Proxy {
            local_addr,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting and closes every client connection.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = stop.changed() => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let shared = shared.clone();
        tasks.spawn(async move {
            let _permit = permit;
            if let Err(e) = handle(shared, tcp).await {
                tracing::debug!(%peer, error = %e, "client connection ended with an error");
            }
        });
        while tasks.try_join_next().is_some() {}
    }
    tasks.shutdown().await;
}

async fn read_more<S: AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut BytesMut,
    deadline: tokio::time::Instant,
) -> io::Result<()> {
    let mut tmp = [0u8; 512];
    let n = tokio::time::timeout_at(deadline, s.read(&mut tmp))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "client too slow"))??;
    if n == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "client closed",
        ));
    }
    buf.extend_from_slice(tmp.get(..n).unwrap_or_default());
    Ok(())
}

async fn handle(shared: Arc<Shared>, mut tcp: TcpStream) -> Result<(), ProxyError> {
    let deadline = tokio::time::Instant::now() + shared.header_timeout;
    let mut buf = BytesMut::with_capacity(512);
    read_more(&mut tcp, &mut buf, deadline).await?;
    match socks::detect(&buf) {
        Detected::Socks5 => socks5(shared, tcp, buf, deadline).await,
        Detected::Http => {
            serve_http_proxy(shared, Prefixed::new(buf.freeze(), tcp)).await;
            Ok(())
        }
        Detected::NeedMore | Detected::Other => {
            tracing::debug!("neither SOCKS5 nor HTTP: closing");
            Ok(())
        }
    }
}

async fn socks5(
    shared: Arc<Shared>,
    mut tcp: TcpStream,
    mut buf: BytesMut,
    deadline: tokio::time::Instant,
) -> Result<(), ProxyError> {
    let greeting = loop {
        if let Some((g, used)) = socks::parse_greeting(&buf)? {
            let _ = buf.split_to(used);
            break g;
        }
        if buf.len() > MAX_SOCKS_BYTES {
            return Err(ProxyError::SocksNoMethods);
        }
        read_more(&mut tcp, &mut buf, deadline).await?;
    };
    if !greeting.offers_no_auth() {
        tcp.write_all(&[socks::VERSION, socks::METHOD_NONE_ACCEPTABLE])
            .await?;
        return Ok(());
    }
    tcp.write_all(&[socks::VERSION, socks::METHOD_NO_AUTH])
        .await?;
    let request = loop {
        match socks::parse_request(&buf) {
            Ok(Some((r, used))) => {
                let _ = buf.split_to(used);
                break r;
            }
            Ok(None) => {}
            Err(e) => {
                let code = match e {
                    ProxyError::SocksCommand(_) => Some(Reply::CommandNotSupported),
                    ProxyError::SocksAddressType(_) => Some(Reply::AddressTypeNotSupported),
                    _ => None,
                };
                if let Some(c) = code {
                    tcp.write_all(&socks::reply(c)).await?;
                }
                return Err(e);
            }
        }
        if buf.len() > MAX_SOCKS_BYTES {
            return Err(ProxyError::SocksDomain);
        }
        read_more(&mut tcp, &mut buf, deadline).await?;
    };
    let host = request.target.to_string();
    let Some(target) = shared.target(&host) else {
        tracing::debug!(host = %host, "SOCKS5: not a configured Betanet site; refused (no clearnet exit)");
        tcp.write_all(&socks::reply(Reply::NotAllowed)).await?;
        return Ok(());
    };
    if request.port == 443 {
        tracing::info!(
            host = %host,
            "SOCKS5: port 443 refused: TLS to a Betanet site cannot be mapped (use http://)"
        );
        tcp.write_all(&socks::reply(Reply::NotAllowed)).await?;
        return Ok(());
    }
    let site_host = Shared::target_name(target, &host);
    tcp.write_all(&socks::reply(Reply::Succeeded)).await?;
    tracing::debug!(site = %site_host, "SOCKS5 tunnel open");
    serve_tunnel(shared, site_host, tcp, buf, deadline).await
}

/// Serves HTTP/1.1 inside a tunnel to a known site; a TLS ClientHello (0x16) is refused.
async fn serve_tunnel<S>(
    shared: Arc<Shared>,
    site_host: String,
    mut io: S,
    mut buf: BytesMut,
    deadline: tokio::time::Instant,
) -> Result<(), ProxyError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if buf.is_empty() {
        read_more(&mut io, &mut buf, deadline).await?;
    }
    if socks::detect(&buf) != Detected::Http {
        tracing::info!(
            site = %site_host,
            "tunnel does not carry plain HTTP (TLS?): closed; this proxy is not a MITM, use http://"
        );
        return Ok(());
    }
    let io = Prefixed::new(buf.freeze(), io);
    let header_timeout = shared.header_timeout;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        let site_host = site_host.clone();
        async move {
            let resp = match shared.target(&site_host) {
                Some(t) => forward(&shared, t, &site_host, req).await,
                None => text(StatusCode::BAD_GATEWAY, "site vanished\n"),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .await;
    Ok(())
}

async fn serve_http_proxy<S>(shared: Arc<Shared>, io: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let header_timeout = shared.header_timeout;
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(proxy_request(shared, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// The plain-text 502 for hosts that are not configured sites.
pub fn not_a_site_body(host: &str) -> String {
    format!(
        "{host} is not a configured Betanet site.\nThis proxy only reaches the sites listed \
         in its config ([[site]] entries, or <peer id>.betanet of one of them); it has no \
         clearnet exit.\n"
    )
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<GwBody> {
    let mut r = Response::new(barmap::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

async fn proxy_request(shared: Arc<Shared>, req: Request<Incoming>) -> Response<GwBody> {
    let host = req.uri().host().map(str::to_owned).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
    });
    let Some(host) = host else {
        return text(
            StatusCode::BAD_REQUEST,
            "this is a proxy: send absolute-form requests (curl -x) or CONNECT\n",
        );
    };
    let Some(target) = shared.target(&host) else {
        tracing::debug!(host = %host, "HTTP: not a configured Betanet site; refused (no clearnet exit)");
        return text(StatusCode::BAD_GATEWAY, not_a_site_body(&host));
    };
    if req.method() != Method::CONNECT {
        return forward(&shared, target, &host, req).await;
    }
    if req.uri().port_u16() == Some(443) {
        tracing::debug!(host = %host, "CONNECT to port 443 refused: not a MITM");
        return text(
            StatusCode::BAD_GATEWAY,
            "CONNECT to port 443 refused: TLS to a Betanet site cannot be mapped to BAR (this \
             proxy is not a man-in-the-middle); use http:// URLs, the cover transport \
             already encrypts and authenticates the site.\n",
        );
    }
    let site_host = Shared::target_name(target, &host);
    let deadline = tokio::time::Instant::now() + shared.header_timeout;
    let shared2 = shared.clone();
    let mut stop = shared.stop.clone();
    tokio::spawn(async move {
        let tunnel = async move {
            match hyper::upgrade::on(req).await {
                Ok(up) => {
                    let io = TokioIo::new(up);
                    if let Err(e) =
                        serve_tunnel(shared2, site_host, io, BytesMut::new(), deadline).await
                    {
                        tracing::debug!(error = %e, "CONNECT tunnel ended");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => {}
            () = tunnel => {}
        }
    });
    Response::new(barmap::full(Bytes::new()))
}

async fn open(shared: &Shared, route: &Route) -> io::Result<betanet_gateway::BoxSiteStream> {
    let mut last = io::Error::other("not tried");
    // A pooled connection may have died since its last use: one immediate retry re-dials.
    for _ in 0..2 {
        match tokio::time::timeout(shared.connect_timeout, route.connector.open()).await {
            Ok(Ok(s)) => return Ok(s),
            Ok(Err(e)) => last = e,
            Err(_) => {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "connect timed out"));
            }
        }
    }
    Err(last)
}

async fn forward(
    shared: &Shared,
    target: Target<'_>,
    host: &str,
    req: Request<Incoming>,
) -> Response<GwBody> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let site = match target {
        Target::Site(r) => r.site.host.clone(),
        Target::Hidden(_) => normalize_host(host),
    };
    let Some(framed) =
        barmap::request_head_framed(&parts.method, &parts.uri, &parts.headers, true, "/")
    else {
        return text(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request head too large for BAR\n",
        );
    };
    let stream = match target {
        Target::Site(route) => match open(shared, route).await {
            Ok(s) => s,
            Err(e) => {
                tracing::info!(site = %site, error = %e, "site unreachable");
                return text(
                    StatusCode::BAD_GATEWAY,
                    format!("Betanet site {site} is unreachable over HTX: {e}\n"),
                );
            }
        },
        Target::Hidden(id) => {
            let Some(hs) = shared.hidden.as_ref() else {
                return text(StatusCode::BAD_GATEWAY, "no [mix] configured\n");
            };
            match hs.open(&site, id).await {
                Ok(s) => s,
                Err(f) => return text(f.status, f.message),
            }
        }
    };
    let bodyless = parts.method == Method::HEAD;
    match barmap::exchange(
        stream,
        framed,
        body,
        shared.limits,
        started,
        bodyless,
        &shared.latency,
    )
    .await
    {
        Ok(resp) => {
            tracing::debug!(site = %site, method = %parts.method, status = resp.status().as_u16(), "forwarded");
            resp
        }
        Err(e) => {
            tracing::info!(site = %site, error = ?e, "BAR exchange failed");
            text(
                StatusCode::BAD_GATEWAY,
                format!("Betanet site {site} did not answer with a valid BAR response\n"),
            )
        }
    }
}
