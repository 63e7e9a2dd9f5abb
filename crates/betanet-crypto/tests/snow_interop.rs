//! Interoperability with `snow`, an independent Noise implementation: our initiator against
//! snow's responder and snow's initiator against our responder, on the plain Noise layer and
//! on the Betanet handshake (classic suite, since snow has no ML-KEM hybrid).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use betanet_crypto::dh::X25519Secret;
use betanet_crypto::handshake::{
    HandshakeConfig, Initiator, PqMode, Responder, prefix_message, split_prefixed,
};
use betanet_crypto::noise::{InitiatorStart, ResponderStart};
use betanet_crypto::sign::SigningKey;
use betanet_wire::caps::{CapMsg, HTX_1_2};
use betanet_wire::cbor::{self, Value};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NAME: &str = "Noise_XK_25519_ChaChaPoly_SHA256";
const NOW: u64 = 1_790_000_000;

fn snow_builder() -> snow::Builder<'static> {
    snow::Builder::new(NAME.parse().unwrap())
}

#[test]
fn our_initiator_snow_responder_plain() {
    let mut rng = StdRng::seed_from_u64(1);
    let i_s = X25519Secret::generate(&mut rng);
    let r_s = X25519Secret::generate(&mut rng);
    let prologue = b"interop";
    let r_s_bytes = *r_s.as_bytes();
    let mut snow_r = snow_builder()
        .local_private_key(&r_s_bytes)
        .unwrap()
        .prologue(prologue)
        .unwrap()
        .build_responder()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let mut m1 = Vec::new();
    let st = InitiatorStart::new(i_s.clone(), r_s.public().unwrap(), prologue)
        .write_message1(X25519Secret::generate(&mut rng), b"one", &mut m1)
        .unwrap();
    let n = snow_r.read_message(&m1, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"one");
    let mut m2 = vec![0u8; 1024];
    let n = snow_r.write_message(b"two", &mut m2).unwrap();
    let mut p2 = Vec::new();
    let st = st.read_message2(&m2[..n], &mut p2).unwrap();
    assert_eq!(p2, b"two");
    let mut m3 = Vec::new();
    let done = st.write_message3(b"three", &mut m3).unwrap();
    let n = snow_r.read_message(&m3, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"three");
    assert_eq!(snow_r.get_handshake_hash(), &done.handshake_hash[..]);
    assert_eq!(
        snow_r.get_remote_static().unwrap(),
        &i_s.public().unwrap().0[..]
    );
    let mut snow_t = snow_r.into_transport_mode().unwrap();
    let (mut tx, mut rx) = done.into_transport(true);
    let mut c = Vec::new();
    tx.encrypt_with_ad(&[], b"data", &mut c).unwrap();
    let n = snow_t.read_message(&c, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"data");
    let mut c = vec![0u8; 64];
    let n = snow_t.write_message(b"back", &mut c).unwrap();
    let mut p = Vec::new();
    rx.decrypt_with_ad(&[], &c[..n], &mut p).unwrap();
    assert_eq!(p, b"back");
}

#[test]
fn snow_initiator_our_responder_plain() {
    let mut rng = StdRng::seed_from_u64(2);
    let i_s = X25519Secret::generate(&mut rng);
    let r_s = X25519Secret::generate(&mut rng);
    let prologue = b"interop-2";
    let (i_bytes, r_pub) = (*i_s.as_bytes(), r_s.public().unwrap().0);
    let mut snow_i = snow_builder()
        .local_private_key(&i_bytes)
        .unwrap()
        .remote_public_key(&r_pub)
        .unwrap()
        .prologue(prologue)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let n = snow_i.write_message(b"hello", &mut buf).unwrap();
    let mut p = Vec::new();
    let st = ResponderStart::new(r_s, prologue)
        .unwrap()
        .read_message1(&buf[..n], &mut p)
        .unwrap();
    assert_eq!(p, b"hello");
    let mut m2 = Vec::new();
    let st = st
        .write_message2(X25519Secret::generate(&mut rng), b"", &mut m2)
        .unwrap();
    let mut scratch = vec![0u8; 1024];
    snow_i.read_message(&m2, &mut scratch).unwrap();
    let n = snow_i.write_message(&[7u8; 300], &mut buf).unwrap();
    let mut p = Vec::new();
    let done = st.read_message3(&buf[..n], &mut p).unwrap();
    assert_eq!(p, vec![7u8; 300]);
    assert_eq!(done.remote_static.0, i_s.public().unwrap().0);
    assert_eq!(snow_i.get_handshake_hash(), &done.handshake_hash[..]);
}

