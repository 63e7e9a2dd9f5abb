//! Plugin traits (auth, cipher), the per-call context, and peers.
//!
//! Plugins are sans-IO: the node hands them the time and an RNG through [`PluginCx`].
//! Encapsulation order (netaio's): send = handler cipher → handler auth → node cipher → node
//! auth; receive = node auth → node cipher → route → handler auth → handler cipher.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use rand_core::CryptoRngCore;

use crate::error::Result;
use crate::frame::{Body, Message, MessageType};
use crate::packify::Value;

/// What a plugin may use besides the message: time, randomness, the remote peer.
pub struct PluginCx<'a> {
    /// Wall-clock time in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// Randomness.
    pub rng: &'a mut dyn CryptoRngCore,
    /// The remote peer, when known (needed by per-peer plugins such as X25519).
    pub peer: Option<&'a Peer>,
}

/// An authentication/authorization layer (netaio's `AuthPluginProtocol`).
pub trait AuthPlugin: Send + Sync + 'static {
    /// Add this layer's auth fields for `mtype`/`body` (the body as it stands at this layer).
    fn make(
        &self,
        mtype: MessageType,
        auth: &mut crate::AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()>;
    /// Verify this layer's auth fields. Stateful checks (replay caches) record on success.
    fn check(
        &self,
        mtype: MessageType,
        auth: &crate::AuthFields,
        body: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()>;
    /// The reply sent (without plugins) when `check` fails.
    fn error(&self) -> Message {
        Message::new(MessageType::AUTH_ERROR, &b"ERROR"[..], &b"auth failed"[..])
    }
}

/// An encryption layer (netaio's `CipherPluginProtocol`).
pub trait CipherPlugin: Send + Sync + 'static {
    /// Encrypt (may add auth fields such as an IV).
    fn encrypt(&self, msg: Message, cx: &mut PluginCx<'_>) -> Result<Message>;
    /// Decrypt.
    fn decrypt(&self, msg: Message, cx: &mut PluginCx<'_>) -> Result<Message>;
    /// True when the ciphertext depends on the peer (then broadcasts are sealed per peer).
    fn is_peer_specific(&self) -> bool {
        false
    }
}

/// Several auth layers applied as one (make in order, check in order; all must pass).
/// Each layer must use its own field names.
#[derive(Clone, Default)]
pub struct AuthStack(pub Vec<Arc<dyn AuthPlugin>>);

impl AuthPlugin for AuthStack {
    fn make(
        &self,
        t: MessageType,
        a: &mut crate::AuthFields,
        b: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        self.0.iter().try_for_each(|p| p.make(t, a, b, cx))
    }
    fn check(
        &self,
        t: MessageType,
        a: &crate::AuthFields,
        b: &Body,
        cx: &mut PluginCx<'_>,
    ) -> Result<()> {
        self.0.iter().try_for_each(|p| p.check(t, a, b, cx))
    }
    fn error(&self) -> Message {
        self.0.first().map(|p| p.error()).unwrap_or_else(|| {
            Message::new(MessageType::AUTH_ERROR, &b"ERROR"[..], &b"auth failed"[..])
        })
    }
}

/// The plugins of one layer (node-wide or per handler).
#[derive(Clone, Default)]
pub struct Plugins {
    /// Auth layer.
    pub auth: Option<Arc<dyn AuthPlugin>>,
    /// Cipher layer.
    pub cipher: Option<Arc<dyn CipherPlugin>>,
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Self::default()
    }
    /// Set the auth layer.
    pub fn with_auth(mut self, a: impl AuthPlugin) -> Self {
        self.auth = Some(Arc::new(a));
        self
    }
    /// Set the cipher layer.
    pub fn with_cipher(mut self, c: impl CipherPlugin) -> Self {
        self.cipher = Some(Arc::new(c));
        self
    }
    /// True if no plugin is set.
    pub fn is_empty(&self) -> bool {
        self.auth.is_none() && self.cipher.is_none()
    }
    /// Send direction: cipher encrypt, then auth make.
    pub fn seal(&self, mut m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        if let Some(c) = &self.cipher {
            m = c.encrypt(m, cx)?;
        }
        if let Some(a) = &self.auth {
            a.make(m.mtype, &mut m.auth, &m.body, cx)?;
        }
        Ok(m)
    }
    /// Receive direction, auth part. On failure the caller answers with `auth.error()`.
    pub fn check(&self, m: &Message, cx: &mut PluginCx<'_>) -> Result<()> {
        match &self.auth {
            Some(a) => a.check(m.mtype, &m.auth, &m.body, cx),
            None => Ok(()),
        }
    }
    /// Receive direction, cipher part.
    pub fn open(&self, m: Message, cx: &mut PluginCx<'_>) -> Result<Message> {
        match &self.cipher {
            Some(c) => c.decrypt(m, cx),
            None => Ok(m),
        }
    }
    /// True if a layer is per-peer.
    pub fn is_peer_specific(&self) -> bool {
        self.cipher.as_ref().is_some_and(|c| c.is_peer_specific())
    }
}

/// A known peer (netaio's `Peer`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Addresses the peer was seen at.
    pub addrs: Vec<SocketAddr>,
    /// Peer id (opaque bytes).
    pub id: Bytes,
    /// Peer data (typically a packify dict such as `{"pubkey": 32B}`).
    pub data: Bytes,
    /// Last time (ms since epoch) something was received from the peer.
    pub last_rx_ms: u64,
}

impl Peer {
    /// A peer with id and data.
    pub fn new(id: impl Into<Bytes>, data: impl Into<Bytes>) -> Self {
        Self {
            addrs: Vec::new(),
            id: id.into(),
            data: data.into(),
            last_rx_ms: 0,
        }
    }
    /// netaio's `DefaultPeerPlugin.pack`: packify tuple `(id, data)`.
    pub fn pack(&self) -> Vec<u8> {
        Value::Tuple(vec![
            Value::Bytes(self.id.to_vec()),
            Value::Bytes(self.data.to_vec()),
        ])
        .encode()
    }
    /// Inverse of [`Peer::pack`] (addresses empty).
    pub fn unpack(b: &[u8]) -> Result<Self> {
        match Value::decode(b)? {
            Value::Tuple(t) => match t.as_slice() {
                [id, data] => {
                    let id = id
                        .as_bytes()
                        .ok_or_else(|| crate::error::malformed("peer", "id is not bytes"))?;
                    let data = match data {
                        Value::None => &[][..],
                        d => d
                            .as_bytes()
                            .ok_or_else(|| crate::error::malformed("peer", "data is not bytes"))?,
                    };
                    Ok(Self::new(id.to_vec(), data.to_vec()))
                }
                _ => Err(crate::error::malformed("peer", "not a 2-tuple")),
            },
            _ => Err(crate::error::malformed("peer", "not a tuple")),
        }
    }
    /// Build netaio peer data `{"pubkey": .., "vkey": ..}` (packify dict of bytes).
    pub fn encode_data(fields: &[(&str, &[u8])]) -> Vec<u8> {
        Value::Dict(
            fields
                .iter()
                .map(|(k, v)| (Value::Str((*k).to_owned()), Value::Bytes(v.to_vec())))
                .collect(),
        )
        .encode()
    }
    /// Look up a bytes field in the packify-dict peer data.
    pub fn data_field(&self, key: &str) -> Option<Vec<u8>> {
        match Value::decode(&self.data).ok()? {
            Value::Dict(kv) => kv.into_iter().find_map(|(k, v)| match (k, v) {
                (Value::Str(s), Value::Bytes(b)) if s == key => Some(b),
                _ => None,
            }),
            _ => None,
        }
    }
}
