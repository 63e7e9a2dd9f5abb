//! UDP sockets: address reuse (several nodes per host/port), IPv6, multicast advertisement.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::Result;
use crate::frame::MessageType;
use crate::node::Node;

/// netaio's multicast group.
pub const MULTICAST_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 1);

/// Default IPv6 discovery group: `ff02::114`, link-local scope (netaio has no IPv6; 0x114 is
/// the IANA "any private experiment" group id, so all-nodes `ff02::1` is not woken up). Any
/// group works; `ff01::114` (interface-local) keeps traffic on the host.
pub const MULTICAST_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x114);

/// The destination address for IPv6 `group`/`port` on interface `ifindex` (link- and
/// interface-local groups need the interface as scope id).
pub fn multicast_v6_dest(group: Ipv6Addr, port: u16, ifindex: u32) -> SocketAddr {
    SocketAddr::V6(SocketAddrV6::new(group, port, 0, ifindex))
}

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

/// A reusable IPv6 UDP socket on `[::]:port` joined to `group` on interface `ifindex`
/// (0 = the kernel's choice), sending multicast out of that interface, with loopback on so
/// nodes on the same host hear each other. Pair it with [`multicast_v6_dest`] and
/// [`Node::advertise_multicast`].
pub fn multicast_socket_v6(
    group: Ipv6Addr,
    port: u16,
    ifindex: u32,
) -> Result<std::net::UdpSocket> {
    let s = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    #[cfg(unix)]
    s.set_reuse_port(true)?;
    s.set_only_v6(true)?;
    s.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    s.join_multicast_v6(&group, ifindex)?;
    s.set_multicast_loop_v6(true)?;
    s.set_multicast_if_v6(ifindex)?;
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
