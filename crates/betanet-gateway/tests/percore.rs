#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! One event loop per core (`PerCoreGateway`): two single-threaded loops with SO_REUSEPORT
//! listeners on one address, an HTX pool each, one shared verifier and replay store.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use betanet_crypto::sign::SigningKey;
use betanet_gateway::{HtxConnector, PerCoreGateway, SiteConnector};
use common::*;
use http_body_util::BodyExt;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn site_app() -> Arc<betanet_app::App> {
    let mut app = betanet_app::App::new();
    app.get("/echo/{x}", |req: betanet_app::Request| async move {
        format!("echo {}\n", req.param("x").unwrap_or(""))
    })
    .unwrap();
    app.into_shared()
}

/// The HTX site on its own runtime (thread).
fn start_site(key: SigningKey) -> (tokio::runtime::Runtime, SocketAddr) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let bound = rt.block_on(async move {
            let mut cfg = betanet_net::ServerConfig::new(key);
            cfg.pq = betanet_net::PqMode::Classic;
            let listener = betanet_net::listen("127.0.0.1:0", cfg).await.unwrap();
            let bound = listener.local_addr();
            tokio::spawn(betanet_app::htx::serve_listener(site_app(), listener, 64));
            bound
        });
        (rt, bound)
    })
    .join()
    .unwrap()
}

/// One raw HTTP/1.1 request on a fresh connection (`Connection: close`); returns the
/// response bytes.
async fn one(addr: SocketAddr, path: &str, cookie: Option<&str>) -> Vec<u8> {
    let mut s = connect_from(None, addr).await;
    let c = cookie
        .map(|c| format!("Cookie: {c}\r\n"))
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\n{c}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    out
}

/// Which loop accepted the last connection (the one counter that moved).
fn moved(before: &[u64], after: &[u64]) -> usize {
    let d: Vec<usize> = (0..before.len())
        .filter(|&i| after[i] != before[i])
        .collect();
    assert_eq!(d.len(), 1, "exactly one loop accepts a connection");
    d[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_loops_share_the_replay_store_and_forward_over_htx() {
    let site_key = SigningKey::from_seed(&[3u8; 32]);
    let (site_rt, site_addr) = start_site(site_key.clone());
    let (secret, id, key) = test_key(11);
    let decoy = decoy_origin().await;
    let cfg = full_config(&secret, &id, decoy, site_addr, &Opts::default());
    let vk = site_key.verifying_key();
    let gw = PerCoreGateway::start_with(
        cfg,
        2,
        Box::new(move |i| {
            let c = HtxConnector::new(
                site_addr.to_string(),
                vk,
                SigningKey::from_seed(&[40 + i as u8; 32]),
                betanet_net::Transport::Tcp12,
                1,
            )
            .with_pq(betanet_net::PqMode::Classic);
            Ok(Arc::new(c) as Arc<dyn SiteConnector>)
        }),
    )
    .unwrap();
    assert_eq!(gw.loops(), 2);
    let addr = gw.local_addr();
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);

    // Admission + forwarding on keep-alive connections: 8 connections × 4 requests, ticket on
    // the first request of each; both loops end up serving (the kernel hashes connections
    // over the two listeners).
    let mut set = tokio::task::JoinSet::new();
    for c in 0..8u32 {
        let ticket = cookie(&key, &mut rng);
        set.spawn(async move {
            let mut s = h1(None, addr).await;
            for i in 0..4u32 {
                let ck = (i == 0).then_some(ticket.as_str());
                let r = send(&mut s, get(&format!("/echo/{c}-{i}"), ck))
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                let body = r.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(body, format!("echo {c}-{i}\n").as_bytes());
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.unwrap();
    }
    let m = gw.metrics();
    assert_eq!(m.requests_with("forwarded"), 32);
    assert_eq!(m.admissions_with("admitted"), 8);

    // Probes (no ticket, garbage ticket) get the decoy origin's answer byte for byte.
    let direct = one(decoy, "/bench", None).await;
    assert_eq!(status_of(&direct), 404);
    let probe = one(addr, "/bench", None).await;
    assert_eq!(strip_date(&probe), strip_date(&direct));
    let probe = one(addr, "/bench", Some("__Host-bn1=AAAA")).await;
    assert_eq!(strip_date(&probe), strip_date(&direct));

    // A ticket admitted on one loop is a replay on the other: admit it once, then replay it
    // on fresh connections until one lands on the other loop (the kernel spreads connections
    // by their 4-tuple; 40 tries fail to reach it with probability 2^-40).
    let ticket = cookie(&key, &mut rng);
    let before = gw.accepted_per_loop();
    let ok = one(addr, "/echo/first", Some(&ticket)).await;
    assert_eq!(status_of(&ok), 200);
    assert!(ok.ends_with(b"echo first\n"));
    let admitted_on = moved(&before, &gw.accepted_per_loop());
    let mut other_loop_refused = false;
    for _ in 0..40 {
        let before = gw.accepted_per_loop();
        let again = one(addr, "/echo/again", Some(&ticket)).await;
        // Every replay, on either loop, is the decoy's answer.
        assert_eq!(strip_date(&again), strip_date(&direct));
        if moved(&before, &gw.accepted_per_loop()) != admitted_on {
            other_loop_refused = true;
            break;
        }
    }
    assert!(other_loop_refused, "no replay reached the other loop");
    assert!(m.admissions_with("replay") >= 1);
    assert_eq!(m.admissions_with("admitted"), 9);
    let per_loop = gw.accepted_per_loop();
    eprintln!("connections per loop: {per_loop:?}");
    assert!(per_loop.iter().all(|&n| n > 0), "{per_loop:?}");

    tokio::task::spawn_blocking(move || gw.shutdown())
        .await
        .unwrap();
    site_rt.shutdown_background();
}
