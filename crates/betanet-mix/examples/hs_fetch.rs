//! Time to fetch through a hidden service: `cargo run -p betanet-mix --example hs_fetch --
//! [NODES] [DELAY_MAX_MS] [RESPONSE_BYTES] [ROUNDS]` (defaults 5, 150, 204800, 3). Starts
//! NODES mixnodes on 127.0.0.1 with U[max/5, max] ms per hop (150 → SPEC §7's U[30,150]), a
//! hidden service answering every request with RESPONSE_BYTES bytes, and a client that
//! connects through a rendezvous point and fetches ROUNDS times; prints each time.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::{Duration, Instant};

use betanet_mix::app::ExitApp;
use betanet_mix::client::{ClientConfig, HiddenService, MixClient};
use betanet_mix::delay::DelayDist;
use betanet_mix::node::{Mixnode, MixnodeConfig};
use tokio::sync::mpsc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let arg = |i: usize, d: u64| args.get(i).copied().unwrap_or(d);
    let (n, delay, size, rounds) = (
        arg(0, 5) as usize,
        arg(1, 150),
        arg(2, 200 * 1024) as usize,
        arg(3, 3),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for i in 0..n {
        let mut c = MixnodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            dir.path().join(format!("n{i}")),
        );
        c.delay = DelayDist::uniform(
            Duration::from_millis(delay / 5),
            Duration::from_millis(delay.max(1)),
        )
        .unwrap();
        let (tx, rx) = mpsc::channel(1024);
        let node = Mixnode::start(c, Some(tx)).await.unwrap();
        ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), None);
        nodes.push(node);
    }
    let seeds: Vec<_> = nodes.iter().map(Mixnode::local_addr).collect();
    let svc = MixClient::start(ClientConfig::default()).await.unwrap();
    svc.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc, &[1u8; 32]).unwrap();
    let intro = nodes[0].info();
    hs.register_intro(&intro, 2).await.unwrap();
    tokio::time::sleep(Duration::from_millis(4 * delay + 100)).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let url = hs.url();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    let server = tokio::spawn(hs.serve(move |_req: Vec<u8>| async move { vec![42u8; size] }, 4));
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    client.discover_nodes(&seeds).await;
    let t = Instant::now();
    let mut s = client
        .connect_service(&url, &desc, now, Duration::from_secs(30))
        .await
        .unwrap();
    println!(
        "{n} nodes, U[{},{}] ms per hop: rendezvous joined in {:.0} ms",
        delay / 5,
        delay.max(1),
        t.elapsed().as_secs_f64() * 1e3
    );
    for r in 0..rounds {
        let t = Instant::now();
        let got = s.fetch(b"GET", Duration::from_secs(60)).await.unwrap();
        assert_eq!(got.len(), size);
        let el = t.elapsed().as_secs_f64();
        println!(
            "round {r}: {size} B in {:.0} ms ({:.1} KiB/s), reply blocks {:?}",
            el * 1e3,
            size as f64 / 1024.0 / el,
            s.reply_budget()
        );
    }
    server.abort();
    for node in nodes {
        node.shutdown().await.unwrap();
    }
}
