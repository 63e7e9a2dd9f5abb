//! Handlers registered like axum: async functions whose arguments are typed extractors.
//!
//! ```ignore
//! node.on((MessageType::REQUEST_URI, "echo"), |Content(c): Content| async move {
//!     Message::new(MessageType::RESPOND_URI, "echo", c)
//! });
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;

use crate::frame::{Message, MessageType};
use crate::node::{Conn, Node};
use crate::plugin::Peer;

/// Boxed future returned by erased handlers.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Everything a handler can extract from.
#[derive(Clone)]
pub struct Request {
    /// The (decrypted, authenticated) message.
    pub msg: Message,
    /// Remote socket address, if the transport has one.
    pub from: Option<SocketAddr>,
    /// The connection (or UDP remote) the message arrived on; replies may also be sent here.
    pub conn: Conn,
    /// The node.
    pub node: Node,
    /// The remote peer, if known through peer management.
    pub peer: Option<Peer>,
}

/// A value built from a [`Request`]. Extraction is infallible: every extractor has a value.
pub trait FromRequest: Sized {
    /// Build from the request.
    fn from_request(req: &Request) -> Self;
}

impl FromRequest for Message {
    fn from_request(r: &Request) -> Self {
        r.msg.clone()
    }
}
impl FromRequest for Request {
    fn from_request(r: &Request) -> Self {
        r.clone()
    }
}
impl FromRequest for Conn {
    fn from_request(r: &Request) -> Self {
        r.conn.clone()
    }
}
impl FromRequest for Node {
    fn from_request(r: &Request) -> Self {
        r.node.clone()
    }
}
impl FromRequest for MessageType {
    fn from_request(r: &Request) -> Self {
        r.msg.mtype
    }
}

/// The URI of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri(pub Bytes);
impl FromRequest for Uri {
    fn from_request(r: &Request) -> Self {
        Uri(r.msg.body.uri.clone())
    }
}
/// The content of the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Content(pub Bytes);
impl FromRequest for Content {
    fn from_request(r: &Request) -> Self {
        Content(r.msg.body.content.clone())
    }
}
/// The remote address (None for transports without one, such as in-memory streams).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerAddr(pub Option<SocketAddr>);
impl FromRequest for PeerAddr {
    fn from_request(r: &Request) -> Self {
        PeerAddr(r.from)
    }
}
/// The remote peer, if known.
#[derive(Clone, Debug)]
pub struct RemotePeer(pub Option<Peer>);
impl FromRequest for RemotePeer {
    fn from_request(r: &Request) -> Self {
        RemotePeer(r.peer.clone())
    }
}
/// What a handler may return.
pub trait IntoReply {
    /// Convert to an optional reply message.
    fn into_reply(self) -> Option<Message>;
}
impl IntoReply for Message {
    fn into_reply(self) -> Option<Message> {
        Some(self)
    }
}
impl IntoReply for Option<Message> {
    fn into_reply(self) -> Option<Message> {
        self
    }
}
impl IntoReply for () {
    fn into_reply(self) -> Option<Message> {
        None
    }
}

/// A type-erased handler.
pub type ErasedHandler = Arc<dyn Fn(Request) -> BoxFuture<Option<Message>> + Send + Sync>;

/// Implemented for `async fn(E1, .., En) -> R` with extractors `Ei` and `R: IntoReply`.
pub trait Handler<Args>: Clone + Send + Sync + 'static {
    /// Erase the handler's type.
    fn erase(self) -> ErasedHandler;
}

macro_rules! impl_handler {
    ($($t:ident),*) => {
        impl<F, Fut, R, $($t,)*> Handler<($($t,)*)> for F
        where
            F: Fn($($t),*) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + Send + 'static,
            R: IntoReply,
            $($t: FromRequest + Send + 'static,)*
        {
            #[allow(non_snake_case, unused_variables)]
            fn erase(self) -> ErasedHandler {
                Arc::new(move |req: Request| {
                    $(let $t = $t::from_request(&req);)*
                    let fut = (self)($($t),*);
                    Box::pin(async move { fut.await.into_reply() })
                })
            }
        }
    };
}
impl_handler!();
impl_handler!(A);
impl_handler!(A, B);
impl_handler!(A, B, C);
impl_handler!(A, B, C, D);
impl_handler!(A, B, C, D, E);
