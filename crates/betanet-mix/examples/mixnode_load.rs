//! Whole-mixnode throughput: one real mixnode (2 worker threads, batches of 128, replay filter,
//! U[30,150] ms delay queue) on 127.0.0.1, fed by a bounded load generator over TCP, forwarding
//! every packet to a sink that counts frames.
//!
//! `cargo run --release -p betanet-mix --example mixnode_load -- [packets] [size] [conns]`
//! (defaults: 200000 packets, 1024 bytes, 4 connections).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use betanet_mix::crypto::MixSecretKey;
use betanet_mix::node::{Metrics, Mixnode, MixnodeConfig};
use betanet_mix::packet::{NodeAddr, PacketSize, RouteHop, build_packet};
use betanet_mix::replay::ReplayConfig;
use rand::SeedableRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
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

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let size = match args.get(2).map(String::as_str) {
        Some("2048") => PacketSize::K2,
        _ => PacketSize::K1,
    };
    let conns: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(4);

    // Sink: the "next hop", counts frames.
    let sink = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let received = Arc::new(AtomicU64::new(0));
    let last_at = Arc::new(std::sync::Mutex::new(Instant::now()));
    {
        let (received, last_at) = (received.clone(), last_at.clone());
        tokio::spawn(async move {
            loop {
                let (s, _) = sink.accept().await.unwrap();
                let (received, last_at) = (received.clone(), last_at.clone());
                tokio::spawn(async move {
                    let mut r = BufReader::with_capacity(256 * 1024, s);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        let mut len = [0u8; 4];
                        if r.read_exact(&mut len).await.is_err() {
                            return;
                        }
                        let l = u32::from_be_bytes(len) as usize;
                        if r.read_exact(&mut buf[..l]).await.is_err() {
                            return;
                        }
                        received.fetch_add(1, Ordering::Relaxed);
                        *last_at.lock().unwrap() = Instant::now();
                    }
                });
            }
        });
    }

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = MixnodeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    cfg.replay = ReplayConfig {
        capacity: (n as u64) * 2,
        fp_rate: 1e-6,
    };
    cfg.queue_depth = 16_384;
    cfg.max_delayed = 1 << 20;
    cfg.egress_queue = 1 << 16;
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
    eprintln!("built in {:.1} s", t.elapsed().as_secs_f64());

    // Bounded load generator: each connection writes its share as fast as TCP accepts it.
    let cpu0 = process_cpu_secs();
    let start = Instant::now();
    let chunk = n.div_ceil(conns);
    let mut senders = Vec::new();
    let addr = node.local_addr();
    for part in packets.chunks(chunk).map(<[Vec<u8>]>::to_vec) {
        senders.push(tokio::spawn(async move {
            let s = TcpStream::connect(addr).await.unwrap();
            s.set_nodelay(true).unwrap();
            let mut w = BufWriter::with_capacity(256 * 1024, s);
            for p in &part {
                w.write_all(&(p.len() as u32).to_be_bytes()).await.unwrap();
                w.write_all(p).await.unwrap();
            }
            w.flush().await.unwrap();
            w
        }));
    }
    let mut keep = Vec::new();
    for s in senders {
        keep.push(s.await.unwrap());
    }
    let sent_in = start.elapsed();
    for _ in 0..600 {
        if received.load(Ordering::Relaxed) as usize >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = received.load(Ordering::Relaxed);
    let cpu = process_cpu_secs() - cpu0;
    let done = last_at.lock().unwrap().duration_since(start);
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
    println!(
        "mixnode_load: cpu={cpu:.2}s for {got} packets (node + load generator + sink) => \
         {:.1} us CPU per packet, {:.0} packets per CPU-second, {:.0} packets/s projected on \
         2 dedicated cores; host load average {}",
        cpu * 1e6 / got as f64,
        got as f64 / cpu,
        2.0 * got as f64 / cpu,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    drop(keep);
    node.shutdown().await.unwrap();
}
