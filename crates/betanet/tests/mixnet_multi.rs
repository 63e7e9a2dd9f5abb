//! Multi-process mixnet: 3 and 5 real `betanet mixnode` processes on 127.0.0.1, linked over HTX
//! (tcp12, each next hop pinned to its Ed25519 identity from the config's `[[peers]]`), with
//! 3-hop and 5-hop circuits to an echo exit, replies through reply blocks, and the replay filter
//! across a process restart.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_mix::app;
use betanet_mix::crypto::MixPublicKey;
use betanet_mix::node::{read_frame, write_frame};
use betanet_mix::packet::{NodeAddr, PacketSize, RouteHop, SURB_ID_LEN, Surb, build_packet};
use betanet_net::{ClientConfig, dial};
use rand::SeedableRng;
use rand::rngs::StdRng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// One `betanet mixnode` process (killed on drop).
struct Node {
    child: Option<Child>,
    config: PathBuf,
    tcp: SocketAddr,
    htx: SocketAddr,
    metrics: SocketAddr,
    mix_key: [u8; 32],
    epoch: u32,
    public: [u8; 32],
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts the process and parses what it prints up to `ready`; `None` if it exited first
    /// (e.g. one of its pre-picked ports was taken meanwhile).
    fn try_spawn(config: PathBuf, public: [u8; 32]) -> Option<Node> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_betanet"))
            .arg("mixnode")
            .arg("--config")
            .arg(&config)
            .env_remove("BETANET_DATA_DIR")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut node = Node {
            child: Some(child),
            config,
            tcp: "0.0.0.0:0".parse().unwrap(),
            htx: "0.0.0.0:0".parse().unwrap(),
            metrics: "0.0.0.0:0".parse().unwrap(),
            mix_key: [0; 32],
            epoch: 0,
            public: [0; 32],
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                // The receiver goes away after `ready`; keep draining the pipe.
                let _ = tx.send(line);
            }
        });
        loop {
            let line = match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(l) => l,
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(e) => panic!("mixnode did not print `ready` within 20 s: {e}"),
            };
            let w: Vec<&str> = line.split_whitespace().collect();
            match (w.first().copied(), w.get(1).copied()) {
                (Some("mixnode"), _) => node.tcp = w[3].parse().unwrap(),
                (Some("mix"), Some("key")) => {
                    node.mix_key = hex::decode(w[2]).unwrap().try_into().unwrap();
                    node.epoch = w[4].trim_end_matches(')').parse().unwrap();
                }
                (Some("metrics"), _) => {
                    node.metrics = w[1]
                        .trim_start_matches("http://")
                        .trim_end_matches("/metrics")
                        .parse()
                        .unwrap();
                }
                (Some("htx"), _) => node.htx = w[2].parse().unwrap(),
                (Some("public"), _) => {
                    node.public = hex::decode(w[2]).unwrap().try_into().unwrap();
                }
                (Some("ready"), _) => break,
                _ => {}
            }
        }
        assert_eq!(
            node.public, public,
            "the node must use its configured identity"
        );
        Some(node)
    }

    /// [`Node::try_spawn`] with a few retries (a restarted node reuses its ports).
    fn spawn(config: PathBuf, public: [u8; 32]) -> Node {
        for _ in 0..5 {
            if let Some(n) = Node::try_spawn(config.clone(), public) {
                return n;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("mixnode {} did not start", config.display());
    }

    /// This node as a hop addressed by its HTX ingress.
    fn hop(&self) -> RouteHop {
        RouteHop {
            addr: NodeAddr(self.htx),
            epoch: self.epoch,
            key: MixPublicKey(self.mix_key),
        }
    }

    fn metric(&self, name: &str) -> u64 {
        let mut s = std::net::TcpStream::connect(self.metrics).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).unwrap();
        let full = format!("betanet_mix_{name} ");
        text.lines()
            .find(|l| l.starts_with(&full))
            .and_then(|l| l.split_whitespace().last())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("metric {name} missing"))
    }

    async fn wait_metric(&self, name: &str, want: u64) {
        for _ in 0..600 {
            if self.metric(name) >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{name} never reached {want} (is {})", self.metric(name));
    }
}

/// `n` free loopback addresses (all held until every one is picked, so they differ).
fn free_addrs(n: usize) -> Vec<SocketAddr> {
    let ls: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    ls.iter().map(|l| l.local_addr().unwrap()).collect()
}