fn payload(key: &SigningKey) -> Vec<u8> {
    cbor::encode(&Value::map([
        ("id", Value::bytes(key.verifying_key().to_bytes().to_vec())),
        ("caps", CapMsg::betanet_default(false).to_value()),
    ]))
    .unwrap()
}

fn prologue() -> Vec<u8> {
    let mut p = b"betanet/1.2".to_vec();
    p.extend_from_slice(&[0u8; 32]);
    p
}

/// Our Betanet initiator (classic) completes against a snow responder that speaks the Betanet
/// payloads: the handshake is standard Noise XK with the Betanet prologue and payloads.
#[test]
fn betanet_initiator_against_snow() {
    let mut rng = StdRng::seed_from_u64(3);
    let server = SigningKey::from_seed(&[0x51; 32]);
    let server_x = server.to_x25519();
    let server_x_bytes = *server_x.as_bytes();
    let p = prologue();
    let mut snow_r = snow_builder()
        .local_private_key(&server_x_bytes)
        .unwrap()
        .prologue(&p)
        .unwrap()
        .build_responder()
        .unwrap();
    let client = SigningKey::from_seed(&[0x52; 32]);
    let mut cfg = HandshakeConfig::new(client.clone(), NOW);
    cfg.pq = PqMode::Classic;
    let (st, m1) = Initiator::start(cfg, &server.verifying_key(), &mut rng).unwrap();
    let (m1, _) = split_prefixed(&m1).unwrap();
    let mut buf = vec![0u8; 65535];
    let n = snow_r.read_message(m1, &mut buf).unwrap();
    assert_eq!(n, 0, "classic msg 1 payload is empty");
    let mut m2 = vec![0u8; 4096];
    let n = snow_r.write_message(&payload(&server), &mut m2).unwrap();
    let framed = prefix_message(&m2[..n]).unwrap();
    let (est, m3) = st.read_msg2(&framed[2..]).unwrap();
    let (m3, _) = split_prefixed(&m3).unwrap();
    let n = snow_r.read_message(m3, &mut buf).unwrap();
    let v = cbor::decode(&buf[..n]).unwrap();
    assert_eq!(
        v.get("id").and_then(Value::as_bytes),
        Some(&client.verifying_key().to_bytes()[..])
    );
    assert_eq!(snow_r.get_handshake_hash(), &est.handshake_hash[..]);
    assert_eq!(
        snow_r.get_remote_static().unwrap(),
        &client.verifying_key().to_x25519().0[..]
    );
    assert_eq!(est.selection.l2, HTX_1_2);
}

/// A snow initiator speaking the Betanet payloads completes against our Betanet responder.
#[test]
fn snow_against_betanet_responder() {
    let mut rng = StdRng::seed_from_u64(4);
    let server = SigningKey::from_seed(&[0x61; 32]);
    let client = SigningKey::from_seed(&[0x62; 32]);
    let client_x = *client.to_x25519().as_bytes();
    let server_pub = server.verifying_key().to_x25519().0;
    let p = prologue();
    let mut snow_i = snow_builder()
        .local_private_key(&client_x)
        .unwrap()
        .remote_public_key(&server_pub)
        .unwrap()
        .prologue(&p)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut cfg = HandshakeConfig::new(server.clone(), NOW);
    cfg.pq = PqMode::Hybrid; // a hybrid responder accepts a classic initiator before 2027
    let mut buf = vec![0u8; 65535];
    let n = snow_i.write_message(&[], &mut buf).unwrap();
    let (st, m2) = Responder::new(cfg)
        .unwrap()
        .read_msg1(&buf[..n], &mut rng)
        .unwrap();
    let mut p2 = vec![0u8; 4096];
    let n = snow_i.read_message(&m2[2..], &mut p2).unwrap();
    let v = cbor::decode(&p2[..n]).unwrap();
    assert_eq!(
        v.get("id").and_then(Value::as_bytes),
        Some(&server.verifying_key().to_bytes()[..])
    );
    assert!(v.get("kem").is_none());
    let n = snow_i.write_message(&payload(&client), &mut buf).unwrap();
    let est = st.read_msg3(&buf[..n]).unwrap();
    assert_eq!(est.peer_identity, client.verifying_key());
    assert_eq!(snow_i.get_handshake_hash(), &est.handshake_hash[..]);
    assert!(!est.post_quantum);
}
