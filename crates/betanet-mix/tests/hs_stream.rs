//! Hidden-service streams over real mixnodes on 127.0.0.1: a 100 KiB request body and a
//! 200 KiB response cross a rendezvous point byte-exact, with real per-hop delays (which
//! reorder chunks) and two clients at once; no node's application layer (introduction and
//! rendezvous points) ever sees a plaintext slice of either body. Also: clients fall back to
//! the next introduction point, and a serving service refreshes its intro reply blocks (an
//! intro point that lost them becomes usable again without restarting the service).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use betanet_mix::app::{ExitApp, ExitAppStats, RV_SEND_HEADER, kind};
use betanet_mix::client::{ClientConfig, HiddenService, MixClient};
use betanet_mix::hs_stream::CHUNK_DATA;
use betanet_mix::node::Mixnode;
use betanet_mix::packet::SURB_LEN;
use ed25519_dalek::SigningKey;
use rand::{RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

const NEEDLE: usize = 16;

/// Needles: a 16-byte slice at every chunk start of `body` (where a plaintext chunk's data
/// would begin) and in the middle of each chunk.
fn needles(body: &[u8], into: &mut HashSet<[u8; NEEDLE]>) {
    let mut off = 0;
    while off + NEEDLE <= body.len() {
        into.insert(body[off..off + NEEDLE].try_into().unwrap());
        let mid = off + CHUNK_DATA / 2;
        if mid + NEEDLE <= body.len() {
            into.insert(body[mid..mid + NEEDLE].try_into().unwrap());
        }
        off += CHUNK_DATA;
    }
}

struct Net {
    nodes: Vec<Mixnode>,
    stats: Vec<Arc<Mutex<ExitAppStats>>>,
    /// Set to make a node's exit application start afresh (as after a restart: no intro or
    /// rendezvous state) before it handles its next message.
    resets: Vec<Arc<AtomicBool>>,
    leaks: Arc<AtomicU64>,
    delivered: Arc<AtomicU64>,
    _dirs: Vec<tempfile::TempDir>,
}

/// How many times a node's exit application handles a delivered message (0 = drop it, 2 =
/// replay it): the adversarial rendezvous point of the loss and replay tests.
type Fate = Arc<dyn Fn(&[u8]) -> usize + Send + Sync>;

/// `true` for an `RV_SEND` carrying data from the service side.
fn is_service_chunk(m: &[u8]) -> bool {
    m.first() == Some(&kind::RV_SEND)
        && m.get(17) == Some(&1)
        && m.len() > RV_SEND_HEADER + usize::from(*m.get(18).unwrap_or(&0)) * SURB_LEN
}

/// A fate that applies `f` to the `nth` service chunk seen by any node.
fn nth_service_chunk(nth: u64, f: usize) -> Fate {
    let seen = Arc::new(AtomicU64::new(0));
    Arc::new(move |m: &[u8]| {
        if is_service_chunk(m) && seen.fetch_add(1, Ordering::Relaxed) + 1 == nth {
            f
        } else {
            1
        }
    })
}

/// `n` mixnodes with U[1 ms, 25 ms] per-hop delays; each node's deliveries are scanned for
/// `secret` slices before its exit application handles them.
async fn start(n: usize, secret: Arc<HashSet<[u8; NEEDLE]>>) -> Net {
    start_with(n, secret, Arc::new(|_: &[u8]| 1)).await
}

async fn start_with(n: usize, secret: Arc<HashSet<[u8; NEEDLE]>>, fate: Fate) -> Net {
    let leaks = Arc::new(AtomicU64::new(0));
    let delivered = Arc::new(AtomicU64::new(0));
    let (mut nodes, mut stats, mut dirs, mut resets) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let d = tempfile::tempdir().unwrap();
        let c = common::node_config("127.0.0.1:0".parse().unwrap(), d.path(), 25, 100_000);
        let (tx, mut rx) = mpsc::channel(1024);
        let node = Mixnode::start(c, Some(tx)).await.unwrap();
        let st = Arc::new(Mutex::new(ExitAppStats::default()));
        let id = node.info().id;
        let mut app = ExitApp::new(id, None);
        let reset = Arc::new(AtomicBool::new(false));
        let (sender, st2, secret, leaks, delivered, fate, reset2) = (
            node.packet_sender(),
            st.clone(),
            secret.clone(),
            leaks.clone(),
            delivered.clone(),
            fate.clone(),
            reset.clone(),
        );
        tokio::spawn(async move {
            while let Some(d) = rx.recv().await {
                if reset2.swap(false, Ordering::AcqRel) {
                    app = ExitApp::new(id, None);
                }
                delivered.fetch_add(1, Ordering::Relaxed);
                if d.message.windows(NEEDLE).any(|w| {
                    let k: [u8; NEEDLE] = w.try_into().unwrap();
                    secret.contains(&k)
                }) {
                    leaks.fetch_add(1, Ordering::Relaxed);
                }
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs();
                for _ in 0..fate(&d.message) {
                    for (to, pkt) in app.handle(&d.message, now) {
                        sender.send(to, pkt).await.unwrap();
                    }
                }
                *st2.lock().unwrap() = app.stats();
            }
        });
        stats.push(st);
        resets.push(reset);
        nodes.push(node);
        dirs.push(d);
    }
    Net {
        nodes,
        stats,
        resets,
        leaks,
        delivered,
        _dirs: dirs,
    }
}

