//! Loopback benchmarks: sequential request/response round trips and pipelined one-way
//! messages, plain, compat (HMAC + SHA-256 stream cipher) and secure (MAC + ChaCha20-Poly1305).
//! netaio itself is timed in the same run via `scripts/bench_netaio.py` when the venv exists.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use betanet_msg::compat::{HmacAuth, Sha256StreamCipher};
use betanet_msg::{Conn, Content, Message, MessageType, Node, NodeBuilder, PluginCx, Plugins};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio::runtime::Runtime;

fn rt() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Setup {
    client: Node,
    conn: Conn,
    sunk: Arc<AtomicU64>,
    notify: Arc<tokio::sync::Notify>,
    target: Arc<AtomicU64>,
    _server: Node,
}

async fn setup(b: impl Fn() -> NodeBuilder) -> Setup {
    let s = b().build();
    s.on((MessageType::REQUEST_URI, "echo"), |Content(c): Content| async move { Message::new(MessageType::RESPOND_URI, &b"echo"[..], c) });
    let sunk = Arc::new(AtomicU64::new(0));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let notify = Arc::new(tokio::sync::Notify::new());
    let (s2, t2, n2) = (sunk.clone(), target.clone(), notify.clone());
    s.on((MessageType::PUBLISH_URI, "sink"), move || {
        let v = s2.fetch_add(1, Ordering::Relaxed) + 1;
        if v == t2.load(Ordering::Relaxed) {
            n2.notify_one();
        }
        async {}
    });
    let addr = s.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let client = b().build();
    let conn = client.connect(addr).await.unwrap();
    Setup {
        client,
        conn,
        sunk,
        notify,
        target,
        _server: s,
    }
}

type Profile = (&'static str, fn() -> NodeBuilder);

fn profiles() -> Vec<Profile> {
    vec![
        ("plain", NodeBuilder::compat as fn() -> NodeBuilder),
        ("compat_hmac_cipher", || {
            NodeBuilder::compat().plugins(
                Plugins::none()
                    .with_auth(HmacAuth::new("test"))
                    .with_cipher(Sha256StreamCipher::new("test")),
            )
        }),
        ("secure_mac_aead", || NodeBuilder::secure(b"test")),
    ]
}

fn netaio_numbers() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = std::process::Command::new("bash")
        .arg(dir.join("scripts/netaio-venv.sh"))
        .output();
    let Ok(v) = venv else {
        return eprintln!("netaio baseline: skipped (no bash)");
    };
    if !v.status.success() {
        return eprintln!("netaio baseline: skipped (venv unavailable)");
    }
    let py = String::from_utf8_lossy(&v.stdout).trim().to_owned();
    match std::process::Command::new(py)
        .arg(dir.join("scripts/bench_netaio.py"))
        .arg("2000")
        .output()
    {
        Ok(o) if o.status.success() => println!(
            "netaio baseline (same machine, same run): {}",
            String::from_utf8_lossy(&o.stdout).trim()
        ),
        _ => eprintln!("netaio baseline: python run failed"),
    }
}

fn plugin_costs(c: &mut Criterion) {
    let mut g = c.benchmark_group("plugins");
    g.throughput(Throughput::Elements(1));
    for (name, b) in profiles() {
        let tx = b().build().config().plugins.clone();
        let rx = b().build().config().plugins.clone();
        g.bench_function(format!("{name}/seal_check_open_32B"), |bch| {
            let mut rng = rand::thread_rng();
            bch.iter(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis() as u64;
                let mut cx = PluginCx {
                    now_ms: now,
                    rng: &mut rng,
                    peer: None,
                };
                let m = tx
                    .seal(
                        Message::new(MessageType::PUBLISH_URI, &b"sink"[..], &[0u8; 32][..]),
                        &mut cx,
                    )
                    .unwrap();
                let e = m.encode().unwrap();
                let d = Message::decode(&e).unwrap();
                rx.check(&d, &mut cx).unwrap();
                rx.open(d, &mut cx).unwrap()
            })
        });
    }
    g.finish();
}

fn bench(c: &mut Criterion) {
    netaio_numbers();
    let rt = rt();
    for (name, b) in profiles() {
        let s = rt.block_on(setup(b));
        let mut g = c.benchmark_group(format!("msg/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("sequential_round_trip", |bch| {
            bch.iter_custom(|iters| {
                rt.block_on(async {
                    let t = Instant::now();
                    for _ in 0..iters {
                        let r = s
                            .client
                            .request(&s.conn, MessageType::REQUEST_URI, b"echo", &[0u8; 32], None)
                            .await
                            .unwrap();
                        assert_eq!(r.body.content.len(), 32);
                    }
                    t.elapsed()
                })
            })
        });
        g.bench_function("pipelined_one_way", |bch| {
            bch.iter_custom(|iters| {
                rt.block_on(async {
                    let start_count = s.sunk.load(Ordering::Relaxed);
                    s.target.store(start_count + iters, Ordering::Relaxed);
                    let t = Instant::now();
                    let notified = s.notify.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    for _ in 0..iters {
                        s.client
                            .send(
                                &s.conn,
                                Message::new(
                                    MessageType::PUBLISH_URI,
                                    &b"sink"[..],
                                    &[0u8; 32][..],
                                ),
                            )
                            .await
                            .unwrap();
                    }
                    if s.sunk.load(Ordering::Relaxed) < start_count + iters {
                        tokio::time::timeout(Duration::from_secs(60), notified)
                            .await
                            .unwrap();
                    }
                    t.elapsed()
                })
            })
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1)).sample_size(20);
    targets = plugin_costs, bench
}
criterion_main!(benches);
