#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! The production upstream end to end: the gateway's pooled, multiplexed `HtxConnector`
//! (one HTX stream per request on `pool_size` connections) to a real betanet-app site served
//! over HTX/tcp12 (`betanet_app::htx::serve_listener`, what `betanet serve` runs).

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_crypto::sign::SigningKey;
use betanet_gateway::{Gateway, HtxConnector};
use common::*;
use http_body_util::BodyExt;
use rand::SeedableRng;

fn site_app() -> Arc<betanet_app::App> {
    let mut app = betanet_app::App::new();
    app.get("/echo/{x}", |req: betanet_app::Request| async move {
        format!(
            "echo {} cookie={}\n",
            req.param("x").unwrap_or(""),
            req.header("cookie").unwrap_or("-")
        )
    })
    .unwrap();
    app.into_shared()
}

/// Serves the site on its own runtime (a thread), so dropping the runtime kills every HTX
/// connection at once, like a site process dying.
fn start_site(addr: SocketAddr, key: SigningKey) -> (tokio::runtime::Runtime, SocketAddr) {
    // A runtime cannot be started from inside the test's runtime: build it on a thread.
    std::thread::spawn(move || start_site_on_this_thread(addr, key))
        .join()
        .unwrap()
}

fn start_site_on_this_thread(
    addr: SocketAddr,
    key: SigningKey,
) -> (tokio::runtime::Runtime, SocketAddr) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bound = rt.block_on(async move {
        let mut cfg = betanet_net::ServerConfig::new(key);
        cfg.pq = betanet_net::PqMode::Classic;
        // The port may still be in TIME_WAIT use right after a restart: retry briefly.
        let mut listener = None;
        for _ in 0..100 {
            match betanet_net::listen(&addr.to_string(), cfg.clone()).await {
                Ok(l) => {
                    listener = Some(l);
                    break;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
        let listener = listener.unwrap();
        let bound = listener.local_addr();
        tokio::spawn(betanet_app::htx::serve_listener(site_app(), listener, 64));
        bound
    });
    (rt, bound)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_htx_upstream_multiplexes_and_redials() {
    let site_key = SigningKey::from_seed(&[3u8; 32]);
    let (site_rt, site_addr) = start_site("127.0.0.1:0".parse().unwrap(), site_key.clone());
    let (secret, id, key) = test_key(9);
    let decoy = decoy_origin().await;
    let cfg = full_config(&secret, &id, decoy, site_addr, &Opts::default());
    let connector = HtxConnector::new(
        site_addr.to_string(),
        site_key.verifying_key(),
        SigningKey::from_seed(&[4u8; 32]),
        betanet_net::Transport::Tcp12,
        2,
    )
    .with_pq(betanet_net::PqMode::Classic);
    let gw = Gateway::start(cfg, Arc::new(connector)).await.unwrap();
    let addr = gw.local_addr();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);

    // 8 keep-alive connections × 16 requests at once, ticket on each connection's first
    // request only; every answer is the site's, in order, with the ticket cookie stripped
    // and the other cookie passed on.
    let mut set = tokio::task::JoinSet::new();
    for c in 0..8u32 {
        let ticket = cookie(&key, &mut rng);
        set.spawn(async move {
            let mut s = h1(None, addr).await;
            for i in 0..16u32 {
                let cookie = if i == 0 {
                    format!("{ticket}; s={c}")
                } else {
                    format!("s={c}")
                };
                let r = send(&mut s, get(&format!("/echo/{c}-{i}"), Some(&cookie)))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body = r.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("echo {c}-{i} cookie=s={c}\n").as_bytes());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let m = gw.metrics();
    assert_eq!(m.requests_with("forwarded"), 128);
    assert_eq!(m.admissions_with("admitted"), 8);

    // The site dies (every HTX connection with it) and comes back on the same address: the
    // pool re-dials and requests are forwarded again within 3 s.
    site_rt.shutdown_background();
    let (site_rt2, again) = start_site(site_addr, site_key);
    assert_eq!(again, site_addr);
    let mut s = h1(None, addr).await;
    let ticket = cookie(&key, &mut rng);
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut first = true;
    let mut ok = false;
    let mut bad_gateway = 0;
    while Instant::now() < deadline {
        let c = if first { Some(ticket.as_str()) } else { None };
        first = false;
        let r = send(&mut s, get("/echo/back", c)).await.unwrap();
        let status = r.status();
        let body = r.into_body().collect().await.unwrap().to_bytes();
        if status == 200 {
            assert_eq!(body, &b"echo back cookie=-\n"[..]);
            ok = true;
            break;
        }
        // Until the dead connections are noticed: the gateway's own 502, never a hang.
        assert_eq!(status, 502);
        bad_gateway += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("site restarted: {bad_gateway} × 502 before the first 200");
    assert!(ok, "no 200 within 3 s after the site restarted");
    // The first site runtime is gone: a 200 proves the pool dialed the restarted site.
    gw.shutdown().await;
    site_rt2.shutdown_background();
}
