#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Benchmark helper for `bench/nginx.sh` and `bench/flood.sh` (all on 127.0.0.1):
//!
//! * `bench keygen`: prints `ticket_secret ticket_pub ticket_key_id site_seed site_pub` (hex).
//! * `bench backend <htx_addr> <http_addr> <decoy_addr> <site_seed_hex>`: ONE betanet-app
//!   `App` (route `GET /bench` → `200 hello from the site\n`) behind two faces — HTX/tcp12
//!   (what the gateway's pooled `HtxConnector` talks to; `betanet_app::htx::serve_listener`,
//!   i.e. what `betanet serve` runs) and plain HTTP/1.1 (hyper, for nginx; each request is
//!   mapped to a BAR request and dispatched through the same `App`). `decoy_addr` is a small
//!   HTTP decoy origin answering `404 decoy\n` (so a refused connection is visible).
//! * `bench gateway <config.toml>`: runs the gateway (what `betanet gateway --config` does);
//!   `BENCH_WORKERS=N` picks the tokio runtime (1 = current-thread), `BENCH_PER_CORE=N` runs
//!   N single-threaded event loops with SO_REUSEPORT listeners instead (`run_per_core`).
//! * `bench tickets <ticket_pub_hex> <key_id_hex> <n>`: prints `n` fresh ticket cookies
//!   (`__Host-bn1=…`), one per line (for the wrk Lua script).
//! * `bench load <addr> <connections> <seconds> [<ticket_pub_hex> <key_id_hex>]`: a bounded
//!   closed-loop keep-alive load generator (ticket on the first request of each connection).
//! * `bench flood <gw_addr> <count> <per_sec> <in_flight> <key_id_hex> [<src_prefix>]`: `count`
//!   connections (at most `per_sec` new ones a second, `in_flight` at once) from
//!   `<src_prefix>.1..254` (default `127.0.1`), each presenting a bad ticket (right key id,
//!   random key and MAC: the most expensive refusal) and reading the decoy's answer.
//! * `bench floodbench <gw_addr> <ticket_pub_hex> <key_id_hex> <rounds> <legit_per_round>
//!   <flood_count> <flood_per_sec>`: interleaved rounds — legitimate client alone, then with
//!   a `bench flood` **child process** running — the legitimate client (from 127.0.2.x) sending
//!   a request every 5 ms on keep-alive connections, a new connection with a fresh ticket every
//!   50 requests; prints p50/p99 per round, the medians and the ratio.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_app::{App, PeerInfo, RequestHead};
use betanet_gateway::barmap::full;
use betanet_ticket::ticket::RenderedCarrier;
use betanet_ticket::{Carrier, CarrierPolicy, SiteInfo, TicketKeys, make_ticket};
use betanet_wire::bar;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use rand::RngCore;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};

const BODY: &str = "hello from the site\n";

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn keys_from(p: &str, i: &str) -> TicketKeys {
    TicketKeys {
        ticket_pub: betanet_crypto::dh::X25519Public(hex::decode(p).unwrap().try_into().unwrap()),
        ticket_key_id: hex::decode(i).unwrap().try_into().unwrap(),
    }
}

fn cookie(keys: TicketKeys) -> String {
    let site = SiteInfo {
        keys,
        policy: CarrierPolicy::only(Carrier::Cookie),
    };
    match make_ticket(&site, now_unix(), &mut rand::rngs::OsRng)
        .unwrap()
        .render()
    {
        RenderedCarrier::Cookie(c) => c,
        _ => unreachable!(),
    }
}

