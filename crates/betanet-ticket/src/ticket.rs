//! Access tickets, client side and payload codec (SPEC §4.2, byte-compatible with the Python
//! library's `betanet.tickets`):
//!
//! ```text
//! hour         = floor(unix_seconds / 3600)
//! salt         = SHA-256("betanet-ticket-v1" ‖ ticketKeyID8 ‖ u64be(hour))
//! accessTicket = HKDF-SHA256(IKM = X25519(cliPriv, ticketPub), salt, info = "", L = 32)
//! payload      = 0x01 ‖ cliPub32 ‖ ticketKeyID8 ‖ nonce32 ‖ accessTicket32 ‖ pad(24..=64)
//! ```
//!
//! The payload travels Base64URL (no padding) in exactly one carrier chosen by the site's
//! [`CarrierPolicy`]. The server side is [`crate::verifier`].

use core::fmt;

use betanet_crypto::dh::{X25519Public, X25519Secret, x25519};
use betanet_crypto::hash::sha256_concat;
use betanet_crypto::kdf::{hkdf_expand, hkdf_extract};
use betanet_wire::b64;
use rand_core::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::{Refusal, TicketError};
use crate::policy::{Carrier, CarrierPolicy};

/// The version byte.
pub const TICKET_VERSION: u8 = 0x01;
/// The salt label.
pub const SALT_LABEL: &[u8] = b"betanet-ticket-v1";
/// Length of `ticketKeyID`.
pub const KEY_ID_LEN: usize = 8;
/// Length of the fixed fields (version, cliPub, keyID, nonce, accessTicket).
pub const FIXED_LEN: usize = 1 + 32 + KEY_ID_LEN + 32 + 32;
/// Smallest pad a client sends.
pub const MIN_PAD: usize = 24;
/// Largest pad a client sends.
pub const MAX_PAD: usize = 64;
/// Longest payload a server decodes (fixed fields plus generous trailing bytes).
pub const MAX_PAYLOAD_LEN: usize = 512;
/// The cookie name.
pub const COOKIE_NAME: &str = "__Host-bn1";
/// The query / form parameter name.
pub const PARAM_NAME: &str = "bn1";
/// The form-body content type.
pub const FORM_CONTENT_TYPE: &str = "application/x-www-form-urlencoded";

/// `floor(unix_seconds / 3600)`.
pub fn ticket_hour(now_unix_secs: u64) -> u64 {
    now_unix_secs / 3600
}

/// `SHA-256("betanet-ticket-v1" ‖ ticketKeyID ‖ u64be(hour))`.
pub fn ticket_salt(key_id: &[u8; KEY_ID_LEN], hour: u64) -> [u8; 32] {
    sha256_concat(&[SALT_LABEL, key_id, &hour.to_be_bytes()])
}

/// `HKDF(IKM = shared, salt, info = "", 32)` for the given key id and hour.
pub fn access_ticket_from_shared(
    shared: &[u8; 32],
    key_id: &[u8; KEY_ID_LEN],
    hour: u64,
) -> Zeroizing<[u8; 32]> {
    let prk = hkdf_extract(&ticket_salt(key_id, hour), shared);
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is always a valid HKDF-Expand length.
    let _ = hkdf_expand(prk.as_ref(), &[], out.as_mut());
    out
}

/// What a site publishes: its ticket X25519 public key and key id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TicketKeys {
    /// `ticketPub`.
    pub ticket_pub: X25519Public,
    /// `ticketKeyID`.
    pub ticket_key_id: [u8; KEY_ID_LEN],
}

/// What a client knows about a site: its keys and its carrier policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SiteInfo {
    /// The published keys.
    pub keys: TicketKeys,
    /// The published carrier policy.
    pub policy: CarrierPolicy,
}

/// The site's ticket key pair (server side). The secret is zeroized on drop.
#[derive(Clone)]
pub struct SiteTicketKey {
    secret: X25519Secret,
    keys: TicketKeys,
}

impl fmt::Debug for SiteTicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SiteTicketKey(key_id={}, secret=<redacted>)",
            hex::encode(self.keys.ticket_key_id)
        )
    }
}

