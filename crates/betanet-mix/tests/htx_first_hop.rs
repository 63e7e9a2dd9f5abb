//! The client's first hop over HTX: mixnodes that advertise their HTX ingress are discovered at
//! their TCP ingress, and a `MixClient` hands packets to the first hop over an HTX stream pinned
//! to the identity from the verified descriptor. A client in `Tcp` mode, or in `Htx` mode
//! without a verified identity, fails with `MixError::FirstHop` instead of hanging.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use betanet_mix::app::{ExitApp, RequestHandler};
use betanet_mix::client::{ClientConfig, FirstHop, MixClient};
use betanet_mix::error::MixError;
use betanet_mix::node::{Advertise, Metrics, Mixnode, MixnodeConfig, PeerConfig, PeerTransport};
use tempfile::TempDir;
use tokio::sync::mpsc;

struct Net {
    nodes: Vec<Mixnode>,
    _dirs: Vec<TempDir>,
}

fn node_cfg(dir: &TempDir, listen: &str, htx: &str) -> MixnodeConfig {
    let mut c = common::node_config(listen.parse().unwrap(), dir.path(), 3, 10_000);
    c.htx_listen = Some(htx.parse().unwrap());
    c.advertise = Advertise::Htx;
    c
}

/// Starts a node that is an echo exit.
async fn echo_node(c: MixnodeConfig) -> Mixnode {
    let (tx, rx) = mpsc::channel(256);
    let node = Mixnode::start(c, Some(tx)).await.unwrap();
    let handler: RequestHandler = Arc::new(|d: &[u8]| {
        let mut v = b"echo:".to_vec();
        v.extend_from_slice(d);
        Some(v)
    });
    ExitApp::new(node.info().id, Some(handler)).spawn(rx, node.packet_sender(), None);
    node
}

/// Makes `n` reach every node of `all` over HTX pinned to its identity.
fn add_htx_peers(n: &Mixnode, all: &[&Mixnode]) {
    for p in all {
        n.add_peer(PeerConfig {
            addr: p.htx_addr().unwrap(),
            public_key: Some(
                betanet_crypto::sign::VerifyingKey::from_bytes(&p.identity_public()).unwrap(),
            ),
            transport: PeerTransport::Htx(betanet_net::Transport::Tcp12),
        });
    }
}

/// Three nodes with an HTX ingress they advertise, each knowing all three as HTX peers, each
/// an echo exit.
async fn start_htx_nodes() -> Net {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let d = tempfile::tempdir().unwrap();
        nodes.push(echo_node(node_cfg(&d, "127.0.0.1:0", "127.0.0.1:0")).await);
        dirs.push(d);
    }
    let all: Vec<&Mixnode> = nodes.iter().collect();
    for n in &nodes {
        add_htx_peers(n, &all);
    }
    Net { nodes, _dirs: dirs }
}