struct Net {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

/// Writes `n` configs (full mesh of HTX peers with pinned identities; echo exit; 1-5 ms delays)
/// and starts the processes; picks fresh ports and retries if a process could not start.
fn start_net(n: usize, seed: u8) -> Net {
    for _ in 0..3 {
        if let Some(net) = try_start_net(n, seed) {
            return net;
        }
    }
    panic!("could not start {n} mixnodes");
}

fn try_start_net(n: usize, seed: u8) -> Option<Net> {
    let dir = tempfile::tempdir().unwrap();
    let addrs = free_addrs(3 * n);
    let seeds: Vec<[u8; 32]> = (0..n).map(|i| [seed.wrapping_add(i as u8); 32]).collect();
    let publics: Vec<[u8; 32]> = seeds
        .iter()
        .map(|s| SigningKey::from_seed(s).verifying_key().to_bytes())
        .collect();
    let mut nodes = Vec::new();
    for i in 0..n {
        let state = dir.path().join(format!("node{i}"));
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("identity.ed25519"), seeds[i]).unwrap();
        let (tcp, htx, metrics) = (addrs[3 * i], addrs[3 * i + 1], addrs[3 * i + 2]);
        let mut cfg = format!(
            "listen = \"{tcp}\"\nstate_dir = \"{}\"\nhtx_listen = \"{htx}\"\n\
             metrics_listen = \"{metrics}\"\nworkers = 1\ndelay_min_ms = 1\ndelay_max_ms = 5\n\
             replay_capacity = 100000\nexit_echo = true\nunknown_peers = \"tcp\"\n",
            state.display()
        );
        for j in (0..n).filter(|&j| j != i) {
            cfg.push_str(&format!(
                "\n[[peers]]\naddr = \"{}\"\npublic_key = \"{}\"\ntransport = \"tcp12\"\n",
                addrs[3 * j + 1],
                hex::encode(publics[j])
            ));
        }
        let path = dir.path().join(format!("node{i}.toml"));
        std::fs::write(&path, cfg).unwrap();
        let node = Node::try_spawn(path, publics[i])?;
        assert_eq!((node.tcp, node.htx, node.metrics), (tcp, htx, metrics));
        nodes.push(node);
    }
    Some(Net { nodes, _dir: dir })
}