impl SiteTicketKey {
    /// A key pair from a secret and a key id.
    pub fn from_secret(
        secret: X25519Secret,
        key_id: [u8; KEY_ID_LEN],
    ) -> Result<Self, TicketError> {
        let ticket_pub = secret.public()?;
        Ok(SiteTicketKey {
            secret,
            keys: TicketKeys {
                ticket_pub,
                ticket_key_id: key_id,
            },
        })
    }

    /// A fresh key pair with a random key id.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> Result<Self, TicketError> {
        let secret = X25519Secret::generate(rng);
        let mut id = [0u8; KEY_ID_LEN];
        rng.fill_bytes(&mut id);
        Self::from_secret(secret, id)
    }

    /// The public half to publish.
    pub fn keys(&self) -> TicketKeys {
        self.keys
    }

    pub(crate) fn secret(&self) -> &X25519Secret {
        &self.secret
    }
}

/// A parsed ticket payload (fields in order; trailing bytes are counted, not kept). Parsing does
/// not verify anything beyond the version byte and the length of the fixed fields.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketPayload {
    /// `cliPub`.
    pub cli_pub: [u8; 32],
    /// `ticketKeyID`.
    pub key_id: [u8; KEY_ID_LEN],
    /// `nonce32`.
    pub nonce: [u8; 32],
    /// `accessTicket`.
    pub access_ticket: [u8; 32],
    /// Number of bytes after the fixed fields (the pad; ignored by servers).
    pub trailing_len: usize,
}

impl fmt::Debug for TicketPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketPayload")
            .field("key_id", &hex::encode(self.key_id))
            .field("trailing_len", &self.trailing_len)
            .finish_non_exhaustive()
    }
}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], Refusal> {
    bytes
        .get(at..at + N)
        .and_then(|s| <[u8; N]>::try_from(s).ok())
        .ok_or(Refusal::Malformed)
}

impl TicketPayload {
    /// Parses the fields in order; bytes after them are ignored (SPEC §4.2 step 4).
    pub fn parse(bytes: &[u8]) -> Result<Self, Refusal> {
        let version = *bytes.first().ok_or(Refusal::Malformed)?;
        if version != TICKET_VERSION {
            return Err(Refusal::BadVersion);
        }
        Ok(TicketPayload {
            cli_pub: take::<32>(bytes, 1)?,
            key_id: take::<KEY_ID_LEN>(bytes, 33)?,
            nonce: take::<32>(bytes, 41)?,
            access_ticket: take::<32>(bytes, 73)?,
            trailing_len: bytes.len().saturating_sub(FIXED_LEN),
        })
    }

    /// Encodes the fixed fields followed by `pad`.
    pub fn encode(&self, pad: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED_LEN + pad.len());
        out.push(TICKET_VERSION);
        out.extend_from_slice(&self.cli_pub);
        out.extend_from_slice(&self.key_id);
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.access_ticket);
        out.extend_from_slice(pad);
        out
    }
}

/// Builds a payload from explicit inputs (deterministic; used by [`make_ticket`] and by test
/// vectors).
pub fn build_payload(
    keys: &TicketKeys,
    cli_secret: &X25519Secret,
    nonce: &[u8; 32],
    pad: &[u8],
    hour: u64,
) -> Result<Zeroizing<Vec<u8>>, TicketError> {
    build_payload_and_pub(keys, cli_secret, nonce, pad, hour).map(|(p, _)| p)
}

fn build_payload_and_pub(
    keys: &TicketKeys,
    cli_secret: &X25519Secret,
    nonce: &[u8; 32],
    pad: &[u8],
    hour: u64,
) -> Result<(Zeroizing<Vec<u8>>, X25519Public), TicketError> {
    let cli_pub = cli_secret.public()?;
    let shared = x25519(cli_secret, &keys.ticket_pub)?;
    let at = access_ticket_from_shared(&shared, &keys.ticket_key_id, hour);
    let p = TicketPayload {
        cli_pub: cli_pub.0,
        key_id: keys.ticket_key_id,
        nonce: *nonce,
        access_ticket: *at,
        trailing_len: pad.len(),
    };
    Ok((Zeroizing::new(p.encode(pad)), cli_pub))
}