fn client_cfg(first_hop: FirstHop) -> ClientConfig {
    ClientConfig {
        first_hop,
        connect_timeout: Duration::from_secs(1),
        ..ClientConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_first_hop_over_htx() {
    let net = start_htx_nodes().await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();

    // Htx mode: discovery over the TCP ingress, packets over HTX.
    let client = MixClient::start(client_cfg(FirstHop::Htx)).await.unwrap();
    let found = client.discover_nodes(&seeds).await;
    assert_eq!(found.len(), 3);
    for n in &net.nodes {
        let info = n.info();
        assert!(found.contains(&info), "descriptor mismatch");
        assert_eq!(info.addr.0, n.htx_addr().unwrap(), "node advertises HTX");
        assert_eq!(client.node_identity(&info.id), Some(n.identity_public()));
        assert_eq!(client.first_hop_transport(&info), FirstHop::Htx);
    }
    let order: Vec<_> = net.nodes.iter().map(|n| n.htx_addr().unwrap()).collect();
    let c = client.build_circuit("c", 3, &order).unwrap();
    assert_eq!(c.hops.len(), 3);
    assert_eq!(c.hops[0].id, net.nodes[0].info().id);
    for i in 0..4u8 {
        let payload = [b'p', i];
        let (sent, resp) = client
            .send_packet("c", &payload, Some(Duration::from_secs(5)))
            .await
            .unwrap();
        assert!(sent);
        let mut want = b"echo:".to_vec();
        want.extend_from_slice(&payload);
        assert_eq!(resp.as_deref(), Some(&want[..]), "echo {i}");
    }
    let st = client.get_stats();
    assert_eq!(st.replies_received, 4);
    assert_eq!(
        st.first_hop_htx_links, 1,
        "one pooled HTX link to the first hop"
    );
    assert_eq!(st.first_hop_tcp_links, 0);
    // The first hop accepted two HTX streams: the client's and the one from node 1 on the
    // reply path (node 1 → node 0 → client). Had the client spoken TCP, there would be one.
    let m0 = net.nodes[0].metrics();
    assert!(
        Metrics::get(&m0.htx_streams) >= 2,
        "first hop HTX streams: {}",
        Metrics::get(&m0.htx_streams)
    );
    // 4 requests from the client + 4 replies passing on the way back.
    assert_eq!(Metrics::get(&m0.packets_received), 8);
    assert_eq!(Metrics::get(&m0.dropped_invalid), 0);

    // Auto mode picks HTX for these nodes (they advertise an address other than the one
    // they were described at) and works the same.
    let auto = MixClient::start(client_cfg(FirstHop::Auto)).await.unwrap();
    auto.discover_nodes(&seeds).await;
    assert_eq!(
        auto.first_hop_transport(&net.nodes[0].info()),
        FirstHop::Htx
    );
    auto.build_circuit("a", 3, &order).unwrap();
    let (sent, resp) = auto
        .send_packet("a", b"auto", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(sent);
    assert_eq!(resp.as_deref(), Some(&b"echo:auto"[..]));
    assert_eq!(auto.get_stats().first_hop_htx_links, 1);

    // Tcp mode against an HTX port: a clear error, quickly (bounded by the connect timeout).
    let tcp = MixClient::start(client_cfg(FirstHop::Tcp)).await.unwrap();
    tcp.discover_nodes(&seeds).await;
    tcp.build_circuit("t", 3, &order).unwrap();
    let t0 = Instant::now();
    let err = tcp
        .send_packet("t", b"x", Some(Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    match &err {
        MixError::FirstHop { addr, reason } => {
            assert_eq!(*addr, net.nodes[0].htx_addr().unwrap());
            assert!(reason.contains("mix ingress"), "{reason}");
        }
        e => panic!("unexpected error {e}"),
    }
    assert_eq!(tcp.get_stats().replies_received, 0);

    // Htx mode with nodes learnt without their identity: a clear error, no TCP fallback.
    let blind = MixClient::start(client_cfg(FirstHop::Htx)).await.unwrap();
    blind.add_nodes(&found);
    blind.build_circuit("b", 3, &order).unwrap();
    let err = blind.send_packet("b", b"x", None).await.unwrap_err();
    assert!(
        matches!(&err, MixError::FirstHop { reason, .. } if reason.contains("identity")),
        "{err}"
    );
    assert_eq!(blind.get_stats().first_hop_tcp_links, 0);
    // ... and it works once the identity is added.
    let id = blind
        .add_node_identity(net.nodes[0].identity_public(), true)
        .unwrap();
    assert_eq!(id, net.nodes[0].info().id);
    let (sent, resp) = blind
        .send_packet("b", b"late", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(sent);
    assert_eq!(resp.as_deref(), Some(&b"echo:late"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn htx_first_hop_is_redialled_after_the_node_restarts() {
    let mut net = start_htx_nodes().await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    let order: Vec<_> = net.nodes.iter().map(|n| n.htx_addr().unwrap()).collect();
    let client = MixClient::start(client_cfg(FirstHop::Htx)).await.unwrap();
    assert_eq!(client.discover_nodes(&seeds).await.len(), 3);
    client.build_circuit("c", 3, &order).unwrap();
    let (_, resp) = client
        .send_packet("c", b"one", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert_eq!(resp.as_deref(), Some(&b"echo:one"[..]));

    // Restart the first hop on the same addresses and state (same identity and mix key).
    let old = net.nodes.remove(0);
    let (tcp, htx) = (old.local_addr(), old.htx_addr().unwrap());
    old.shutdown().await.unwrap();
    // While it is down the first hop is unreachable: `(false, None)`, not an error.
    let mut unreachable = false;
    for _ in 0..10 {
        let r = client
            .send_packet("c", b"down", Some(Duration::from_millis(300)))
            .await
            .unwrap();
        assert_eq!(r.1, None);
        if !r.0 {
            unreachable = true;
            break;
        }
    }
    assert!(
        unreachable,
        "a send to the stopped first hop must report not sent"
    );
    assert!(client.get_stats().failed_sends >= 1);
    let restarted = echo_node(node_cfg(&net._dirs[0], &tcp.to_string(), &htx.to_string())).await;
    let mut all: Vec<&Mixnode> = net.nodes.iter().collect();
    all.push(&restarted);
    add_htx_peers(&restarted, &all);

    let mut answer = None;
    for _ in 0..5 {
        if let (true, Some(r)) = client
            .send_packet("c", b"two", Some(Duration::from_secs(2)))
            .await
            .unwrap()
        {
            answer = Some(r);
            break;
        }
    }
    assert_eq!(answer.as_deref(), Some(&b"echo:two"[..]));
    assert_eq!(client.get_stats().first_hop_htx_links, 2, "one re-dial");
    assert!(Metrics::get(&restarted.metrics().htx_streams) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_uses_tcp_for_tcp_advertising_nodes() {
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let d = tempfile::tempdir().unwrap();
        let mut c = node_cfg(&d, "127.0.0.1:0", "127.0.0.1:0");
        c.advertise = Advertise::Tcp;
        nodes.push(echo_node(c).await);
        dirs.push(d);
    }
    let seeds: Vec<_> = nodes.iter().map(Mixnode::local_addr).collect();

    let auto = MixClient::start(client_cfg(FirstHop::Auto)).await.unwrap();
    assert_eq!(auto.discover_nodes(&seeds).await.len(), 3);
    for n in &nodes {
        assert_eq!(auto.first_hop_transport(&n.info()), FirstHop::Tcp);
    }
    auto.build_circuit("c", 3, &seeds).unwrap();
    let (sent, resp) = auto
        .send_packet("c", b"tcp", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    assert!(sent);
    assert_eq!(resp.as_deref(), Some(&b"echo:tcp"[..]));
    let st = auto.get_stats();
    assert_eq!((st.first_hop_tcp_links, st.first_hop_htx_links), (1, 0));
    assert_eq!(Metrics::get(&nodes[0].metrics().htx_streams), 0);

    // Htx mode against a node whose descriptor names its TCP ingress: no HTX handshake there.
    let htx = MixClient::start(client_cfg(FirstHop::Htx)).await.unwrap();
    htx.discover_nodes(&seeds).await;
    htx.build_circuit("h", 3, &seeds).unwrap();
    let r = htx
        .send_packet("h", b"x", Some(Duration::from_secs(2)))
        .await;
    assert!(
        matches!(&r, Err(MixError::FirstHop { reason, .. }) if reason.contains("HTX handshake failed")),
        "{r:?}"
    );
    assert_eq!(htx.get_stats().first_hop_htx_links, 0);
}
