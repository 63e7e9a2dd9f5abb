//! UDP sockets: address reuse (several nodes per host/port), IPv6, multicast advertisement.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Result;
use crate::frame::MessageType;
use crate::node::Node;

/// netaio's multicast group.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// A UDP socket bound with `SO_REUSEADDR` and (on Unix) `SO_REUSEPORT`.
pub fn reuse_socket(addr: SocketAddr) -> Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.bind(&addr.into())?;
    Ok(s.into())
}

/// A reusable UDP socket on `port` joined to `group` (IPv4) on `iface`, with loopback on.
pub fn multicast_socket(
    group: Ipv4Addr,
    port: u16,
    iface: Ipv4Addr,
) -> Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port).into())?;
    s.join_multicast_v4(&group, &iface)?;
    s.set_multicast_loop_v4(true)?;
    s.set_multicast_if_v4(&iface)?;
    Ok(s.into())
}

impl Node {
    /// Send an application message to a multicast group (or any UDP address), sealed with the
    /// node plugins (per-peer plugins cannot be used for multicast).
    pub async fn multicast(&self, group: SocketAddr, m: crate::Message) -> Result<()> {
        let c = self.udp_conn(group)?;
        self.send(&c, m).await
    }

    /// Multicast ADVERTISE_PEER to `group` now and then every `advertise_every`, expiring
    /// silent peers (`peer_timeout`, millisecond precision). Runs until the node is dropped
    /// by all handles except this task; abort the returned handle to stop.
    pub fn advertise_multicast(&self, group: SocketAddr) -> tokio::task::JoinHandle<()> {
        let node = self.clone();
        let every = self.config().advertise_every.max(Duration::from_millis(10));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                node.expire_peers();
                if let (Ok(c), Some(m)) = (
                    node.udp_conn(group),
                    crate::peers::advertisement(&node, MessageType::ADVERTISE_PEER),
                ) {
                    let _ = node.send(&c, m).await;
                }
            }
        })
    }
}