/// A ticket made for one request, in its chosen carrier. `Debug` redacts the payload.
pub struct IssuedTicket {
    /// The carrier chosen by the policy.
    pub carrier: Carrier,
    /// The raw payload.
    pub payload: Zeroizing<Vec<u8>>,
    /// Its Base64URL text.
    pub b64: Zeroizing<String>,
    /// The client's ephemeral public key.
    pub cli_pub: X25519Public,
    /// The hour it was made for.
    pub hour: u64,
}

impl fmt::Debug for IssuedTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedTicket")
            .field("carrier", &self.carrier)
            .field("hour", &self.hour)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

/// How the chosen carrier is put on the request.
#[derive(Clone, PartialEq, Eq)]
pub enum RenderedCarrier {
    /// The value of a `Cookie` header: `__Host-bn1=<b64>`.
    Cookie(String),
    /// A query parameter to append to the request target: `bn1=<b64>`.
    Query(String),
    /// A POST body with its content type.
    Body {
        /// `application/x-www-form-urlencoded`.
        content_type: &'static str,
        /// `bn1=<b64>`.
        body: String,
    },
}

impl fmt::Debug for RenderedCarrier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RenderedCarrier::Cookie(_) => "RenderedCarrier::Cookie(<redacted>)",
            RenderedCarrier::Query(_) => "RenderedCarrier::Query(<redacted>)",
            RenderedCarrier::Body { .. } => "RenderedCarrier::Body(<redacted>)",
        })
    }
}

/// `__Host-bn1=<b64>` (a `Cookie` header value).
pub fn render_cookie(b64_text: &str) -> String {
    format!("{COOKIE_NAME}={b64_text}")
}

/// `bn1=<b64>` (a query parameter).
pub fn render_query(b64_text: &str) -> String {
    format!("{PARAM_NAME}={b64_text}")
}

/// `bn1=<b64>` (an `application/x-www-form-urlencoded` body).
pub fn render_form_body(b64_text: &str) -> String {
    format!("{PARAM_NAME}={b64_text}")
}

impl IssuedTicket {
    /// The ticket in its chosen carrier.
    pub fn render(&self) -> RenderedCarrier {
        self.render_as(self.carrier)
    }

    /// The ticket in a given carrier.
    pub fn render_as(&self, carrier: Carrier) -> RenderedCarrier {
        match carrier {
            Carrier::Cookie => RenderedCarrier::Cookie(render_cookie(&self.b64)),
            Carrier::Query => RenderedCarrier::Query(render_query(&self.b64)),
            Carrier::Body => RenderedCarrier::Body {
                content_type: FORM_CONTENT_TYPE,
                body: render_form_body(&self.b64),
            },
        }
    }
}

