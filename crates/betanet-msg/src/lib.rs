//! betanet-msg
pub mod chunk;
pub mod compat;
mod error;
pub mod frame;
pub mod handler;
pub mod node;
pub mod packify;
pub mod peers;
pub mod plugin;
pub mod secure;
pub mod udp;

pub use error::{MsgError, Result};
pub use frame::{AuthFields, Body, Message, MessageType};
pub use handler::{Content, PeerAddr, RemotePeer, Request, Uri};
pub use node::{Config, Conn, Key, Node, NodeBuilder, Transport};
pub use plugin::{AuthPlugin, AuthStack, CipherPlugin, Peer, PluginCx, Plugins};
