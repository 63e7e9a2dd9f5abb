//! Node-to-node forwarding over HTX inside one process: a configured peer is dialled over
//! `tcp12` pinned to its identity; an unknown next hop follows the `unknown_peers` policy; a
//! peer with the wrong identity is never reached.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::time::Duration;

use betanet_mix::node::{
    Delivery, Metrics, Mixnode, MixnodeConfig, PeerConfig, PeerTransport, UnknownPeers, write_frame,
};
use betanet_mix::packet::{NodeAddr, PacketSize, RouteHop, build_packet};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tempfile::TempDir;
use tokio::sync::mpsc;

fn cfg(dir: &TempDir) -> MixnodeConfig {
    let mut c = common::node_config("127.0.0.1:0".parse().unwrap(), dir.path(), 3, 10_000);
    c.htx_listen = Some("127.0.0.1:0".parse().unwrap());
    c
}

async fn wait(node: &Mixnode, f: impl Fn(&Metrics) -> u64, want: u64) {
    for _ in 0..500 {
        if f(node.metrics()) >= want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("metric never reached {want} (is {})", f(node.metrics()));
}

fn hop(n: &Mixnode) -> RouteHop {
    let (epoch, key) = n.current_key();
    RouteHop {
        addr: NodeAddr(n.htx_addr().unwrap()),
        epoch,
        key,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_over_htx_to_configured_peers_only() {
    let (db, dbad, da) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (tx, mut rx) = mpsc::channel::<Delivery>(16);
    let b = Mixnode::start(cfg(&db), Some(tx)).await.unwrap();
    let (txbad, mut rxbad) = mpsc::channel::<Delivery>(16);
    let bad = Mixnode::start(cfg(&dbad), Some(txbad)).await.unwrap();
    let mut ca = cfg(&da);
    ca.unknown_peers = UnknownPeers::Drop;
    ca.peers = vec![
        PeerConfig {
            addr: b.htx_addr().unwrap(),
            public_key: Some(
                betanet_crypto::sign::VerifyingKey::from_bytes(&b.identity_public()).unwrap(),
            ),
            transport: PeerTransport::Htx(betanet_net::Transport::Tcp12),
        },
        // `bad` is listed with b's identity: the HTX handshake must fail.
        PeerConfig {
            addr: bad.htx_addr().unwrap(),
            public_key: Some(
                betanet_crypto::sign::VerifyingKey::from_bytes(&b.identity_public()).unwrap(),
            ),
            transport: PeerTransport::Htx(betanet_net::Transport::Tcp12),
        },
    ];
    let a = Mixnode::start(ca, None).await.unwrap();
    let mut rng = StdRng::seed_from_u64(1);
    let a_tcp = RouteHop {
        addr: NodeAddr(a.local_addr()),
        ..hop(&a)
    };
    let mut pkts = Vec::new();
    for i in 0..5u8 {
        let (_, p) = build_packet(
            &mut rng,
            PacketSize::K1,
            &[a_tcp, hop(&b)],
            [i; 32],
            &[i; 3],
        )
        .unwrap();
        pkts.push(p);
    }
    // An unknown next hop (b's plain TCP ingress is not a configured peer).
    let b_tcp = RouteHop {
        addr: NodeAddr(b.local_addr()),
        ..hop(&b)
    };
    let (_, unknown) =
        build_packet(&mut rng, PacketSize::K1, &[a_tcp, b_tcp], [9; 32], b"x").unwrap();
    let (_, wrong_id) =
        build_packet(&mut rng, PacketSize::K1, &[a_tcp, hop(&bad)], [8; 32], b"y").unwrap();
    let mut ingress = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    for p in &pkts {
        write_frame(&mut ingress, p).await.unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..5 {
        let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        got.push((d.dest[0], d.message));
    }
    got.sort();
    assert_eq!(got, (0..5u8).map(|i| (i, vec![i; 3])).collect::<Vec<_>>());
    assert_eq!(
        Metrics::get(&a.metrics().egress_connects),
        1,
        "one pooled link"
    );
    assert!(Metrics::get(&b.metrics().htx_streams) >= 1);

    write_frame(&mut ingress, &unknown).await.unwrap();
    wait(&a, |m| Metrics::get(&m.dropped_unknown_peer), 1).await;
    write_frame(&mut ingress, &wrong_id).await.unwrap();
    wait(&a, |m| Metrics::get(&m.egress_connect_failures), 1).await;
    wait(&a, |m| Metrics::get(&m.dropped_peer_down), 1).await;
    assert!(rxbad.try_recv().is_err());
    assert_eq!(Metrics::get(&bad.metrics().packets_received), 0);
    assert!(rx.try_recv().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_learnt_from_a_signed_descriptor() {
    let (db, da) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cb = cfg(&db);
    cb.advertise = betanet_mix::node::Advertise::Htx;
    let (tx, mut rx) = mpsc::channel::<Delivery>(16);
    let b = Mixnode::start(cb, Some(tx)).await.unwrap();
    assert_eq!(b.route_hop().addr, NodeAddr(b.htx_addr().unwrap()));
    let mut ca = cfg(&da);
    ca.unknown_peers = UnknownPeers::Drop;
    let a = Mixnode::start(ca, None).await.unwrap();

    let desc = b.descriptor();
    let mut forged = desc.clone();
    forged[70] ^= 1; // the signed address
    assert!(PeerConfig::from_descriptor(&forged, betanet_net::Transport::Tcp12).is_err());
    let (peer, info) = PeerConfig::from_descriptor(&desc, betanet_net::Transport::Tcp12).unwrap();
    assert_eq!(peer.addr, b.htx_addr().unwrap());
    assert_eq!(peer.public_key.unwrap().to_bytes(), b.identity_public());
    assert_eq!(info.addr, b.route_hop().addr);
    a.add_peer(peer);

    let mut rng = StdRng::seed_from_u64(2);
    let a_tcp = RouteHop {
        addr: NodeAddr(a.local_addr()),
        ..a.route_hop()
    };
    let (_, p) = build_packet(
        &mut rng,
        PacketSize::K2,
        &[a_tcp, b.route_hop()],
        [3; 32],
        b"via descriptor",
    )
    .unwrap();
    let mut ingress = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    write_frame(&mut ingress, &p).await.unwrap();
    let d = tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((d.dest, d.message), ([3; 32], b"via descriptor".to_vec()));
    assert_eq!(Metrics::get(&a.metrics().dropped_unknown_peer), 0);
    assert!(Metrics::get(&b.metrics().htx_streams) >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_peer_is_not_redialled_for_every_packet() {
    let da = tempfile::tempdir().unwrap();
    // A port with nothing listening (bound, then closed).
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let a = Mixnode::start(cfg(&da), None).await.unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let a_tcp = RouteHop {
        addr: NodeAddr(a.local_addr()),
        ..a.route_hop()
    };
    let dead_hop = RouteHop {
        addr: NodeAddr(dead),
        ..a.route_hop()
    };
    let mut ingress = tokio::net::TcpStream::connect(a.local_addr())
        .await
        .unwrap();
    let (_, p) = build_packet(&mut rng, PacketSize::K1, &[a_tcp, dead_hop], [1; 32], b"1").unwrap();
    write_frame(&mut ingress, &p).await.unwrap();
    wait(&a, |m| Metrics::get(&m.dropped_peer_down), 1).await;
    // Within the back-off, more packets are dropped without new dials.
    for i in 0..5u8 {
        let (_, p) =
            build_packet(&mut rng, PacketSize::K1, &[a_tcp, dead_hop], [i; 32], b"2").unwrap();
        write_frame(&mut ingress, &p).await.unwrap();
    }
    wait(&a, |m| Metrics::get(&m.dropped_peer_down), 6).await;
    let failures = Metrics::get(&a.metrics().egress_connect_failures);
    assert!(
        (1..=2).contains(&failures),
        "{failures} dials for 6 packets within the back-off"
    );
    // After the back-off, the hop is dialled again.
    tokio::time::sleep(betanet_mix::node::PEER_RETRY_BACKOFF + Duration::from_millis(50)).await;
    let (_, p) = build_packet(&mut rng, PacketSize::K1, &[a_tcp, dead_hop], [9; 32], b"3").unwrap();
    write_frame(&mut ingress, &p).await.unwrap();
    wait(
        &a,
        |m| Metrics::get(&m.egress_connect_failures),
        failures + 1,
    )
    .await;
}
