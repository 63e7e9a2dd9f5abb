//! # betanet-msg — a netaio-compatible message framework, secure by default
//!
//! **What it is.** A "fastapi for non-HTTP" framework for Betanet apps, wire-compatible with
//! the Python [netaio] 0.0.9 library: frames of `type ‖ auth-fields ‖ (uri, content)`,
//! handlers keyed by `(message type, URI[, peer address])`, auth and cipher plugins applied in
//! netaio's encapsulation order (node-wide and per handler), one-shot handlers,
//! `request`/`create`/`update`/`delete` with timeouts, subscriptions with `notify`,
//! `broadcast`, UDP nodes with multicast/unicast peer discovery, and a [`Transport`]
//! abstraction so the same handlers run over TCP, in-memory streams or HTX streams.
//!
//! **Two profiles.**
//! * *compat* ([`NodeBuilder::compat`] + [`compat`] plugins): byte-exact with netaio, including
//!   its HMAC, SHA-256 stream cipher and X25519 (NaCl box) plugins, for talking to existing
//!   Python nodes. It inherits netaio's weaknesses.
//! * *secure* ([`NodeBuilder::secure`], the default for Betanet apps, [`secure`] plugins): a MAC
//!   over type, URI, body and all auth fields with a time window and per-session anti-replay
//!   window, ChaCha20-Poly1305, request ids (`rid`) so concurrent requests never collide,
//!   auth errors surfaced as errors (not timeouts), chunking for messages > 64 KiB, and
//!   Hashcash-style proof-of-work auth for anti-spam.
//!
//! **What it is not.** Not an HTTP framework, not a transport: it frames messages over a byte
//! stream or datagrams it is given. It does not provide the HTX cover transport itself; attach
//! an HTX stream with [`Node::attach`]/[`Node::serve`]. The compat ciphers are not
//! recommended for new deployments.
//!
//! **How it fits.** Codecs ([`frame`], [`packify`], [`chunk`]) and plugins ([`compat`],
//! [`secure`]) are sans-IO (time and RNG passed in via [`PluginCx`]); [`node`] is the thin
//! tokio driver: one reader task per connection; on TCP a sender writes straight into the
//! socket when nothing is queued, and a writer task drains a bounded queue (batched writes)
//! only under load. Client connections re-dial with backoff after a drop ([`Reconnect`]);
//! [`Node::shutdown`] / [`Node::close`] stop gracefully within a grace period.
//!
//! ```no_run
//! use betanet_msg::{Content, Message, MessageType, NodeBuilder};
//! # async fn demo() -> betanet_msg::Result<()> {
//! let server = NodeBuilder::secure(b"shared secret").build();
//! server.on((MessageType::REQUEST_URI, "echo"), |Content(c): Content| async move {
//!     Message::new(MessageType::RESPOND_URI, &b"echo"[..], c)
//! });
//! let addr = server.listen("127.0.0.1:0".parse().unwrap()).await?;
//! let client = NodeBuilder::secure(b"shared secret").build();
//! let conn = client.connect(addr).await?;
//! let reply = client.request(&conn, MessageType::REQUEST_URI, b"echo", b"hi", None).await?;
//! assert_eq!(&reply.body.content[..], b"hi");
//! # Ok(()) }
//! ```
//!
//! [netaio]: https://pypi.org/project/netaio/

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
mod tcp_out;
pub mod udp;

pub use error::{MsgError, Result};
pub use frame::{AuthFields, Body, Message, MessageType};
pub use handler::{Content, PeerAddr, RemotePeer, Request, Uri};
pub use node::{Config, Conn, Key, Node, NodeBuilder, Reconnect, ShutdownStats, Transport};
pub use plugin::{AuthPlugin, AuthStack, CipherPlugin, Peer, PluginCx, Plugins};
