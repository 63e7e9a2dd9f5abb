//! Loopback benchmarks: sequential request/response round trips and pipelined one-way
//! messages, plain, compat (HMAC + SHA-256 stream cipher) and secure (MAC + ChaCha20-Poly1305).
//! netaio itself is timed in the same run via `scripts/bench_netaio.py` when the venv exists:
//! once in one shot (all its numbers), and interleaved with ours for sequential round trips
//! (`BETANET_MSG_BENCH_ROUNDS` rounds, default 7, alternating ours / netaio on warm
//! connections; medians of each side and the ratio of the medians are reported with the load
//! average, since the machine is shared).

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

fn netaio_python() -> Option<String> {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let venv = std::process::Command::new("bash")
        .arg(dir.join("scripts/netaio-venv.sh"))
        .output();
    let Ok(v) = venv else {
        eprintln!("netaio baseline: skipped (no bash)");
        return None;
    };
    if !v.status.success() {
        eprintln!("netaio baseline: skipped (venv unavailable)");
        return None;
    }
    Some(String::from_utf8_lossy(&v.stdout).trim().to_owned())
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `n` sequential 32-byte echo round trips; returns the elapsed time. The loop runs in a
/// spawned task: a future polled directly by `block_on` costs the current-thread scheduler
/// one extra `epoll_wait(0)` each time it is woken, which is not the library's cost.
async fn sequential(s: &Setup, n: u64) -> Duration {
    let (client, conn) = (s.client.clone(), s.conn.clone());
    tokio::spawn(async move {
        let t = Instant::now();
        for _ in 0..n {
            let r = client
                .request(&conn, MessageType::REQUEST_URI, b"echo", &[0u8; 32], None)
                .await
                .unwrap();
            assert_eq!(r.body.content.len(), 32);
        }
        t.elapsed()
    })
    .await
    .unwrap()
}

/// The floor under our sequential figure: a bare tokio echo of exactly the bytes one of our
/// 32-byte echo requests and its answer put on the wire (no framing, no dispatch), on the same
/// kind of runtime with the loop in a spawned task. Whatever the library does costs on top.
struct Bare {
    client: Option<tokio::net::TcpStream>,
    len: usize,
}

async fn bare_setup() -> Bare {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let len = Message::new(MessageType::REQUEST_URI, &b"echo"[..], &[0u8; 32][..])
        .encode()
        .unwrap()
        .len();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = vec![0u8; len];
        while s.read_exact(&mut b).await.is_ok() {
            if s.write_all(&b).await.is_err() {
                return;
            }
        }
    });
    let client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.set_nodelay(true).unwrap();
    Bare {
        client: Some(client),
        len,
    }
}

async fn bare_round(b: &mut Bare, n: u32) -> f64 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut c, len) = (b.client.take().unwrap(), b.len);
    let (c, d) = tokio::spawn(async move {
        let (msg, mut got) = (vec![0u8; len], vec![0u8; len]);
        let t = Instant::now();
        for _ in 0..n {
            c.write_all(&msg).await.unwrap();
            c.read_exact(&mut got).await.unwrap();
        }
        (c, t.elapsed())
    })
    .await
    .unwrap();
    b.client = Some(c);
    f64::from(n) / d.as_secs_f64()
}

async fn our_round(s: &Setup, n: u32) -> f64 {
    f64::from(n) / sequential(s, u64::from(n)).await.as_secs_f64()
}

