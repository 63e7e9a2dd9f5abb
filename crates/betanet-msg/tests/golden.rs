//! Golden bytes produced by real netaio 0.0.9 (`scripts/golden.py`, run in the netaio venv).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use betanet_msg::compat::{HmacAuth, Sha256StreamCipher, X25519Cipher};
use betanet_msg::{
    AuthFields, AuthPlugin, CipherPlugin, Message, MessageType, Peer, PluginCx, Plugins,
};
use rand_core::{CryptoRng, RngCore};

const PLAIN_REQUEST: &str = "000003000b9b359cb34d400000046563686f68656c6c6f";
const HMAC_REQUEST: &str = "000060000b9b359cb34d40030f2d1e4c400204064302747341046553f1004c400206224304686d616341201a05e5ffe9ab553053e1f152af40e91529f0b263b431f725366206a018c63f5a4c4002071243056e6f6e63654110000102030405060708090a0b0c0d0e0f00046563686f68656c6c6f";
const CIPHER_INNER: &str = "00001f0039f66f52f74d40011b4c40020412430269764110aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa00046563686ffe59e863396918c434656ce70be15cf82b7181b73ecf84db41d6d12ab2913dc01e5db26281d5a0b3a29f3ab6bd9c32e012a092";
const CIPHER_OUTER: &str = "00001f000d9852cc954d40011b4c40020412430269764110aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa00038d38ee72347250c2376777";
const CIPHER_HMAC: &str = "00007c000d9852cc954d40040f1b2d1e4c400204064302747341046553f1014c40020412430269764110aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa4c400206224304686d61634120205370b40d9de2d326d5a957e822065efe6e9dccf7236d1c82a3a3ae65b65f544c4002071243056e6f6e636541100000000000000000000000000000000000038d38ee72347250c2376777";
const X25519_PUB_A: &str = "1b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57";
const X25519_PUB_B: &str = "60346e7c911a5f6ba154129174cafe75b294ac3bbd5549632f48cec6266f8410";
const X25519_BOX_A_TO_B: &str = "0707070707070707070707070707070707070707070707070996ac24a016fbec43e80a52ec8e9ed6a8eb1c8a94dd1303de";
const PEER_PACKED: &str = "4c4002123541100101010101010101010101010101010141334d40012f4c4002082243067075626b657941201b1b58dd50ea14b60da17b790cd02754d970c9bab864ebb3c0f3016fe51d3f57";
const AUTH_ERROR: &str = "1700030017c7eb481f4d400000054552524f52484d41432061757468206661696c6564";
const NOT_FOUND: &str = "180003000b7fca84a84d400000006e6f7420666f756e64";
const INVALID: &str = "14000300162ab916634d400000054552524f52696e76616c6964206d657373616765";

/// RNG that returns a fixed byte over and over (for byte-exact comparisons).
struct FixedRng(u8);
impl RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        u32::from_ne_bytes([self.0; 4])
    }
    fn next_u64(&mut self) -> u64 {
        u64::from_ne_bytes([self.0; 8])
    }
    fn fill_bytes(&mut self, d: &mut [u8]) {
        d.fill(self.0)
    }
    fn try_fill_bytes(&mut self, d: &mut [u8]) -> Result<(), rand_core::Error> {
        d.fill(self.0);
        Ok(())
    }
}
impl CryptoRng for FixedRng {}