/// A bad ticket that passes every cheap check (version, key id) so a refusal costs the full
/// X25519 + MAC work when it gets past the token bucket.
fn bad_cookie(key_id: [u8; 8]) -> String {
    let mut rng = rand::rngs::OsRng;
    let mut p = vec![1u8];
    let mut r = [0u8; 32];
    rng.fill_bytes(&mut r);
    p.extend_from_slice(&r);
    p.extend_from_slice(&key_id);
    rng.fill_bytes(&mut r);
    p.extend_from_slice(&r);
    rng.fill_bytes(&mut r);
    p.extend_from_slice(&r);
    p.extend_from_slice(&[0u8; 24]);
    format!("__Host-bn1={}", data_encoding::BASE64URL_NOPAD.encode(&p))
}

fn bench_app() -> Arc<App> {
    let mut app = App::new();
    app.get("/bench", |_req: betanet_app::Request| async move {
        betanet_app::text(BODY)
    })
    .unwrap();
    app.into_shared()
}

/// The HTTP/1.1 face: HTTP request → BAR request head → the same `App` → HTTP response.
async fn http_face(
    app: Arc<App>,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<betanet_gateway::barmap::GwBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let method = bar::Method::parse(parts.method.as_str());
    let headers: bar::Headers = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                bar::HeaderValue::Text(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect();
    let uri = parts
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let head = RequestHead::new(method, uri, headers, PeerInfo::local());
    let resp = app
        .dispatch(betanet_app::Request::new(head, body, app.context().clone()))
        .await;
    let body = resp.body.collect(1 << 20).await.unwrap_or_default();
    let mut r = http::Response::new(full(body));
    *r.status_mut() = http::StatusCode::from_u16(resp.status).unwrap();
    for (k, v) in &resp.headers {
        if let (Ok(k), Ok(v)) = (
            http::HeaderName::from_bytes(k.as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            r.headers_mut().append(k, v);
        }
    }
    r
}

async fn serve_http<F, Fut>(l: TcpListener, f: F)
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = http::Response<betanet_gateway::barmap::GwBody>>
        + Send
        + 'static,
{
    loop {
        let Ok((s, _)) = l.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        let f = f.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let f = f.clone();
                async move { Ok::<_, Infallible>(f(req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn backend(htx: &str, http_addr: SocketAddr, decoy_addr: SocketAddr, seed: &str) {
    let app = bench_app();
    let seed: [u8; 32] = hex::decode(seed).unwrap().try_into().unwrap();
    let identity = betanet_crypto::sign::SigningKey::from_seed(&seed);
    let listener = betanet_net::listen(htx, betanet_net::ServerConfig::new(identity))
        .await
        .unwrap();
    let a = app.clone();
    tokio::spawn(async move { betanet_app::htx::serve_listener(a, listener, 1024).await });
    let decoy = TcpListener::bind(decoy_addr).await.unwrap();
    tokio::spawn(serve_http(decoy, |_req| async {
        let mut r = http::Response::new(full(Bytes::from_static(b"decoy\n")));
        *r.status_mut() = http::StatusCode::NOT_FOUND;
        r
    }));
    println!("backend: HTX on {htx}, HTTP on {http_addr}, decoy on {decoy_addr}");
    let hl = TcpListener::bind(http_addr).await.unwrap();
    serve_http(hl, move |req| http_face(app.clone(), req)).await;
}

fn pct(all: &[Duration], p: f64) -> Duration {
    all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

async fn load(addr: SocketAddr, conns: usize, secs: u64, keys: Option<TicketKeys>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..conns {
        set.spawn(async move {
            let mut lat = Vec::with_capacity(100_000);
            let mut errors = 0u64;
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            let mut cookie = keys.map(cookie);
            while Instant::now() < deadline {
                let mut b = http::Request::builder()
                    .uri("/bench")
                    .header("host", "bench.test");
                if let Some(c) = cookie.take() {
                    b = b.header("cookie", c);
                }
                let req = b.body(full(Bytes::new())).unwrap();
                let t = Instant::now();
                if tx.ready().await.is_err() {
                    errors += 1;
                    break;
                }
                match tx.send_request(req).await {
                    Ok(r) => {
                        let ok = r.status() == 200;
                        let body = r.into_body().collect().await;
                        if ok && body.is_ok() {
                            lat.push(t.elapsed());
                        } else {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
            }
            (lat, errors)
        });
    }
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    while let Some(r) = set.join_next().await {
        let (l, e) = r.unwrap();
        all.extend(l);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    println!(
        "requests={} errors={} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(&all, 0.50).as_secs_f64() * 1e3,
        pct(&all, 0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// One request on a fresh connection from `src`: returns the status and the latency.
async fn one_conn(gw: SocketAddr, src: IpAddr, cookie: &str) -> std::io::Result<(u16, Duration)> {
    let t = Instant::now();
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::new(src, 0))?;
    let mut s = sock.connect(gw).await?;
    s.set_nodelay(true)?;
    let req = format!(
        "GET /bench HTTP/1.1\r\nHost: bench.test\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = Vec::with_capacity(512);
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer"))??;
    let status = buf
        .get(9..12)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Ok((status, t.elapsed()))
}

async fn flood(
    gw: SocketAddr,
    count: usize,
    per_sec: u64,
    in_flight: usize,
    kid: [u8; 8],
    prefix: &str,
) {
    let sem = Arc::new(tokio::sync::Semaphore::new(in_flight.max(1)));
    let cookies: Vec<String> = (0..count).map(|_| bad_cookie(kid)).collect();
    let mut set = tokio::task::JoinSet::new();
    let mut by_status = std::collections::BTreeMap::new();
    let start = Instant::now();
    let gap = Duration::from_nanos(1_000_000_000 / per_sec.max(1));
    for (i, c) in cookies.into_iter().enumerate() {
        tokio::time::sleep_until((start + gap * i as u32).into()).await;
        let permit = sem.clone().acquire_owned().await.unwrap();
        let src: IpAddr = format!("{prefix}.{}", 1 + i % 254).parse().unwrap();
        set.spawn(async move {
            let _p = permit;
            one_conn(gw, src, &c).await.map(|(s, _)| s).unwrap_or(0)
        });
        while let Some(r) = set.try_join_next() {
            *by_status.entry(r.unwrap_or(0)).or_insert(0u32) += 1;
        }
    }
    while let Some(r) = set.join_next().await {
        *by_status.entry(r.unwrap_or(0)).or_insert(0u32) += 1;
    }
    println!(
        "flood: {count} connections in {:.2} s, statuses {by_status:?}",
        start.elapsed().as_secs_f64()
    );
}

/// Legitimate client from `<src_prefix>.x`: `n` requests paced every 5 ms (200/s) on
/// keep-alive connections; every `per_conn`-th request opens a new connection whose first
/// request carries a fresh ticket when `keys` is set (so admission runs at 200/`per_conn` per
/// second, inside the per-/24 budget). Returns the sorted latencies (connect + admission
/// included for first requests) and the number of failed or refused (non-200) requests.
/// With `keys = None` and the backend's HTTP face as `gw` it is the **control** client: same
/// pacing, same machine, no gateway.
async fn legit(
    gw: SocketAddr,
    keys: Option<TicketKeys>,
    n: usize,
    per_conn: usize,
    src_prefix: &str,
) -> (Vec<Duration>, usize) {
    let conns = n.div_ceil(per_conn);
    let mut cookies: Vec<String> = match keys {
        Some(k) => (0..conns).map(|_| cookie(k)).collect(),
        None => Vec::new(),
    };
    let start = Instant::now();
    let mut lat = Vec::with_capacity(n);
    let mut bad = 0;
    let mut tx: Option<hyper::client::conn::http1::SendRequest<betanet_gateway::barmap::GwBody>> =
        None;
    for i in 0..n {
        tokio::time::sleep_until((start + Duration::from_millis(5) * i as u32).into()).await;
        let t = Instant::now();
        let mut first = None;
        if i % per_conn == 0 || tx.is_none() {
            let src: IpAddr = format!("{src_prefix}.{}", 1 + (i / per_conn) % 254)
                .parse()
                .unwrap();
            let sock = TcpSocket::new_v4().unwrap();
            sock.bind(SocketAddr::new(src, 0)).unwrap();
            let s = sock.connect(gw).await.unwrap();
            s.set_nodelay(true).unwrap();
            let (t2, conn) = hyper::client::conn::http1::handshake(TokioIo::new(s))
                .await
                .unwrap();
            tokio::spawn(conn);
            tx = Some(t2);
            first = cookies.pop();
        }
        let Some(sender) = tx.as_mut() else {
            bad += 1;
            continue;
        };
        let mut b = http::Request::builder()
            .uri("/bench")
            .header("host", "bench.test");
        if let Some(c) = first {
            b = b.header("cookie", c);
        }
        let req = b.body(full(Bytes::new())).unwrap();
        let ok = match sender.ready().await {
            Ok(()) => match sender.send_request(req).await {
                Ok(r) => r.status() == 200 && r.into_body().collect().await.is_ok(),
                Err(_) => false,
            },
            Err(_) => false,
        };
        if ok {
            lat.push(t.elapsed());
        } else {
            bad += 1;
            tx = None;
        }
    }
    lat.sort();
    (lat, bad)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// CPU time (user + system) of process `pid` so far, in milliseconds (`/proc/<pid>/stat`,
/// clock ticks of 10 ms).
fn cpu_ms(pid: Option<u32>) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the `(comm)`: state is field 3; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((ut + st) * 10.0)
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_default()
}

/// One measured round: the legit client (and the control client, if any) while the flood
/// child runs or not.
struct Round {
    p50: f64,
    p99: f64,
    ctl_p99: Option<f64>,
    gw_cpu_ms: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn one_round(
    exe: &std::path::Path,
    gw: SocketAddr,
    keys: TicketKeys,
    per_round: usize,
    flood: Option<(usize, u64)>,
    control: Option<SocketAddr>,
    gw_pid: Option<u32>,
    label: &str,
) -> Round {
    let child = flood.map(|(count, rate)| {
        std::process::Command::new(exe)
            .args([
                "flood",
                &gw.to_string(),
                &count.to_string(),
                &rate.to_string(),
                "64",
                &hex::encode(keys.ticket_key_id),
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    });
    if child.is_some() {
        // Let the flood ramp up before measuring.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let cpu0 = cpu_ms(gw_pid);
    let ctl = async {
        match control {
            Some(c) => Some(legit(c, None, per_round, 50, "127.0.3").await),
            None => None,
        }
    };
    let ((lat, bad), ctl) = tokio::join!(legit(gw, Some(keys), per_round, 50, "127.0.2"), ctl);
    let gw_cpu_ms = cpu0.zip(cpu_ms(gw_pid)).map(|(a, b)| b - a);
    let p50 = pct(&lat, 0.5).as_secs_f64() * 1e3;
    let p99 = pct(&lat, 0.99).as_secs_f64() * 1e3;
    let ctl_p99 = ctl.as_ref().map(|(l, _)| pct(l, 0.99).as_secs_f64() * 1e3);
    let flood_out = child.map(|c| {
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    });
    println!(
        "  {label}: legit ok={} refused_or_failed={bad} p50_ms={p50:.3} p99_ms={p99:.3}{}{} load={}{}",
        lat.len(),
        ctl_p99
            .map(|c| format!(" control_p99_ms={c:.3}"))
            .unwrap_or_default(),
        gw_cpu_ms
            .map(|c| format!(" gateway_cpu_ms={c:.0}"))
            .unwrap_or_default(),
        loadavg(),
        flood_out.map(|f| format!(" | {f}")).unwrap_or_default()
    );
    Round {
        p50,
        p99,
        ctl_p99,
        gw_cpu_ms,
    }
}

/// `pairs` interleaved pairs of (baseline round, flood round), the order inside a pair
/// alternating (base→flood, flood→base, ...) so a slow drift of the machine's load does not
/// favour one side. Prints every round, each pair's p99 ratio, and the median of those
/// ratios; with a control address (`FLOOD_CONTROL`: the backend's HTTP face, no gateway) the
/// same for a control client paced alike, whose ratio shows how much the machine itself
/// moved; with the gateway's pid (`FLOOD_GW_PID`) the gateway's CPU per round and per
/// refused flood connection.
#[allow(clippy::too_many_arguments)]
async fn floodbench(
    gw: SocketAddr,
    keys: TicketKeys,
    pairs: usize,
    per_round: usize,
    flood_count: usize,
    flood_rate: u64,
) {
    let exe = std::env::current_exe().unwrap();
    let control: Option<SocketAddr> = std::env::var("FLOOD_CONTROL")
        .ok()
        .and_then(|a| a.parse().ok());
    let gw_pid: Option<u32> = std::env::var("FLOOD_GW_PID")
        .ok()
        .and_then(|a| a.parse().ok());
    let (mut base, mut flooded) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        println!("pair {pair}:");
        let order = if pair % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        let mut got: [Option<Round>; 2] = [None, None];
        for with_flood in order {
            let r = one_round(
                &exe,
                gw,
                keys,
                per_round,
                with_flood.then_some((flood_count, flood_rate)),
                control,
                gw_pid,
                if with_flood { "flood" } else { "base " },
            )
            .await;
            got[usize::from(with_flood)] = Some(r);
        }
        let [Some(b), Some(f)] = got else {
            unreachable!()
        };
        let cpu = match (b.gw_cpu_ms, f.gw_cpu_ms) {
            (Some(cb), Some(cf)) => format!(
                " gateway_cpu_per_flood_conn_us={:.0}",
                (cf - cb) * 1e3 / flood_count as f64
            ),
            _ => String::new(),
        };
        let ctl = match (b.ctl_p99, f.ctl_p99) {
            (Some(cb), Some(cf)) => format!(" control_p99_ratio={:.3}", cf / cb),
            _ => String::new(),
        };
        println!(
            "  pair {pair}: legit_p99_ratio={:.3} legit_p50_ratio={:.3}{ctl}{cpu}",
            f.p99 / b.p99,
            f.p50 / b.p50
        );
        base.push(b);
        flooded.push(f);
    }
    let ratio = |g: &dyn Fn(&Round) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = base
            .iter()
            .zip(&flooded)
            .filter_map(|(b, f)| Some(g(f)? / g(b)?))
            .collect();
        (!v.is_empty()).then(|| median(v))
    };
    let med = |v: &Vec<Round>, g: &dyn Fn(&Round) -> f64| median(v.iter().map(g).collect());
    println!(
        "median legit p50: base {:.3} ms, during flood {:.3} ms; median of per-pair p50 ratios {:.3}",
        med(&base, &|r| r.p50),
        med(&flooded, &|r| r.p50),
        ratio(&|r| Some(r.p50)).unwrap_or(0.0)
    );
    println!(
        "median legit p99: base {:.3} ms, during flood {:.3} ms; median of per-pair p99 ratios {:.3} (target <= 1.10)",
        med(&base, &|r| r.p99),
        med(&flooded, &|r| r.p99),
        ratio(&|r| Some(r.p99)).unwrap_or(0.0)
    );
    if let Some(c) = ratio(&|r| r.ctl_p99) {
        println!(
            "median of per-pair control p99 ratios {c:.3} (the machine's own noise, no gateway)"
        );
        // Each pair's legit ratio divided by the same pair's control ratio: what the flood
        // did to the gateway path beyond what it did to the whole machine.
        let norm: Vec<f64> = base
            .iter()
            .zip(&flooded)
            .filter_map(|(b, f)| Some((f.p99 / b.p99) / (f.ctl_p99? / b.ctl_p99?)))
            .collect();
        println!(
            "median of per-pair (legit p99 ratio / control p99 ratio) {:.3}",
            median(norm)
        );
    }
    let per_conn: Vec<f64> = base
        .iter()
        .zip(&flooded)
        .filter_map(|(b, f)| Some((f.gw_cpu_ms? - b.gw_cpu_ms?) * 1e3 / flood_count as f64))
        .collect();
    if !per_conn.is_empty() {
        println!(
            "median gateway CPU per refused flood connection: {:.0} us",
            median(per_conn)
        );
    }
}

fn main() {
    // `BENCH_PER_CORE=N` with `gateway`: N single-threaded event loops with SO_REUSEPORT
    // listeners (`betanet_gateway::run_per_core`, what `betanet gateway --workers N` runs).
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("gateway")
        && let Some(n) = std::env::var("BENCH_PER_CORE")
            .ok()
            .and_then(|w| w.parse::<usize>().ok())
    {
        let cfg = betanet_gateway::GatewayConfig::load(std::path::Path::new(&args[2]))
            .unwrap_or_else(|e| panic!("{e}"));
        betanet_gateway::run_per_core(cfg, n).unwrap();
        return;
    }
    // `BENCH_WORKERS=N` sets the runtime's worker threads (`1` = tokio's single-threaded
    // runtime); the default is tokio's multi-threaded runtime with one worker per core, what
    // `#[tokio::main]` and the `betanet` binary use.
    let rt = match std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse::<usize>().ok())
    {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap(),
    };
    rt.block_on(async_main());
}

async fn async_main() {
    let args: Vec<String> = std::env::args().collect();
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
    match a(1) {
        "backend" => {
            backend(a(2), a(3).parse().unwrap(), a(4).parse().unwrap(), a(5)).await;
        }
        "gateway" => {
            let cfg = betanet_gateway::GatewayConfig::load(std::path::Path::new(a(2)))
                .unwrap_or_else(|e| panic!("{e}"));
            betanet_gateway::run_gateway(cfg).await.unwrap();
        }
        "keygen" => {
            let (s, p, i) = betanet_gateway::new_site_ticket_key().unwrap();
            let mut seed = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut seed);
            let site = betanet_crypto::sign::SigningKey::from_seed(&seed);
            println!(
                "{} {p} {i} {} {}",
                s.as_str(),
                hex::encode(seed),
                hex::encode(site.verifying_key().to_bytes())
            );
        }
        "tickets" => {
            let keys = keys_from(a(2), a(3));
            let n: usize = a(4).parse().unwrap();
            let mut out = String::new();
            for _ in 0..n {
                out.push_str(&cookie(keys));
                out.push('\n');
            }
            print!("{out}");
        }
        "load" => {
            let keys = (args.len() > 6).then(|| keys_from(a(5), a(6)));
            load(
                a(2).parse().unwrap(),
                a(3).parse().unwrap(),
                a(4).parse().unwrap(),
                keys,
            )
            .await;
        }
        "flood" => {
            let kid: [u8; 8] = hex::decode(a(6)).unwrap().try_into().unwrap();
            let prefix = if a(7).is_empty() { "127.0.1" } else { a(7) };
            flood(
                a(2).parse().unwrap(),
                a(3).parse().unwrap(),
                a(4).parse().unwrap(),
                a(5).parse().unwrap(),
                kid,
                prefix,
            )
            .await;
        }
        "floodbench" => {
            floodbench(
                a(2).parse().unwrap(),
                keys_from(a(3), a(4)),
                a(5).parse().unwrap(),
                a(6).parse().unwrap(),
                a(7).parse().unwrap(),
                a(8).parse().unwrap(),
            )
            .await;
        }
        _ => eprintln!("usage: bench keygen|backend|gateway|tickets|load|flood|floodbench ..."),
    }
}
