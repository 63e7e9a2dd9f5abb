//! Client API (`discover_nodes`, `build_circuit`, `send_packet`, `close_circuit`,
//! `get_stats`) and hidden services, over real mixnodes on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use betanet_mix::app::{ExitApp, ExitAppStats, RequestHandler};
use betanet_mix::client::{ClientConfig, MixClient};
use betanet_mix::node::Mixnode;
use betanet_mix::select::MixNodeInfo;
use ed25519_dalek::SigningKey;
use tempfile::TempDir;
use tokio::sync::mpsc;

struct Net {
    nodes: Vec<Mixnode>,
    stats: Vec<Arc<Mutex<ExitAppStats>>>,
    _dirs: Vec<TempDir>,
}

async fn start(n: usize) -> Net {
    let mut nodes = Vec::new();
    let mut stats = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..n {
        let d = tempfile::tempdir().unwrap();
        let c = common::node_config("127.0.0.1:0".parse().unwrap(), d.path(), 5, 100_000);
        let (tx, rx) = mpsc::channel(1024);
        let node = Mixnode::start(c, Some(tx)).await.unwrap();
        let handler: RequestHandler = Arc::new(|d: &[u8]| {
            let mut v = b"echo:".to_vec();
            v.extend_from_slice(d);
            Some(v)
        });
        let st = Arc::new(Mutex::new(ExitAppStats::default()));
        ExitApp::new(node.info().id, Some(handler)).spawn(
            rx,
            node.packet_sender(),
            Some(st.clone()),
        );
        stats.push(st);
        nodes.push(node);
        dirs.push(d);
    }
    Net {
        nodes,
        stats,
        _dirs: dirs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_api_circuits_and_replies() {
    let net = start(5).await;
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    let mut seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    // an unreachable seed is skipped
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    seeds.push(dead.local_addr().unwrap());
    drop(dead);
    let found = client.discover_nodes(&seeds).await;
    assert_eq!(found.len(), 5);
    for n in &net.nodes {
        assert!(found.contains(&n.info()), "descriptor mismatch");
    }

    let c3 = client.build_circuit("c3", 3, &[]).unwrap();
    assert_eq!(c3.hops.len(), 3);
    let mut ids: Vec<_> = c3.hops.iter().map(|h| h.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 3, "hops must be distinct");
    let (ok, resp) = client
        .send_packet("c3", b"hello", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(ok);
    assert_eq!(resp.as_deref(), Some(&b"echo:hello"[..]));

    let pref = net.nodes[4].local_addr();
    let c5 = client.build_circuit("c5", 5, &[pref]).unwrap();
    assert_eq!(c5.hops.len(), 5);
    assert_eq!(c5.hops[0].addr.0, pref);
    let (ok, resp) = client
        .send_packet("c5", &[7u8; 900], Some(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(ok);
    let mut want = b"echo:".to_vec();
    want.extend_from_slice(&[7u8; 900]);
    assert_eq!(resp.unwrap(), want);

    // strict mode raises a 1-hop request to 3 hops
    assert_eq!(client.build_circuit("c1", 1, &[]).unwrap().hops.len(), 3);

    let st = client.get_stats();
    assert_eq!(st.available_nodes, 5);
    assert_eq!(st.active_circuits, 3);
    assert_eq!(st.total_packets_sent, 2);
    assert_eq!(st.replies_received, 2);
    assert_eq!(st.failed_sends, 0);
    assert!(st.beacon_fallbacks >= 2);
    assert!(client.close_circuit("c3"));
    assert!(!client.close_circuit("c3"));
    assert!(client.send_packet("c3", b"x", None).await.is_err());
    assert_eq!(client.get_stats().active_circuits, 2);
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_service_through_rendezvous() {
    let net = start(5).await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();

    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let key = SigningKey::from_bytes(&[42u8; 32]);
    let mut hs = betanet_mix::client::HiddenService::new(svc_client, key).unwrap();
    let url = hs.url();
    assert!(url.starts_with("betanet://") && url.len() == 10 + 64);
    let intro: MixNodeInfo = net.nodes[3].info();
    hs.register_intro(&intro, 4).await.unwrap();
    for _ in 0..500 {
        if net.stats[3].lock().unwrap().intros_registered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(net.stats[3].lock().unwrap().intros_registered, 4);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    let serve = tokio::spawn(async move {
        let handler = |d: &[u8]| {
            let mut v = b"svc:".to_vec();
            v.extend_from_slice(d);
            v
        };
        let mut served = 0;
        for _ in 0..300 {
            if hs
                .serve_one(&handler, Duration::from_millis(100))
                .await
                .unwrap()
            {
                served += 1;
            }
            if served == 3 {
                break;
            }
        }
        served
    });

    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    client.discover_nodes(&seeds).await;
    // a descriptor presented under another id is refused
    let other = format!("betanet://{}", "0".repeat(64));
    assert!(
        client
            .connect_service(&other, &desc, now, Duration::from_secs(1))
            .await
            .is_err()
    );
    let mut s = client
        .connect_service(&url, &desc, now, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(
        s.request(b"ping", Duration::from_secs(10)).await.unwrap(),
        b"svc:ping"
    );
    assert_eq!(
        s.request(b"again", Duration::from_secs(10)).await.unwrap(),
        b"svc:again"
    );
    assert_eq!(serve.await.unwrap(), 3);
    assert_eq!(net.stats[3].lock().unwrap().introductions, 1);
    // the used intro reply block was replaced: 4 + 1 registrations
    for _ in 0..500 {
        if net.stats[3].lock().unwrap().intros_registered >= 5 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(net.stats[3].lock().unwrap().intros_registered, 5);
    let relayed: u64 = net.stats.iter().map(|s| s.lock().unwrap().rv_relayed).sum();
    assert_eq!(relayed, 5, "join + 2 requests + 2 responses");
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}