fn h(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

fn cx<'a>(rng: &'a mut FixedRng, peer: Option<&'a Peer>) -> PluginCx<'a> {
    PluginCx {
        now_ms: 1_700_000_000_000,
        rng,
        peer,
    }
}

fn echo() -> Message {
    Message::new(MessageType::REQUEST_URI, &b"echo"[..], &b"hello"[..])
}

#[test]
fn plain_frame_and_errors() {
    assert_eq!(echo().encode().unwrap(), h(PLAIN_REQUEST));
    assert_eq!(Message::decode(&h(PLAIN_REQUEST)).unwrap(), echo());
    assert_eq!(
        HmacAuth::new("test").error().encode().unwrap(),
        h(AUTH_ERROR)
    );
    assert_eq!(
        Message::new(MessageType::NOT_FOUND, &b""[..], &b"not found"[..])
            .encode()
            .unwrap(),
        h(NOT_FOUND)
    );
    assert_eq!(
        Message::new(MessageType::ERROR, &b"ERROR"[..], &b"invalid message"[..])
            .encode()
            .unwrap(),
        h(INVALID)
    );
}

#[test]
fn hmac_make_and_check() {
    let a = HmacAuth::new("test");
    let mut m = echo();
    m.auth.set_bytes("nonce", (0u8..16).collect::<Vec<_>>());
    m.auth
        .set_bytes("ts", 1_700_000_000u32.to_be_bytes().to_vec());
    let mut r = FixedRng(0);
    a.make(m.mtype, &mut m.auth, &m.body, &mut cx(&mut r, None))
        .unwrap();
    assert_eq!(m.encode().unwrap(), h(HMAC_REQUEST));
    let d = Message::decode(&h(HMAC_REQUEST)).unwrap();
    a.check(d.mtype, &d.auth, &d.body, &mut cx(&mut r, None))
        .unwrap();
    // wrong secret, tampered body, missing field
    assert!(
        HmacAuth::new("tset")
            .check(d.mtype, &d.auth, &d.body, &mut cx(&mut r, None))
            .is_err()
    );
    let mut t = d.clone();
    t.body.content = bytes::Bytes::from_static(b"hellO");
    assert!(
        a.check(t.mtype, &t.auth, &t.body, &mut cx(&mut r, None))
            .is_err()
    );
    let mut t = d.clone();
    t.auth.remove("ts");
    assert!(
        a.check(t.mtype, &t.auth, &t.body, &mut cx(&mut r, None))
            .is_err()
    );
    // compat weakness reproduced: the MAC does not cover the type
    let mut t = d;
    t.mtype = MessageType::DELETE_URI;
    assert!(
        a.check(t.mtype, &t.auth, &t.body, &mut cx(&mut r, None))
            .is_ok()
    );
}

#[test]
fn stream_cipher_inner_exact() {
    let c = Sha256StreamCipher::with_options("test", "iv", false);
    let m = Message::new(
        MessageType::REQUEST_URI,
        &b"echo"[..],
        &b"secret content that is longer than thirty-two bytes"[..],
    );
    let mut r = FixedRng(0xaa);
    let e = c.encrypt(m.clone(), &mut cx(&mut r, None)).unwrap();
    assert_eq!(e.encode().unwrap(), h(CIPHER_INNER));
    let mut d = c
        .decrypt(
            Message::decode(&h(CIPHER_INNER)).unwrap(),
            &mut cx(&mut r, None),
        )
        .unwrap();
    d.auth = AuthFields::new();
    assert_eq!(d, m);
}

#[test]
fn stream_cipher_outer_and_hmac_decrypt() {
    let c = Sha256StreamCipher::new("test");
    let mut r = FixedRng(0);
    let d = c
        .decrypt(
            Message::decode(&h(CIPHER_OUTER)).unwrap(),
            &mut cx(&mut r, None),
        )
        .unwrap();
    assert_eq!(d.body, echo().body);
    // node receive order: auth check, then decrypt
    let node = Plugins::none()
        .with_auth(HmacAuth::new("test"))
        .with_cipher(Sha256StreamCipher::new("test"));
    let w = Message::decode(&h(CIPHER_HMAC)).unwrap();
    node.check(&w, &mut cx(&mut r, None)).unwrap();
    let d = node.open(w, &mut cx(&mut r, None)).unwrap();
    assert_eq!(d.body, echo().body);
}

#[test]
fn x25519_box_exact() {
    let a = X25519Cipher::from_seed(&[1; 32]);
    let b = X25519Cipher::from_seed(&[2; 32]);
    assert_eq!(a.public_key().to_vec(), h(X25519_PUB_A));
    assert_eq!(b.public_key().to_vec(), h(X25519_PUB_B));
    let peer_b = Peer::new(
        vec![2u8; 16],
        Peer::encode_data(&[("pubkey", &b.public_key())]),
    );
    let peer_a = Peer::new(
        vec![1u8; 16],
        Peer::encode_data(&[("pubkey", &a.public_key())]),
    );
    let mut r = FixedRng(7);
    let m = Message::new(MessageType::REQUEST_URI, &b"x"[..], &b"hello bob"[..]);
    let e = a
        .encrypt(m.clone(), &mut cx(&mut r, Some(&peer_b)))
        .unwrap();
    assert_eq!(e.body.content.to_vec(), h(X25519_BOX_A_TO_B));
    let d = b.decrypt(e, &mut cx(&mut r, Some(&peer_a))).unwrap();
    assert_eq!(d, m);
}

#[test]
fn peer_pack_exact() {
    let a = X25519Cipher::from_seed(&[1; 32]);
    let p = Peer::new(
        vec![1u8; 16],
        Peer::encode_data(&[("pubkey", &a.public_key())]),
    );
    assert_eq!(p.pack(), h(PEER_PACKED));
    let u = Peer::unpack(&h(PEER_PACKED)).unwrap();
    assert_eq!(u.id, p.id);
    assert_eq!(u.data_field("pubkey").unwrap(), a.public_key().to_vec());
}
