#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Benchmark helper for `bench/nginx.sh`:
//!
//! * `bench backend <bar_addr> <http_addr>`: one handler behind two faces — BAR over TCP (for
//!   the gateway) and plain HTTP/1.1 (for nginx) — both answering `200 hello from the site\n`.
//! * `bench gateway <config.toml>`: runs the gateway (what `betanet gateway --config` does).
//! * `bench load <addr> <connections> <seconds> [<ticket_pub_hex> <key_id_hex>]`: a bounded
//!   closed-loop load generator (keep-alive; with keys, a fresh ticket cookie on the first
//!   request of each connection, none after). Prints requests/s and latency percentiles.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use betanet_gateway::barmap::full;
use betanet_ticket::ticket::RenderedCarrier;
use betanet_ticket::{Carrier, CarrierPolicy, SiteInfo, TicketKeys, make_ticket};
use betanet_wire::bar;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BODY: &[u8] = b"hello from the site\n";

async fn bar_conn(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    loop {
        if bar::stream::split_head(&buf).ok().flatten().is_some() {
            break;
        }
        let mut tmp = [0u8; 4096];
        let n = s.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    // Drain the (empty) body until FIN.
    let mut tmp = [0u8; 4096];
    while s.read(&mut tmp).await? > 0 {}
    let resp = bar::Response {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                bar::HeaderValue::Text("text/plain".into()),
            ),
            (
                "content-length".into(),
                bar::HeaderValue::Text(BODY.len().to_string()),
            ),
        ],
        body: BODY.to_vec(),
    };
    let framed = bar::stream::frame_head(&resp.encode().unwrap()).unwrap();
    s.write_all(&framed).await?;
    s.shutdown().await
}

async fn backend(bar_addr: SocketAddr, http_addr: SocketAddr) {
    let bl = TcpListener::bind(bar_addr).await.unwrap();
    let hl = TcpListener::bind(http_addr).await.unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = bl.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(bar_conn(s));
        }
    });
    println!("backend: BAR on {bar_addr}, HTTP on {http_addr}");
    loop {
        let Ok((s, _)) = hl.accept().await else {
            continue;
        };
        let _ = s.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|_req| async {
                let mut r = http::Response::new(full(Bytes::from_static(BODY)));
                r.headers_mut()
                    .insert("content-type", http::HeaderValue::from_static("text/plain"));
                Ok::<_, Infallible>(r)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
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
            let mut cookie = keys.map(|k| {
                let site = SiteInfo {
                    keys: k,
                    policy: CarrierPolicy::only(Carrier::Cookie),
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                match make_ticket(&site, now, &mut rand::rngs::OsRng)
                    .unwrap()
                    .render()
                {
                    RenderedCarrier::Cookie(c) => c,
                    _ => unreachable!(),
                }
            });
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
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "requests={} errors={} rps={:.0} p50_ms={:.3} p99_ms={:.3} max_ms={:.3}",
        all.len(),
        errors,
        all.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("backend") => backend(args[2].parse().unwrap(), args[3].parse().unwrap()).await,
        Some("gateway") => {
            let cfg = betanet_gateway::GatewayConfig::load(std::path::Path::new(&args[2]))
                .unwrap_or_else(|e| panic!("{e}"));
            betanet_gateway::run_gateway(cfg).await.unwrap();
        }
        Some("keygen") => {
            let (s, p, i) = betanet_gateway::new_site_ticket_key().unwrap();
            println!("{} {p} {i}", s.as_str());
        }
        Some("load") => {
            let keys = match (args.get(5), args.get(6)) {
                (Some(p), Some(i)) => Some(TicketKeys {
                    ticket_pub: betanet_crypto::dh::X25519Public(
                        hex::decode(p).unwrap().try_into().unwrap(),
                    ),
                    ticket_key_id: hex::decode(i).unwrap().try_into().unwrap(),
                }),
                _ => None,
            };
            load(
                args[2].parse().unwrap(),
                args[3].parse().unwrap(),
                args[4].parse().unwrap(),
                keys,
            )
            .await;
        }
        _ => eprintln!("usage: bench backend|gateway|keygen|load ..."),
    }
}
