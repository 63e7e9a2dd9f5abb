//! UDP multicast peer discovery, run inside a private network namespace (`unshare -rn`) that
//! has only `lo`, with multicast routed to `lo`: nothing leaves the machine. Skips with a
//! message where user namespaces are unavailable.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use betanet_msg::udp::{MULTICAST_V4, multicast_socket};
use betanet_msg::{Content, Message, MessageType, NodeBuilder, Peer};

const MARK: &str = "BETANET_MSG_IN_NETNS";

#[test]
fn multicast_discovery_in_netns() {
    if std::env::var_os(MARK).is_some() {
        return inside();
    }
    let probe = Command::new("unshare")
        .args(["-r", "-n", "ip", "link", "set", "lo", "up"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        _ => {
            eprintln!(
                "SKIP multicast test: cannot create a network namespace (unshare -rn / ip unavailable)"
            );
            return;
        }
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-r", "-n"])
        .arg(exe)
        .args([
            "--exact",
            "multicast_discovery_in_netns",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(MARK, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inner run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("MULTICAST-OK"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn sh(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

fn inside() {
    sh(&["link", "set", "lo", "up"]);
    sh(&["link", "set", "lo", "multicast", "on"]);
    sh(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let port = 38_765;
        let group = SocketAddr::from((MULTICAST_V4, port));
        let mk = |id: u8| {
            NodeBuilder::secure(b"k")
                .peer(
                    Peer::new(vec![id; 16], Vec::new()),
                    b"netaio",
                    Duration::from_millis(200),
                    Duration::from_millis(900),
                )
                .build()
        };
        let (a, b) = (mk(1), mk(2));
        a.run_udp(multicast_socket(MULTICAST_V4, port, Ipv4Addr::LOCALHOST).unwrap())
            .await
            .unwrap();
        b.run_udp(multicast_socket(MULTICAST_V4, port, Ipv4Addr::LOCALHOST).unwrap())
            .await
            .unwrap();
        let ha = a.advertise_multicast(group);
        let hb = b.advertise_multicast(group);
        let mut ok = false;
        for _ in 0..100 {
            if a.peers().len() == 1 && b.peers().len() == 1 {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "peers: a={} b={}", a.peers().len(), b.peers().len());
        assert_eq!(&a.peers()[0].id[..], &[2u8; 16]);
        // application multicast reaches the other node
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        b.on(
            (MessageType::PUBLISH_URI, "mc"),
            move |Content(c): Content| {
                let tx = tx.clone();
                async move { tx.send(c.to_vec()).await.unwrap() }
            },
        );
        a.on((MessageType::PUBLISH_URI, "mc"), || async {});
        a.multicast(
            group,
            Message::new(MessageType::PUBLISH_URI, &b"mc"[..], &b"to all"[..]),
        )
        .await
        .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got, b"to all".to_vec());
        // b goes silent: a drops it after the (sub-second) peer timeout
        hb.abort();
        b.close_udp();
        let mut gone = false;
        for _ in 0..100 {
            if a.peers().is_empty() {
                gone = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(gone, "silent peer not expired");
        ha.abort();
        println!("MULTICAST-OK");
    });
}