fn response_for(req: &[u8]) -> Vec<u8> {
    // digest of the request, then 200 KiB derived from it
    let digest: [u8; 32] = Sha256::digest(req).into();
    let mut rng = rand::rngs::StdRng::from_seed(digest);
    let mut out = digest.to_vec();
    let mut body = vec![0u8; 200 * 1024];
    rng.fill_bytes(&mut body);
    out.extend_from_slice(&body);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_messages_cross_a_rendezvous_byte_exact() {
    // Two request bodies of 100 KiB, and the responses they produce.
    let reqs: Vec<Vec<u8>> = (0..2u64)
        .map(|i| {
            let mut b = vec![0u8; 100 * 1024];
            rand::rngs::StdRng::seed_from_u64(1000 + i).fill_bytes(&mut b);
            b
        })
        .collect();
    let mut secret = HashSet::new();
    for r in &reqs {
        needles(r, &mut secret);
        needles(&response_for(r), &mut secret);
    }
    let net = start(5, Arc::new(secret)).await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();

    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::new(svc_client, SigningKey::from_bytes(&[7u8; 32])).unwrap();
    let url = hs.url();
    let intro = net.nodes[4].info();
    hs.register_intro(&intro, 4).await.unwrap();
    for _ in 0..500 {
        if net.stats[4].lock().unwrap().intros_registered >= 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    let handled = Arc::new(AtomicU64::new(0));
    let h2 = handled.clone();
    let server = tokio::spawn(hs.serve(
        move |req: Vec<u8>| {
            let h2 = h2.clone();
            async move {
                h2.fetch_add(1, Ordering::Relaxed);
                if req == b"small" {
                    return b"tiny answer".to_vec();
                }
                response_for(&req)
            }
        },
        8,
    ));

    let t = Instant::now();
    let mut joins = Vec::new();
    for req in reqs.clone() {
        let (url, desc, seeds) = (url.clone(), desc.clone(), seeds.clone());
        joins.push(tokio::spawn(async move {
            let client = MixClient::start(ClientConfig::default()).await.unwrap();
            client.discover_nodes(&seeds).await;
            let mut s = client
                .connect_service(&url, &desc, now, Duration::from_secs(10))
                .await
                .unwrap();
            let got = s.fetch(&req, Duration::from_secs(30)).await.unwrap();
            // a second exchange on the same session
            let small = s.fetch(b"small", Duration::from_secs(10)).await.unwrap();
            (got, small, s.reply_budget())
        }));
    }
    for (req, j) in reqs.iter().zip(joins) {
        let (got, small, budget) = j.await.unwrap();
        assert_eq!(got.len(), 32 + 200 * 1024);
        assert_eq!(
            &got[..32],
            Sha256::digest(req).as_slice(),
            "request body altered"
        );
        assert_eq!(got, response_for(req), "response body altered");
        assert_eq!(small, b"tiny answer");
        // every response chunk came through a deposited reply block, within the window
        assert_eq!(
            budget.received,
            1 + 138 + 1,
            "join + 138 chunks + small: {budget:?}"
        );
        assert!(budget.deposited >= budget.received);
    }
    let elapsed = t.elapsed();
    eprintln!("2 × (100 KiB up + 200 KiB down) through a rendezvous in {elapsed:?}");
    assert_eq!(handled.load(Ordering::Relaxed), 4);
    assert_eq!(
        net.leaks.load(Ordering::Relaxed),
        0,
        "plaintext seen by a node"
    );
    assert!(net.delivered.load(Ordering::Relaxed) > 400);
    let relayed: u64 = net.stats.iter().map(|s| s.lock().unwrap().rv_relayed).sum();
    assert!(relayed >= 2 * (69 + 139 + 2), "relayed {relayed}");
    assert_eq!(net.stats[4].lock().unwrap().introductions, 2);
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_response_times_out_with_a_clear_error() {
    let net = start(3, Arc::new(HashSet::new())).await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::new(svc_client, SigningKey::from_bytes(&[8u8; 32])).unwrap();
    let url = hs.url();
    let intro = net.nodes[0].info();
    hs.register_intro(&intro, 2).await.unwrap();
    for _ in 0..500 {
        if net.stats[0].lock().unwrap().intros_registered >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    // the handler never answers in time
    let server = tokio::spawn(hs.serve(
        |_req: Vec<u8>| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Vec::new()
        },
        2,
    ));
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    client.discover_nodes(&seeds).await;
    let mut s = client
        .connect_service(&url, &desc, now, Duration::from_secs(10))
        .await
        .unwrap();
    let e = s
        .fetch(b"anyone?", Duration::from_millis(800))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            betanet_mix::MixError::StreamTimeout { have: 0, total: 0 }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("timed out"));
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

/// A hidden service answering every request with `resp_len` bytes, and a connected session.
async fn service_and_session(
    net: &Net,
    resp_len: usize,
) -> (tokio::task::JoinHandle<()>, betanet_mix::client::HsSession) {
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc_client, &[9u8; 32]).unwrap();
    let url = hs.url();
    let intro = net.nodes[0].info();
    hs.register_intro(&intro, 2).await.unwrap();
    for _ in 0..500 {
        if net.stats[0].lock().unwrap().intros_registered >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    let server = tokio::spawn(hs.serve(
        move |req: Vec<u8>| async move { req.iter().cycle().take(resp_len).copied().collect() },
        2,
    ));
    let client = MixClient::start(ClientConfig::default()).await.unwrap();
    client.discover_nodes(&seeds).await;
    let s = client
        .connect_service(&url, &desc, now, Duration::from_secs(10))
        .await
        .unwrap();
    (server, s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_chunk_is_reported_and_a_replayed_one_ignored() {
    // The rendezvous point drops the 4th chunk the service sends (the join is not a chunk).
    let net = start_with(3, Arc::new(HashSet::new()), nth_service_chunk(4, 0)).await;
    let (server, mut s) = service_and_session(&net, 10 * CHUNK_DATA).await;
    let e = s.fetch(b"abc", Duration::from_secs(3)).await.unwrap_err();
    assert!(
        matches!(
            e,
            betanet_mix::MixError::StreamTimeout { have: 9, total: 10 }
        ),
        "{e}"
    );
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }

    // The rendezvous point relays the 3rd chunk twice: the copy is rejected by the counter
    // window, and the message is still exact.
    let net = start_with(3, Arc::new(HashSet::new()), nth_service_chunk(3, 2)).await;
    let (server, mut s) = service_and_session(&net, 5 * CHUNK_DATA + 7).await;
    let got = s.fetch(b"xyz", Duration::from_secs(10)).await.unwrap();
    let want: Vec<u8> = b"xyz"
        .iter()
        .cycle()
        .take(5 * CHUNK_DATA + 7)
        .copied()
        .collect();
    assert_eq!(got, want);
    // wait for the duplicate, then check it used a reply block but was not delivered twice
    let small = s.fetch(b"q", Duration::from_secs(10)).await.unwrap();
    assert_eq!(small, b"q".repeat(5 * CHUNK_DATA + 7));
    assert_eq!(s.reply_budget().received, 1 + 6 + 1 + 6);
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Waits (bounded) until `f` holds for node `i`'s exit-application stats.
async fn wait_stats(net: &Net, i: usize, f: impl Fn(&ExitAppStats) -> bool) -> bool {
    for _ in 0..1000 {
        if f(&net.stats[i].lock().unwrap()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_fall_back_to_the_next_intro_point() {
    let net = start(4, Arc::new(HashSet::new())).await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc_client, &[5u8; 32]).unwrap();
    let url = hs.url();
    // The service holds blocks at node 1 only; node 0 is listed too but knows nothing of it
    // (as an intro point that restarted and lost them would).
    let (bad, good) = (net.nodes[0].info(), net.nodes[1].info());
    hs.register_intro(&good, 16).await.unwrap();
    assert!(wait_stats(&net, 1, |s| s.intros_registered >= 16).await);
    let now = unix_now();
    let desc = hs.descriptor(&[bad, good], now - 10, now + 3600);
    let server = tokio::spawn(hs.serve(|req: Vec<u8>| async move { req }, 2));
    // Clients start at a random intro point: connect until one has tried the bad one first
    // (bounded); every connection must succeed.
    let mut connects = 0;
    while net.stats[0].lock().unwrap().rejected == 0 && connects < 12 {
        let client = MixClient::start(ClientConfig::default()).await.unwrap();
        client.discover_nodes(&seeds).await;
        let mut s = client
            .connect_service(&url, &desc, now, Duration::from_secs(8))
            .await
            .unwrap();
        assert_eq!(
            s.fetch(b"ping", Duration::from_secs(10)).await.unwrap(),
            b"ping"
        );
        connects += 1;
    }
    assert!(
        net.stats[0].lock().unwrap().rejected >= 1,
        "no client tried the intro point without blocks in {connects} connections"
    );
    assert_eq!(net.stats[0].lock().unwrap().introductions, 0);
    assert!(net.stats[1].lock().unwrap().introductions >= connects);
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serving_service_refreshes_its_intro_reply_blocks() {
    let net = start(4, Arc::new(HashSet::new())).await;
    let seeds: Vec<_> = net.nodes.iter().map(Mixnode::local_addr).collect();
    let svc_client = MixClient::start(ClientConfig::default()).await.unwrap();
    svc_client.discover_nodes(&seeds).await;
    let mut hs = HiddenService::from_seed(svc_client, &[6u8; 32]).unwrap();
    let url = hs.url();
    let intro = net.nodes[0].info();
    hs.register_intro(&intro, 4).await.unwrap();
    hs.set_intro_refresh(Duration::from_millis(400));
    assert!(wait_stats(&net, 0, |s| s.intros_registered >= 4).await);
    let now = unix_now();
    let desc = hs.descriptor(&[intro], now - 10, now + 3600);
    let server = tokio::spawn(hs.serve(|req: Vec<u8>| async move { req }, 2));
    let connect = || async {
        let client = MixClient::start(ClientConfig::default()).await.unwrap();
        client.discover_nodes(&seeds).await;
        let mut s = client
            .connect_service(&url, &desc, now, Duration::from_secs(8))
            .await?;
        s.fetch(b"hello", Duration::from_secs(10)).await
    };
    assert_eq!(connect().await.unwrap(), b"hello");
    // The intro point loses everything; the serving service re-deposits its blocks there on
    // its own (the fresh application's counters start at zero), and clients get in again.
    net.resets[0].store(true, Ordering::Release);
    assert!(
        wait_stats(&net, 0, |s| s.intros_registered >= 4
            && s.introductions == 0)
        .await,
        "the service did not refresh its intro point"
    );
    assert_eq!(connect().await.unwrap(), b"hello");
    assert_eq!(net.stats[0].lock().unwrap().introductions, 1);
    server.abort();
    for n in net.nodes {
        n.shutdown().await.unwrap();
    }
}
