//! Whole-mixnode throughput: one real mixnode (2 worker threads, batches of 128, replay filter,
//! U[30,150] ms delay queue) on 127.0.0.1, fed by a bounded load generator over TCP, forwarding
//! every packet to a sink that counts frames.
//!
//! `cargo run --release -p betanet-mix --example mixnode_load -- [packets] [size] [conns]`
//! (defaults: 200000 packets, 1024 bytes, 4 connections). `HTX=1` makes the sink an HTX
//! (tcp12) peer, so egress runs over an authenticated HTX stream as between real nodes;
//! `REPLAY_CAPACITY=default` sizes the replay filter as in production (14 MB);
//! `NODE_RT_THREADS` sets the node's tokio threads (default 1; the mix workers are 2 threads).
//! The load generator and the sink run on their own threads, so the node's CPU time per packet
//! is reported separately from theirs.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use betanet_mix::crypto::MixSecretKey;
use betanet_mix::node::{Metrics, Mixnode, MixnodeConfig, PeerConfig, PeerTransport};
use betanet_mix::packet::{NodeAddr, PacketSize, RouteHop, build_packet};
use betanet_mix::replay::ReplayConfig;
use rand::SeedableRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// CPU seconds (user + system) used by this whole process so far.
fn process_cpu_secs() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    // fields after the ")" of the command name; utime and stime are fields 14 and 15
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// CPU seconds per thread-name group: (mix workers, node runtime, load generator + sink, rest).
fn thread_cpu_secs() -> [f64; 4] {
    let mut out = [0.0; 4];
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for t in dir.flatten() {
        let Ok(s) = std::fs::read_to_string(t.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (s.find('('), s.rfind(')')) else {
            continue;
        };
        let name = &s[open + 1..close];
        let f: Vec<&str> = s[close + 2..].split_whitespace().collect();
        let ticks = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
        let i = if name.starts_with("mix-worker") {
            0
        } else if name.starts_with("node-rt") {
            1
        } else if name.starts_with("loadgen") {
            2
        } else {
            3
        };
        out[i] += ticks as f64 / 100.0;
    }
    out
}

/// Counts length-prefixed frames (parsing lengths in 256 KiB reads, no per-frame copy).
async fn count_frames<S: AsyncRead + Unpin>(
    mut s: S,
    received: Arc<AtomicU64>,
    last_ns: Arc<AtomicU64>,
    t0: Instant,
) {
    let mut buf = vec![0u8; 256 * 1024];
    let (mut have, mut need) = (0usize, 0usize);
    loop {
        let Ok(r) = s.read(&mut buf[have..]).await else {
            return;
        };
        if r == 0 {
            return;
        }
        have += r;
        let mut off = 0;
        let mut frames = 0;
        loop {
            if need == 0 {
                if have - off < 4 {
                    break;
                }
                need = 4 + u32::from_be_bytes(buf[off..off + 4].try_into().unwrap()) as usize;
            }
            if have - off < need {
                break;
            }
            off += need;
            need = 0;
            frames += 1;
        }
        buf.copy_within(off..have, 0);
        have -= off;
        if frames > 0 {
            received.fetch_add(frames, Ordering::Relaxed);
            last_ns.store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
        }
    }
}

/// The load generator and the sink run on their own thread (own runtime) so that the node's
/// CPU can be told apart from theirs.
fn loadgen_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn main() {
    let node_threads: usize = std::env::var("NODE_RT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(node_threads)
        .thread_name("node-rt")
        .enable_all()
        .build()
        .unwrap()
        .block_on(run());
}

async fn run() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let size = match args.get(2).map(String::as_str) {
        Some("2048") => PacketSize::K2,
        _ => PacketSize::K1,
    };
    let conns: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(4);
    let t0 = Instant::now();

    // Sink: the "next hop", counts frames. `HTX=1`: the sink is an HTX (tcp12) listener that
    // the node reaches as a configured peer (node-to-node transport); otherwise plain TCP.
    let htx = std::env::var("HTX").is_ok_and(|v| v == "1");
    let received = Arc::new(AtomicU64::new(0));
    let last_ns = Arc::new(AtomicU64::new(0));
    let sink_identity = betanet_crypto::sign::SigningKey::from_seed(&[5; 32]);
    let sink_public = sink_identity.verifying_key();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    {
        let (received, last_ns) = (received.clone(), last_ns.clone());
        std::thread::Builder::new()
            .name("loadgen-sink".into())
            .spawn(move || {
                loadgen_runtime().block_on(async move {
                    if htx {
                        let mut l = betanet_net::listen(
                            "127.0.0.1:0",
                            betanet_net::ServerConfig::new(sink_identity),
                        )
                        .await
                        .unwrap();
                        addr_tx.send(l.local_addr()).unwrap();
                        loop {
                            let conn = l.accept().await.unwrap();
                            let (received, last_ns) = (received.clone(), last_ns.clone());
                            tokio::spawn(async move {
                                while let Ok(st) = conn.accept_stream().await {
                                    let (received, last_ns) = (received.clone(), last_ns.clone());
                                    tokio::spawn(count_frames(st, received, last_ns, t0));
                                }
                            });
                        }
                    } else {
                        let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
                        addr_tx.send(sink.local_addr().unwrap()).unwrap();
                        loop {
                            let (s, _) = sink.accept().await.unwrap();
                            tokio::spawn(count_frames(s, received.clone(), last_ns.clone(), t0));
                        }
                    }
                });
            })
            .unwrap();
    }
    let sink_addr = addr_rx.recv().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MixnodeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    // `REPLAY_CAPACITY=default` uses the production sizing (4M tags at 1e-6: a 14 MB filter,
    // 20 probes per packet that miss the caches); otherwise the filter holds 2x the packets.
    cfg.replay = match std::env::var("REPLAY_CAPACITY").as_deref() {
        Ok("default") => ReplayConfig::default(),
        _ => ReplayConfig {
            capacity: (n as u64) * 2,
            fp_rate: 1e-6,
        },
    };
    cfg.queue_depth = 16_384;
    cfg.max_delayed = 1 << 20;
    cfg.egress_queue = 1 << 16;
    if htx {
        cfg.peers = vec![PeerConfig {
            addr: sink_addr,
            public_key: Some(sink_public),
            transport: PeerTransport::Htx(betanet_net::Transport::Tcp12),
        }];
    }
    let node = Mixnode::start(cfg, None).await.unwrap();
    let hop = node.route_hop();
    let sink_key = MixSecretKey::from_bytes(&[9u8; 32]).unwrap();
    let route = [
        hop,
        RouteHop {
            addr: NodeAddr(sink_addr),
            epoch: 1,
            key: sink_key.public(),
        },
    ];

    eprintln!("building {n} packets of {} bytes ...", size.len());
    let t = Instant::now();
    let per = n.div_ceil(2);
    let mut parts = Vec::new();
    for part in 0..2u64 {
        parts.push(std::thread::spawn(move || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(part);
            (0..per)
                .map(|i| {
                    build_packet(&mut rng, size, &route, [0; 32], &(i as u64).to_be_bytes())
                        .unwrap()
                        .1
                })
                .collect::<Vec<_>>()
        }));
    }
    let mut packets: Vec<Vec<u8>> = parts.into_iter().flat_map(|p| p.join().unwrap()).collect();
    packets.truncate(n);
    // Pre-framed byte streams, one per connection: the generator only copies bytes to sockets.
    let chunk = n.div_ceil(conns);
    let streams: Vec<Vec<u8>> = packets
        .chunks(chunk)
        .map(|part| {
            let mut v = Vec::with_capacity(part.len() * (size.len() + 4));
            for p in part {
                v.extend_from_slice(&(p.len() as u32).to_be_bytes());
                v.extend_from_slice(p);
            }
            v
        })
        .collect();
    drop(packets);
    eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());

    // Bounded load generator: each connection writes its share as fast as TCP accepts it
    // (64 KiB writes), all on one thread.
    let cpu0 = process_cpu_secs();
    let th0 = thread_cpu_secs();
    let start = Instant::now();
    let start_ns = t0.elapsed().as_nanos() as u64;
    let addr = node.local_addr();
    let generator = std::thread::Builder::new()
        .name("loadgen-gen".into())
        .spawn(move || {
            loadgen_runtime().block_on(async move {
                let mut tasks = Vec::new();
                for data in streams {
                    tasks.push(tokio::spawn(async move {
                        let mut s = TcpStream::connect(addr).await.unwrap();
                        s.set_nodelay(true).unwrap();
                        for c in data.chunks(64 * 1024) {
                            s.write_all(c).await.unwrap();
                        }
                        s
                    }));
                }
                let mut keep = Vec::new();
                for t in tasks {
                    keep.push(t.await.unwrap());
                }
                (start.elapsed(), keep)
            })
        })
        .unwrap();
    let (sent_in, keep) = tokio::task::spawn_blocking(move || generator.join().unwrap())
        .await
        .unwrap();
    for _ in 0..600 {
        if received.load(Ordering::Relaxed) as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.load(Ordering::Relaxed);
    let cpu = process_cpu_secs() - cpu0;
    let th1 = thread_cpu_secs();
    let th: Vec<f64> = (0..4).map(|i| th1[i] - th0[i]).collect();
    let done = Duration::from_nanos(last_ns.load(Ordering::Relaxed).saturating_sub(start_ns));
    let m = node.metrics();
    println!(
        "mixnode_load: size={} packets={n} forwarded={got} ingress_done={:.3}s last_forward={:.3}s \
         => {:.0} packets/s end-to-end (includes the 30-150 ms delay of the last packets); \
         dropped_overload={} dropped_replay={} dropped_invalid={} batches={}",
        size.len(),
        sent_in.as_secs_f64(),
        done.as_secs_f64(),
        got as f64 / done.as_secs_f64(),
        Metrics::get(&m.dropped_overload),
        Metrics::get(&m.dropped_replay),
        Metrics::get(&m.dropped_invalid),
        Metrics::get(&m.batches),
    );
    let us = |c: f64| c * 1e6 / got as f64;
    let node_cpu = th[0] + th[1];
    println!(
        "mixnode_load: cpu={cpu:.2}s for {got} packets => {:.1} us CPU per packet in total \
         (mix workers {:.1} + node runtime {:.1} = node {:.1}; load generator + sink {:.1}; \
         other {:.1}); projected on 2 dedicated cores: {:.0} packets/s with the generator and \
         sink on the same cores, {:.0} packets/s for the node alone; host load average {}",
        us(cpu),
        us(th[0]),
        us(th[1]),
        us(node_cpu),
        us(th[2]),
        us(th[3]),
        2.0 * got as f64 / cpu,
        2.0 * got as f64 / node_cpu,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    drop(keep);
    node.shutdown().await.unwrap();
}
