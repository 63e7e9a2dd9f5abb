//! The mixnet part of `betanet demo`: N in-process mixnodes on 127.0.0.1 and a check that a
//! layered packet crosses them (one X25519 unwrap, replay check and U[30,150] ms delay per hop).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use betanet_mix::node::{Delivery, Mixnode, MixnodeConfig, write_frame};
use betanet_mix::packet::{PacketSize, RouteHop, build_packet};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// Running demo mixnodes.
pub struct DemoMix {
    nodes: Vec<Mixnode>,
    exit: tokio::sync::Mutex<mpsc::Receiver<Delivery>>,
}

/// Starts `n` mixnodes (none when `n == 0`). Only the last one delivers to the demo.
pub async fn start(n: usize, dir: &Path) -> Result<Option<DemoMix>> {
    if n == 0 {
        return Ok(None);
    }
    let (tx, rx) = mpsc::channel(64);
    let mut nodes = Vec::with_capacity(n);
    for i in 0..n {
        let addr = "127.0.0.1:0".parse().context("loopback address")?;
        let cfg = MixnodeConfig::new(addr, dir.join(format!("mix-{i}")));
        let exit = (i + 1 == n).then(|| tx.clone());
        nodes.push(
            Mixnode::start(cfg, exit)
                .await
                .context("starting a mixnode")?,
        );
    }
    Ok(Some(DemoMix {
        nodes,
        exit: tokio::sync::Mutex::new(rx),
    }))
}

impl DemoMix {
    /// The nodes' addresses.
    pub fn describe(&self) -> String {
        let addrs: Vec<String> = self
            .nodes
            .iter()
            .map(|n| n.local_addr().to_string())
            .collect();
        format!(
            "{} ({} hops, U[30,150] ms delay each)",
            addrs.join(" → "),
            self.nodes.len()
        )
    }

    /// Sends one 2 KiB packet through every node and waits for its delivery.
    pub async fn check(&self) -> Result<String> {
        let route: Vec<RouteHop> = self.nodes.iter().map(Mixnode::route_hop).collect();
        let msg = b"hello through the mixnet";
        let (first, packet) = build_packet(
            &mut rand_core::OsRng,
            PacketSize::K2,
            &route,
            [0x42; 32],
            msg,
        )?;
        let t = Instant::now();
        let mut s = tokio::net::TcpStream::connect(first.0).await?;
        write_frame(&mut s, &packet).await?;
        s.flush().await?;
        let got = tokio::time::timeout(Duration::from_secs(10), self.exit.lock().await.recv())
            .await
            .context("the packet did not come out of the mixnet within 10 s")?
            .context("the exit node stopped")?;
        if got.message != msg {
            bail!("the mixnet delivered a different message");
        }
        Ok(format!(
            "{}-hop packet ({} B, layered) delivered intact in {:.0} ms",
            route.len(),
            packet.len(),
            t.elapsed().as_secs_f64() * 1e3
        ))
    }
}