/// Makes a fresh ticket for `site` at `now_unix_secs`: new X25519 key pair, random nonce,
/// random pad length in the policy's range, carrier chosen by the policy's weights.
pub fn make_ticket<R: RngCore + CryptoRng>(
    site: &SiteInfo,
    now_unix_secs: u64,
    rng: &mut R,
) -> Result<IssuedTicket, TicketError> {
    let carrier = site.policy.choose(rng);
    let cli_secret = X25519Secret::generate(rng);
    let mut nonce = [0u8; 32];
    rng.fill_bytes(&mut nonce);
    let pad_len = site.policy.choose_pad_len(rng);
    let mut pad = Zeroizing::new(vec![0u8; pad_len]);
    rng.fill_bytes(&mut pad);
    let hour = ticket_hour(now_unix_secs);
    let (payload, cli_pub) = build_payload_and_pub(&site.keys, &cli_secret, &nonce, &pad, hour)?;
    let b64 = Zeroizing::new(b64::encode(&payload));
    Ok(IssuedTicket {
        carrier,
        payload,
        b64,
        cli_pub,
        hour,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn payload_layout() {
        let mut rng = StdRng::seed_from_u64(1);
        let site_key = SiteTicketKey::generate(&mut rng).unwrap();
        let site = SiteInfo {
            keys: site_key.keys(),
            policy: CarrierPolicy::default(),
        };
        for _ in 0..50 {
            let t = make_ticket(&site, 7_200_123, &mut rng).unwrap();
            assert!((FIXED_LEN + MIN_PAD..=FIXED_LEN + MAX_PAD).contains(&t.payload.len()));
            assert_eq!(t.payload[0], 1);
            assert_eq!(&t.payload[1..33], &t.cli_pub.0);
            assert_eq!(&t.payload[33..41], &site.keys.ticket_key_id);
            assert_eq!(t.hour, 2000);
            assert_eq!(b64::decode(&t.b64).unwrap(), *t.payload);
            let p = TicketPayload::parse(&t.payload).unwrap();
            assert_eq!(p.trailing_len, t.payload.len() - FIXED_LEN);
            assert_eq!(p.encode(&t.payload[FIXED_LEN..]), *t.payload);
            match t.render() {
                RenderedCarrier::Cookie(c) => {
                    assert_eq!(t.carrier, Carrier::Cookie);
                    assert_eq!(c, format!("__Host-bn1={}", *t.b64));
                }
                RenderedCarrier::Query(q) => {
                    assert_eq!(t.carrier, Carrier::Query);
                    assert_eq!(q, format!("bn1={}", *t.b64));
                }
                RenderedCarrier::Body { content_type, body } => {
                    assert_eq!(t.carrier, Carrier::Body);
                    assert_eq!(content_type, "application/x-www-form-urlencoded");
                    assert_eq!(body, format!("bn1={}", *t.b64));
                }
            }
            assert!(!format!("{t:?}").contains(&t.b64[..20]));
        }
    }

    #[test]
    fn parse_rejects_short_and_bad_version() {
        assert_eq!(TicketPayload::parse(&[]), Err(Refusal::Malformed));
        assert_eq!(TicketPayload::parse(&[2; 200]), Err(Refusal::BadVersion));
        let mut v = vec![1u8; FIXED_LEN];
        assert!(TicketPayload::parse(&v).is_ok());
        v.pop();
        assert_eq!(TicketPayload::parse(&v), Err(Refusal::Malformed));
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_round_trips(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(p) = TicketPayload::parse(&b) {
                proptest::prop_assert!(b.len() >= FIXED_LEN);
                proptest::prop_assert_eq!(p.trailing_len, b.len() - FIXED_LEN);
                proptest::prop_assert_eq!(p.encode(&b[FIXED_LEN..]), b);
            } else {
                proptest::prop_assert!(b.len() < FIXED_LEN || b[0] != TICKET_VERSION);
            }
        }

        #[test]
        fn verify_never_admits_random_bytes(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            use crate::verifier::{TicketVerifier, VerifierConfig};
            let key = SiteTicketKey::from_secret(X25519Secret::from_bytes([7; 32]), [1; 8]).unwrap();
            let mut b = b;
            // Make many inputs reach the cryptographic checks.
            if b.len() > 41 {
                b[0] = 1;
                b[33..41].copy_from_slice(&[1; 8]);
            }
            let mut v = TicketVerifier::new(vec![key], crate::MemoryReplayStore::new(8), VerifierConfig::default()).unwrap();
            let r = v.verify(&b, 1_790_000_000, std::net::IpAddr::from([10, 0, 0, 1]));
            proptest::prop_assert!(r.is_err());
        }
    }

    #[test]
    fn salt_formula() {
        let id = *b"\x00\x01\x02\x03\x04\x05\x06\x07";
        let mut m = Vec::new();
        m.extend_from_slice(b"betanet-ticket-v1");
        m.extend_from_slice(&id);
        m.extend_from_slice(&493_827u64.to_be_bytes());
        assert_eq!(ticket_salt(&id, 493_827), betanet_crypto::hash::sha256(&m));
    }
}