/// Sequential round trips, ours and netaio's alternately on warm connections, several rounds.
fn compare_interleaved() {
    use std::io::{BufRead, BufReader, Write};
    let Some(py) = netaio_python() else { return };
    let rounds: usize = std::env::var("BETANET_MSG_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
        .max(1);
    let (n_ours, n_py) = (5000u32, 600u32);
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Ok(mut child) = std::process::Command::new(py)
        .arg(dir.join("scripts/bench_netaio.py"))
        .arg("--rounds")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
    else {
        return eprintln!("netaio interleaved: python did not start");
    };
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut theirs = |profile: &str, n: u32| -> Option<f64> {
        writeln!(stdin, "rt {profile} {n}").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        stdout.read_line(&mut line).ok()?;
        line.trim().parse().ok()
    };
    type Pair = (&'static str, fn() -> NodeBuilder, &'static str);
    let pairs: Vec<Pair> = vec![
        ("plain", NodeBuilder::compat as fn() -> NodeBuilder, "plain"),
        (
            "compat_hmac",
            || NodeBuilder::compat().plugins(Plugins::none().with_auth(HmacAuth::new("test"))),
            "hmac",
        ),
        (
            "compat_hmac_cipher",
            || {
                NodeBuilder::compat().plugins(
                    Plugins::none()
                        .with_auth(HmacAuth::new("test"))
                        .with_cipher(Sha256StreamCipher::new("test")),
                )
            },
            "hmac_cipher",
        ),
        (
            "secure_mac_aead",
            || NodeBuilder::secure(b"test"),
            "hmac_cipher",
        ),
    ];
    let rt = rt();
    let load_before = loadavg();
    println!(
        "interleaved sequential round trips: {rounds} rounds (ours {n_ours} / netaio {n_py} requests per round, 32-byte echo, warm connections, one current-thread runtime / one asyncio loop each)"
    );
    let mut json = Vec::new();
    for (ours_name, b, theirs_name) in pairs {
        let s = rt.block_on(setup(b));
        rt.block_on(our_round(&s, 500)); // warm-up
        // The plain pair also times the bare tokio echo floor in the same rounds.
        let mut bare = (ours_name == "plain").then(|| rt.block_on(bare_setup()));
        if let Some(b) = bare.as_mut() {
            rt.block_on(bare_round(b, 500));
        }
        let (mut o, mut t, mut f) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            o.push(rt.block_on(our_round(&s, n_ours)));
            if let Some(b) = bare.as_mut() {
                f.push(rt.block_on(bare_round(b, n_ours)));
            }
            match theirs(theirs_name, n_py) {
                Some(v) => t.push(v),
                None => {
                    eprintln!("netaio interleaved: python stopped answering");
                    let _ = child.kill();
                    return;
                }
            }
        }
        let (mo, mt) = (median(&o), median(&t));
        let ratios: Vec<f64> = o.iter().zip(&t).map(|(a, b)| a / b).collect();
        let min = |v: &[f64]| v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = |v: &[f64]| v.iter().cloned().fold(0.0, f64::max);
        println!(
            "  {ours_name:<19} ours median {mo:>8.0} rt/s [{:.0}..{:.0}]  vs netaio {theirs_name:<11} median {mt:>6.0} rt/s [{:.0}..{:.0}]  ratio of medians {:.1}x (per-round {:.1}x..{:.1}x)",
            min(&o),
            max(&o),
            min(&t),
            max(&t),
            mo / mt,
            min(&ratios),
            max(&ratios)
        );
        json.push(format!(
            "\"{ours_name}_vs_{theirs_name}\":{{\"ours_median\":{mo:.0},\"netaio_median\":{mt:.0},\"ratio\":{:.2}}}",
            mo / mt
        ));
        if !f.is_empty() {
            let mf = median(&f);
            println!(
                "  {:<19} bare tokio echo of the same bytes (no framing, no dispatch): median {mf:>8.0} rt/s [{:.0}..{:.0}] = {:.1}x netaio; ours = {:.0} % of it",
                "",
                min(&f),
                max(&f),
                mf / mt,
                100.0 * mo / mf
            );
            json.push(format!(
                "\"bare_tokio_echo\":{{\"median\":{mf:.0},\"vs_netaio\":{:.2},\"ours_share\":{:.3}}}",
                mf / mt,
                mo / mf
            ));
        }
    }
    let load_after = loadavg();
    println!("  load average before: {load_before}; after: {load_after} (2 cores, shared)");
    println!(
        "interleaved-json: {{{},\"rounds\":{rounds},\"load_before\":\"{load_before}\",\"load_after\":\"{load_after}\"}}",
        json.join(",")
    );
    let _ = writeln!(stdin, "quit");
    let _ = child.wait();
}

fn netaio_numbers() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let Some(py) = netaio_python() else { return };
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
    compare_interleaved();
    netaio_numbers();
    let rt = rt();
    for (name, b) in profiles() {
        let s = rt.block_on(setup(b));
        let mut g = c.benchmark_group(format!("msg/{name}"));
        g.throughput(Throughput::Elements(1));
        g.bench_function("sequential_round_trip", |bch| {
            bch.iter_custom(|iters| rt.block_on(sequential(&s, iters)))
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
