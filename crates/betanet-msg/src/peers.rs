//! Peer management: ADVERTISE_PEER / PEER_DISCOVERED / DISCONNECT handlers keyed by the app id.

use crate::frame::{Message, MessageType};
use crate::handler::Request;
use crate::node::{Conn, Node};
use crate::plugin::Peer;

pub(crate) fn install(node: &Node) {
    let app = node.config().app_id.clone();
    node.on(
        (MessageType::ADVERTISE_PEER, app.clone()),
        |r: Request| async move {
            let me = r.node.local_peer()?.clone();
            let p = Peer::unpack(&r.msg.body.content).ok()?;
            if p.id == me.id {
                return None; // our own multicast
            }
            r.node.add_peer(p, &r.conn);
            Some(Message::new(
                MessageType::PEER_DISCOVERED,
                r.node.config().app_id.clone(),
                me.pack(),
            ))
        },
    );
    node.on(
        (MessageType::PEER_DISCOVERED, app.clone()),
        |r: Request| async move {
            let me = r.node.local_peer()?.clone();
            if let Ok(p) = Peer::unpack(&r.msg.body.content)
                && p.id != me.id
            {
                r.node.add_peer(p, &r.conn);
            }
            None::<Message>
        },
    );
    node.on((MessageType::DISCONNECT, app), |r: Request| async move {
        if let Ok(p) = Peer::unpack(&r.msg.body.content) {
            r.node.remove_peer(&p.id);
        }
    });
}

/// The advertisement message for this node, if peer management is on.
pub fn advertisement(node: &Node, t: MessageType) -> Option<Message> {
    let me = node.local_peer()?;
    Some(Message::new(t, node.config().app_id.clone(), me.pack()))
}

pub(crate) async fn on_connect(node: &Node, c: &Conn) {
    if let Some(m) = advertisement(node, MessageType::ADVERTISE_PEER) {
        let _ = node.send(c, m).await;
    }
}

impl Node {
    /// Send DISCONNECT to every connection / known peer (stop peer management politely).
    pub async fn disconnect_peers(&self) -> usize {
        match advertisement(self, MessageType::DISCONNECT) {
            Some(m) => self.broadcast(m).await.unwrap_or(0),
            None => 0,
        }
    }

    /// Unicast discovery: send ADVERTISE_PEER to `addr` over UDP (the answer, PEER_DISCOVERED,
    /// adds the peer).
    pub async fn advertise_to(&self, addr: std::net::SocketAddr) -> crate::Result<()> {
        let c = self.udp_conn(addr)?;
        match advertisement(self, MessageType::ADVERTISE_PEER) {
            Some(m) => self.send(&c, m).await,
            None => Err(crate::MsgError::Plugin(
                "peer management is off (no local peer)",
            )),
        }
    }
}