/// A plain-TCP listener standing in for the client's reply address; yields reply frames.
async fn reply_listener() -> (NodeAddr, mpsc::Receiver<Vec<u8>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = NodeAddr(l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut r = tokio::io::BufReader::new(s);
                while let Ok(Some(f)) = read_frame(&mut r).await {
                    if tx.send(f).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// An HTX stream to `node`'s ingress, authenticated as the node's identity.
async fn htx_stream(node: &Node) -> (betanet_net::Connection, betanet_net::Stream) {
    let vk = VerifyingKey::from_bytes(&node.public).unwrap();
    let conn = dial(
        &node.htx.to_string(),
        &vk,
        &ClientConfig::new(SigningKey::generate(&mut rand_core::OsRng)),
    )
    .await
    .unwrap();
    let s = conn.open_stream().unwrap();
    (conn, s)
}

/// Sends `count` echo requests over `path` (first hop reached over HTX) with reply blocks back
/// over the reverse of the relays, and checks every answer.
async fn circuit_roundtrip(nodes: &[&Node], count: usize, rng: &mut StdRng) {
    let (me, mut replies) = reply_listener().await;
    let route: Vec<RouteHop> = nodes.iter().map(|n| n.hop()).collect();
    let back: Vec<RouteHop> = route[..route.len() - 1].iter().rev().copied().collect();
    let (_conn, mut s) = htx_stream(nodes[0]).await;
    let mut secrets = HashMap::new();
    for i in 0..count {
        let (surb, secret) = Surb::new(rng, PacketSize::K2, &back, me).unwrap();
        let data = format!("hello over {} hops #{i}", route.len()).into_bytes();
        let msg = app::request(Some(&surb), &data);
        let (first, pkt) = build_packet(rng, PacketSize::K2, &route, [7; 32], &msg).unwrap();
        assert_eq!(first.0, nodes[0].htx);
        write_frame(&mut s, &pkt).await.unwrap();
        secrets.insert(secret.id, (secret, data));
    }
    s.flush().await.unwrap();
    let mut answered = 0;
    while answered < count {
        let frame = tokio::time::timeout(Duration::from_secs(15), replies.recv())
            .await
            .expect("reply did not come back within 15 s")
            .unwrap();
        let id: [u8; SURB_ID_LEN] = frame[..SURB_ID_LEN].try_into().unwrap();
        let (secret, data) = secrets
            .remove(&id)
            .expect("reply for an unknown reply block");
        let body = secret.open(frame[SURB_ID_LEN..].to_vec()).unwrap();
        assert_eq!(body[0], app::kind::RESPONSE);
        assert_eq!(
            &body[1..],
            &data[..],
            "the echo exit must return the request data"
        );
        answered += 1;
    }
    assert!(secrets.is_empty());
    let exit = nodes[nodes.len() - 1];
    assert!(exit.metric("packets_delivered") >= count as u64);
    // Every relay after the first received its packets over HTX streams from its predecessor,
    // and each relay (and the exit, for the replies) dialled HTX next hops.
    for n in &nodes[1..] {
        assert!(
            n.metric("htx_streams") >= 1,
            "next hops are reached over HTX"
        );
    }
    for n in nodes {
        assert!(n.metric("egress_connects") >= 1);
        assert_eq!(n.metric("dropped_peer_down"), 0);
        assert_eq!(n.metric("dropped_unknown_peer"), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_three_and_five_hop_circuits_over_htx() {
    let net = start_net(5, 50);
    let n = &net.nodes;
    let mut rng = StdRng::seed_from_u64(5);
    circuit_roundtrip(&[&n[0], &n[1], &n[2], &n[3], &n[4]], 8, &mut rng).await;
    circuit_roundtrip(&[&n[4], &n[2], &n[0]], 8, &mut rng).await;
    // The HTX links were pooled: one connection per (node, next hop) pair was enough.
    assert!(n[0].metric("egress_connects") <= 4);
    assert_eq!(n[0].metric("egress_connect_failures"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_circuit_replay_and_restart() {
    let mut net = start_net(3, 100);
    let mut rng = StdRng::seed_from_u64(3);
    {
        let n = &net.nodes;
        circuit_roundtrip(&[&n[0], &n[1], &n[2]], 6, &mut rng).await;
    }

    // One packet without a reply block, sent twice (over HTX, then over plain TCP).
    let route: Vec<RouteHop> = net.nodes.iter().map(Node::hop).collect();
    let (_, pkt) = build_packet(
        &mut rng,
        PacketSize::K1,
        &route,
        [7; 32],
        &app::request(None, b"once"),
    )
    .unwrap();
    let delivered0 = net.nodes[2].metric("packets_delivered");
    let forwarded0 = net.nodes[0].metric("packets_forwarded");
    {
        let (_conn, mut s) = htx_stream(&net.nodes[0]).await;
        write_frame(&mut s, &pkt).await.unwrap();
        s.flush().await.unwrap();
        net.nodes[2]
            .wait_metric("packets_delivered", delivered0 + 1)
            .await;
    }
    let mut tcp = tokio::net::TcpStream::connect(net.nodes[0].tcp)
        .await
        .unwrap();
    write_frame(&mut tcp, &pkt).await.unwrap();
    tcp.flush().await.unwrap();
    net.nodes[0].wait_metric("dropped_replay", 1).await;
    // Give a wrongly forwarded copy time to arrive before checking that none did.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(net.nodes[0].metric("dropped_replay"), 1);
    assert_eq!(net.nodes[0].metric("packets_forwarded"), forwarded0 + 1);
    assert_eq!(net.nodes[1].metric("dropped_replay"), 0);
    assert_eq!(net.nodes[2].metric("packets_delivered"), delivered0 + 1);
    drop(tcp);

    // Kill (SIGKILL, no clean shutdown) and restart the first hop on the same state: the
    // persisted filter still knows the packet.
    let delivered1 = net.nodes[2].metric("packets_delivered");
    net.nodes[0].kill();
    let (cfg, public) = (net.nodes[0].config.clone(), net.nodes[0].public);
    let old_key = net.nodes[0].mix_key;
    net.nodes[0] = Node::spawn(cfg, public);
    assert_eq!(net.nodes[0].mix_key, old_key, "the mix key is persisted");
    assert_eq!(net.nodes[0].metric("dropped_replay"), 0);
    let mut tcp = tokio::net::TcpStream::connect(net.nodes[0].tcp)
        .await
        .unwrap();
    write_frame(&mut tcp, &pkt).await.unwrap();
    tcp.flush().await.unwrap();
    net.nodes[0].wait_metric("dropped_replay", 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(net.nodes[0].metric("dropped_replay"), 1);
    assert_eq!(net.nodes[0].metric("packets_forwarded"), 0);
    assert_eq!(net.nodes[2].metric("packets_delivered"), delivered1);

    // Restart the middle relay too: the first hop's pooled HTX link to it dies and is
    // re-dialled on demand; fresh circuits work through both restarted processes.
    net.nodes[1].kill();
    let (cfg, public) = (net.nodes[1].config.clone(), net.nodes[1].public);
    net.nodes[1] = Node::spawn(cfg, public);
    let n = &net.nodes;
    circuit_roundtrip(&[&n[0], &n[1], &n[2]], 4, &mut rng).await;
}
