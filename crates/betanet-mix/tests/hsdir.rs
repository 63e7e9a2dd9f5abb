//! Hidden-service directories over real mixnodes on 127.0.0.1: a service publishes its
//! descriptor through the mixnet, a client that never saw the descriptor looks it up by id and
//! fetches; forged and expired descriptors are refused by the directory nodes.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use betanet_mix::MixError;
use betanet_mix::app::{ExitApp, ExitAppStats};
use betanet_mix::client::{ClientConfig, HiddenService, MixClient};
use betanet_mix::hsdir::{self, PublishStatus};
use betanet_mix::node::{Mixnode, MixnodeConfig};
use tempfile::TempDir;
use tokio::sync::mpsc;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn start(n: usize) -> (Vec<Mixnode>, Vec<Arc<Mutex<ExitAppStats>>>, Vec<TempDir>) {
    let (mut nodes, mut stats, mut dirs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let d = tempfile::tempdir().unwrap();
        let c = common::node_config("127.0.0.1:0".parse().unwrap(), d.path(), 5, 100_000);
        let (tx, rx) = mpsc::channel(1024);
        let node = Mixnode::start(c, Some(tx)).await.unwrap();
        let st = Arc::new(Mutex::new(ExitAppStats::default()));
        ExitApp::new(node.info().id, None).spawn(rx, node.packet_sender(), Some(st.clone()));
        stats.push(st);
        nodes.push(node);
        dirs.push(d);
    }
    (nodes, stats, dirs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_lookup_fetch_and_refusals() {
    let (nodes, stats, _dirs) = start(6).await;
    let seeds: Vec<_> = nodes.iter().map(Mixnode::local_addr).collect();

    // The service: registers an intro point and publishes through the mixnet.
    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc_client.clone(), &[42; 32]).unwrap();
    let url = hs.url();
    let intro = nodes[0].info();
    hs.register_intro(&intro, 4).await.unwrap();
    for _ in 0..500 {
        if stats[0].lock().unwrap().intros_registered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = now();
    let desc = hs.descriptor(&[intro], t - 60, t + 3600);
    let acks = hs
        .publish_descriptor(&desc, t, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(acks.len() >= 3, "{acks:?}");
    assert!(
        acks.iter().all(|a| a.status == Some(PublishStatus::Stored)),
        "{acks:?}"
    );
    // The acks come from the responsible nodes.
    let sid = betanet_mix::descriptor::parse_service_url(&url).unwrap();
    let today = svc_client.hsdirs(&sid, hsdir::epoch_day(t));
    assert_eq!(today.len(), hsdir::HSDIR_REPLICAS);
    for d in &today {
        assert!(acks.iter().any(|a| a.node.id == d.id));
    }
    let stored: u64 = stats
        .iter()
        .map(|s| s.lock().unwrap().descriptors_stored)
        .sum();
    assert_eq!(stored, acks.len() as u64);
    tokio::spawn(hs.serve(
        |req: Vec<u8>| async move {
            let mut v = b"hidden:".to_vec();
            v.extend_from_slice(&req);
            v
        },
        4,
    ));

    // A client that never saw the descriptor: lookup by id, connect, fetch.
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    client.discover_nodes(&seeds).await;
    let found = client
        .lookup_descriptor(&url, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(found, desc);
    let mut s = client
        .connect_service_by_id(&url, now(), Duration::from_secs(10))
        .await
        .unwrap();
    let resp = s.fetch(b"GET /", Duration::from_secs(10)).await.unwrap();
    assert_eq!(resp, b"hidden:GET /");
    let lookups: u64 = stats
        .iter()
        .map(|s| s.lock().unwrap().descriptor_lookups)
        .sum();
    assert!(lookups >= 2, "{lookups}");

    // Unknown id: every directory answers "not found".
    let other = betanet_mix::descriptor::service_url(&[7; 32]);
    match client
        .lookup_descriptor(&other, Duration::from_secs(10))
        .await
    {
        Err(MixError::DescriptorNotFound { asked }) => assert!(asked >= 3),
        r => panic!("unexpected {r:?}"),
    }

    // Forged (signature byte flipped) and expired descriptors are refused by the directory.
    let mut forged = desc.clone();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let acks = svc_client
        .publish_descriptor(&forged, t, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        acks.iter()
            .all(|a| a.status == Some(PublishStatus::Invalid)),
        "{acks:?}"
    );
    let other_hs = HiddenService::from_seed(svc_client.clone(), &[43; 32]).unwrap();
    let expired = other_hs.descriptor(&[intro], t - 7200, t - 3600);
    let acks = svc_client
        .publish_descriptor(&expired, t, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(
        acks.iter()
            .all(|a| a.status == Some(PublishStatus::Expired)),
        "{acks:?}"
    );
    match client
        .lookup_descriptor(&other_hs.url(), Duration::from_secs(10))
        .await
    {
        Err(MixError::DescriptorNotFound { .. }) => {}
        r => panic!("unexpected {r:?}"),
    }
    // The forged copy did not replace the good one.
    assert_eq!(
        client
            .lookup_descriptor(&url, Duration::from_secs(10))
            .await
            .unwrap(),
        desc
    );
    let refused: u64 = stats
        .iter()
        .map(|s| s.lock().unwrap().descriptors_refused)
        .sum();
    assert!(refused >= 6, "{refused}");
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_without_answers_times_out() {
    // Nodes known to the client but whose exit application is not running: no answers.
    let d = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    let mut rxs = Vec::new();
    for i in 0..3 {
        let c = MixnodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            d.path().join(format!("n{i}")),
        );
        let (tx, rx) = mpsc::channel(16);
        nodes.push(Mixnode::start(c, Some(tx)).await.unwrap());
        rxs.push(rx);
    }
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    let seeds: Vec<_> = nodes.iter().map(Mixnode::local_addr).collect();
    client.discover_nodes(&seeds).await;
    let url = betanet_mix::descriptor::service_url(&[9; 32]);
    match client
        .lookup_descriptor(&url, Duration::from_millis(800))
        .await
    {
        Err(MixError::LookupTimeout { asked, answered }) => {
            assert!(asked >= 3);
            assert_eq!(answered, 0);
        }
        r => panic!("unexpected {r:?}"),
    }
    drop(rxs);
    for n in nodes {
        n.shutdown().await.unwrap();
    }
}
