//! `betanet mixnode` (the real binary) takes packets over its HTX ingress.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

use betanet_crypto::sign::{SigningKey, VerifyingKey};
use betanet_mix::crypto::MixPublicKey;
use betanet_mix::node::write_frame;
use betanet_mix::packet::{NodeAddr, PacketSize, RouteHop, build_packet};
use betanet_net::{ClientConfig, dial};
use betanet_testkit::process::ChildGuard;
use tokio::io::AsyncWriteExt;

fn metric(addr: &str, name: &str) -> u64 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixnode_htx_ingress() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\nstate_dir = \"{}\"\ndelay_min_ms = 1\ndelay_max_ms = 2\nmetrics_listen = \"{metrics_port}\"\n",
        dir.path().join("mix").display()
    );
    std::fs::write(dir.path().join("mix.toml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_betanet"))
        .args(["mixnode", "--htx-listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("mix.toml"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _p = ChildGuard(child);
    let (mut tcp, mut key, mut epoch, mut htx, mut public) = (None, None, 0u32, None, None);
    for line in lines.take(8) {
        let line = line.unwrap();
        let w: Vec<&str> = line.split_whitespace().collect();
        match w.first().copied() {
            Some("mixnode") => tcp = Some(w[3].parse().unwrap()),
            Some("mix") => {
                key = Some(<[u8; 32]>::try_from(hex::decode(w[2]).unwrap()).unwrap());
                epoch = w[4].trim_end_matches(')').parse().unwrap();
            }
            Some("htx") => htx = Some(w[2].to_owned()),
            Some("public") => {
                let b: [u8; 32] = hex::decode(w[2]).unwrap().try_into().unwrap();
                public = Some(VerifyingKey::from_bytes(&b).unwrap());
                break;
            }
            _ => {}
        }
    }
    let hop = RouteHop {
        addr: NodeAddr(tcp.unwrap()),
        epoch,
        key: MixPublicKey(key.unwrap()),
    };
    let conn = dial(
        &htx.unwrap(),
        &public.unwrap(),
        &ClientConfig::new(SigningKey::generate(&mut rand_core::OsRng)),
    )
    .await
    .unwrap();
    let mut s = conn.open_stream().unwrap();
    for _ in 0..3 {
        let (_, p) = build_packet(
            &mut rand_core::OsRng,
            PacketSize::K2,
            &[hop],
            [1; 32],
            b"hi",
        )
        .unwrap();
        write_frame(&mut s, &p).await.unwrap();
    }
    s.flush().await.unwrap();
    let addr = metrics_port.to_string();
    for _ in 0..100 {
        if metric(&addr, "betanet_mix_packets_received") >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("packets sent over HTX never reached the mixnode pipeline");
}
