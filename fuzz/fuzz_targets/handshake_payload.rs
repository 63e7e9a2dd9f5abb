#![no_main]
//! Structure-aware: a responder built from the plain Noise layer sends a message 2 whose
//! det-CBOR payload has fuzzer-chosen structure (maybe-valid ids, caps, kem); the Betanet
//! initiator must reject or accept it without panicking, and accept only a payload that carries
//! the dialed identity.
use arbitrary::Arbitrary;
use betanet_crypto::dh::X25519Secret;
use betanet_crypto::handshake::Initiator;
use betanet_crypto::noise::ResponderStart;
use betanet_wire::cbor::{self, Value};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

#[derive(Arbitrary, Debug)]
enum Field {
    Bytes(Vec<u8>),
    Text(String),
    Uint(u64),
    List(Vec<String>),
    RealId,
    Missing,
}

#[derive(Arbitrary, Debug)]
struct Payload {
    id: Field,
    caps_l2: Option<Vec<String>>,
    caps_l3: Option<Vec<String>>,
    kem: Field,
    extra: Option<(String, u64)>,
}

fn value(f: &Field, real: &[u8]) -> Option<Value> {
    match f {
        Field::Bytes(b) => Some(Value::Bytes(b.clone())),
        Field::Text(t) => Some(Value::Text(t.clone())),
        Field::Uint(n) => Some(Value::Uint(*n)),
        Field::List(l) => Some(Value::Array(l.iter().map(|s| Value::text(s.as_str())).collect())),
        Field::RealId => Some(Value::Bytes(real.to_vec())),
        Field::Missing => None,
    }
}

fuzz_target!(|p: Payload| {
    let pq = PqMode::Classic;
    let scfg = server_cfg(pq);
    let real = scfg.identity().verifying_key().to_bytes();
    let mut entries: Vec<(Value, Value)> = Vec::new();
    if let Some(v) = value(&p.id, &real) {
        entries.push((Value::text("id"), v));
    }
    if let Some(v) = value(&p.kem, &real) {
        entries.push((Value::text("kem"), v));
    }
    let list = |l: &Option<Vec<String>>| {
        Value::Array(l.iter().flatten().map(|s| Value::text(s.as_str())).collect())
    };
    let mut caps = vec![
        (Value::text("l2"), list(&p.caps_l2)),
        (Value::text("l3"), list(&p.caps_l3)),
        (Value::text("l4"), Value::Array(vec![])),
    ];
    if p.caps_l3.is_some() {
        caps.push((Value::text("l5"), Value::Array(vec![])));
    }
    entries.push((Value::text("caps"), Value::Map(caps)));
    if let Some((k, n)) = &p.extra {
        entries.push((Value::Text(k.clone()), Value::Uint(*n)));
    }
    let Ok(body) = cbor::encode(&Value::Map(entries)) else { return };

    let mut rng = rng();
    let server = scfg.identity().verifying_key();
    let Ok((ist, m1)) = Initiator::start(client_cfg(pq), &server, &mut rng) else { return };
    let mut prologue = b"betanet/1.2".to_vec();
    prologue.extend_from_slice(&[0u8; 32]);
    let Ok(r) = ResponderStart::new(scfg.identity().to_x25519(), &prologue) else { return };
    let mut pl = Vec::new();
    let Ok(r) = r.read_message1(&m1[2..], &mut pl) else { return };
    let mut m2 = Vec::new();
    if r.write_message2(X25519Secret::generate(&mut rng), &body, &mut m2).is_err() {
        return;
    }
    if let Ok((est, _)) = ist.read_msg2(&m2) {
        assert_eq!(est.peer_identity.to_bytes(), real);
    }
});
