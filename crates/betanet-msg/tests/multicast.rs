//! UDP multicast peer discovery, run inside a private network namespace (`unshare -rn`):
//! nothing leaves the machine. Skips with a message where user namespaces are unavailable.
//!
//! * IPv4: the namespace has only `lo`, with 224/4 routed to `lo`.
//! * IPv6: Linux turns IPv6 routes via `lo` into reject routes, so multicast cannot use `lo`;
//!   the namespace gets a private veth pair (both ends inside it, nothing attached to the
//!   host) and the nodes join `ff02::114` on one end, with multicast loopback on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use betanet_msg::udp::{
    MULTICAST_V4, MULTICAST_V6, multicast_socket, multicast_socket_v6, multicast_v6_dest,
};
use betanet_msg::{Content, Message, MessageType, NodeBuilder, Peer};

const MARK: &str = "BETANET_MSG_IN_NETNS";

#[test]
fn multicast_discovery_in_netns() {
    in_netns("multicast_discovery_in_netns", inside, "MULTICAST-OK");
}

#[test]
fn multicast_v6_discovery_in_netns() {
    in_netns(
        "multicast_v6_discovery_in_netns",
        inside_v6,
        "MULTICAST6-OK",
    );
}

/// Run test `name` again inside `unshare -rn` (where `body` runs) and check it printed `ok`.
fn in_netns(name: &str, body: fn(), ok: &str) {
    if std::env::var_os(MARK).is_some() {
        return body();
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
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(MARK, "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "inner run failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = stdout.lines().find(|l| l.starts_with("SKIP")) {
        eprintln!("{line}");
        return;
    }
    assert!(stdout.contains(ok), "{stdout}");
}

fn sh(args: &[&str]) {
    let st = Command::new("ip").args(args).status().unwrap();
    assert!(st.success(), "ip {args:?}");
}

fn inside() {
    sh(&["link", "set", "lo", "up"]);
    sh(&["link", "set", "lo", "multicast", "on"]);
    sh(&["route", "add", "224.0.0.0/4", "dev", "lo"]);
    let port = 38_765;
    discovery(SocketAddr::from((MULTICAST_V4, port)), || {
        multicast_socket(MULTICAST_V4, port, Ipv4Addr::LOCALHOST).unwrap()
    });
    println!("MULTICAST-OK");
}

fn inside_v6() {
    sh(&["link", "set", "lo", "up"]);
    let veth = Command::new("ip")
        .args([
            "link", "add", "bnv0", "type", "veth", "peer", "name", "bnv1",
        ])
        .output()
        .unwrap();
    if !veth.status.success() {
        println!(
            "SKIP ipv6 multicast test: cannot create a veth pair in the namespace: {}",
            String::from_utf8_lossy(&veth.stderr).trim()
        );
        return;
    }
    sh(&["link", "set", "bnv0", "up"]);
    sh(&["link", "set", "bnv1", "up"]);
    // A link-local source address at once (no duplicate address detection delay).
    sh(&["-6", "addr", "add", "fe80::b1/64", "dev", "bnv0", "nodad"]);
    let out = Command::new("ip")
        .args(["-o", "link", "show", "bnv0"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let ifindex: u32 = text.split(':').next().unwrap().trim().parse().unwrap();
    let port = 38_766;
    discovery(multicast_v6_dest(MULTICAST_V6, port, ifindex), || {
        multicast_socket_v6(MULTICAST_V6, port, ifindex).unwrap()
    });
    println!("MULTICAST6-OK");
}

/// Two nodes on `group` discover each other, exchange an application multicast, and the
/// survivor expires the other once it goes silent.
fn discovery(group: SocketAddr, socket: impl Fn() -> std::net::UdpSocket) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(discovery_async(group, socket));
}

fn discovery_async(
    group: SocketAddr,
    socket: impl Fn() -> std::net::UdpSocket,
) -> impl Future<Output = ()> {
    let (sa, sb) = (socket(), socket());
    async move {
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
        a.run_udp(sa).await.unwrap();
        b.run_udp(sb).await.unwrap();
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
    }
}
