use super::*;
use crate::suite::PQ_MANDATORY_FROM_UNIX;
use betanet_wire::caps::{HTX_1_1, HTX_1_2};
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_790_000_000; // 2026-09
const AFTER: u64 = PQ_MANDATORY_FROM_UNIX + 1;

fn cfg(seed: u8, pq: PqMode, now: u64) -> HandshakeConfig {
    let mut c = HandshakeConfig::new(SigningKey::from_seed(&[seed; 32]), now);
    c.pq = pq;
    c
}

fn run(i: HandshakeConfig, r: HandshakeConfig) -> Result<(Established, Established), CryptoError> {
    let mut rng = StdRng::seed_from_u64(7);
    let server_key = r.identity().verifying_key();
    let (ist, m1) = Initiator::start(i, &server_key, &mut rng)?;
    let (m1, _) = split_prefixed(&m1).unwrap();
    let (rst, m2) = Responder::new(r)?.read_msg1(m1, &mut rng)?;
    let (m2, _) = split_prefixed(&m2).unwrap();
    let (ie, m3) = ist.read_msg2(m2)?;
    let (m3, _) = split_prefixed(&m3).unwrap();
    let re = rst.read_msg3(m3)?;
    Ok((ie, re))
}

fn frames_interoperate(a: &Established, b: &Established) {
    let (mut atx, mut arx) = a.schedule.frame_keys(a.role);
    let (mut btx, mut brx) = b.schedule.frame_keys(b.role);
    let mut m = b"ping".to_vec();
    let tag = atx.seal(b"h", &mut m).unwrap();
    m.extend_from_slice(&tag);
    let n = brx.open(b"h", &mut m).unwrap().len;
    assert_eq!(&m[..n], b"ping");
    let mut m = b"pong".to_vec();
    let tag = btx.seal(b"h", &mut m).unwrap();
    m.extend_from_slice(&tag);
    let n = arx.open(b"h", &mut m).unwrap().len;
    assert_eq!(&m[..n], b"pong");
    assert_eq!(
        a.schedule.bn_ticket_token("r1"),
        b.schedule.bn_ticket_token("r1")
    );
}

#[test]
fn hybrid_handshake() {
    let (i, r) = run(cfg(1, PqMode::Hybrid, NOW), cfg(2, PqMode::Hybrid, NOW)).unwrap();
    assert!(i.post_quantum && r.post_quantum);
    assert_eq!(i.handshake_hash, r.handshake_hash);
    assert_eq!(i.selection.l2, HTX_1_2);
    assert_eq!(i.selection, r.selection);
    assert_eq!(
        i.peer_identity,
        SigningKey::from_seed(&[2; 32]).verifying_key()
    );
    assert_eq!(
        r.peer_identity,
        SigningKey::from_seed(&[1; 32]).verifying_key()
    );
    assert!(!r.negotiation_failed());
    frames_interoperate(&i, &r);
}

#[test]
fn classic_handshake() {
    let (i, r) = run(cfg(1, PqMode::Classic, NOW), cfg(2, PqMode::Classic, NOW)).unwrap();
    assert!(!i.post_quantum && !r.post_quantum);
    frames_interoperate(&i, &r);
}

#[test]
fn message_sizes() {
    let mut rng = StdRng::seed_from_u64(1);
    let r = cfg(2, PqMode::Hybrid, NOW);
    let (_, m1) = Initiator::start(
        cfg(1, PqMode::Hybrid, NOW),
        &r.identity().verifying_key(),
        &mut rng,
    )
    .unwrap();
    // u16 prefix + e (32) + ML-KEM key (1184) + tag (16).
    assert_eq!(m1.len(), 2 + 32 + 1184 + 16);
    assert_eq!(u16::from_be_bytes([m1[0], m1[1]]) as usize, m1.len() - 2);
    let (_, m1c) = Initiator::start(
        cfg(1, PqMode::Classic, NOW),
        &r.identity().verifying_key(),
        &mut rng,
    )
    .unwrap();
    assert_eq!(m1c.len(), 2 + 32 + 16);
}

#[test]
fn no_silent_pq_downgrade() {
    let err = run(cfg(1, PqMode::Hybrid, NOW), cfg(2, PqMode::Classic, NOW)).unwrap_err();
    assert!(matches!(err, CryptoError::PqPolicy(_)), "{err:?}");
}

#[test]
fn classic_initiator_against_hybrid_responder() {
    let (i, _) = run(cfg(1, PqMode::Classic, NOW), cfg(2, PqMode::Hybrid, NOW)).unwrap();
    assert!(!i.post_quantum);
    let err = run(
        cfg(1, PqMode::Classic, AFTER),
        cfg(2, PqMode::Hybrid, AFTER),
    )
    .unwrap_err();
    assert!(matches!(err, CryptoError::PqPolicy(_)));
    let mut r = cfg(2, PqMode::Hybrid, AFTER);
    r.allow_classic_peers = true;
    assert!(run(cfg(1, PqMode::Classic, AFTER), r).is_ok());
}

#[test]
fn wrong_server_key_fails_at_responder() {
    let mut rng = StdRng::seed_from_u64(3);
    let wrong = SigningKey::from_seed(&[9; 32]).verifying_key();
    let (_, m1) = Initiator::start(cfg(1, PqMode::Hybrid, NOW), &wrong, &mut rng).unwrap();
    let (m1, _) = split_prefixed(&m1).unwrap();
    let err = Responder::new(cfg(2, PqMode::Hybrid, NOW))
        .unwrap()
        .read_msg1(m1, &mut rng)
        .err()
        .unwrap();
    assert!(matches!(err, CryptoError::Decrypt));
    assert_eq!(err.close_code(), betanet_wire::ErrorCode::MalformedFrame);
}

#[test]
fn prologue_binds_tls_exporter() {
    let mut i = cfg(1, PqMode::Classic, NOW);
    i.tls_exporter = [1; 32];
    let r = cfg(2, PqMode::Classic, NOW);
    assert!(matches!(run(i, r), Err(CryptoError::Decrypt)));
}

#[test]
fn template_mismatch_gives_different_keys() {
    let mut i = cfg(1, PqMode::Classic, NOW);
    i.template = [5; 32];
    let (i, r) = run(i, cfg(2, PqMode::Classic, NOW)).unwrap();
    assert_ne!(
        i.schedule.bn_ticket_token("r1"),
        r.schedule.bn_ticket_token("r1")
    );
}

#[test]
fn initiator_aborts_without_common_l2() {
    let mut i = cfg(1, PqMode::Classic, NOW);
    i.caps.l2 = vec![HTX_1_1.into()];
    assert!(matches!(
        run(i, cfg(2, PqMode::Classic, NOW)),
        Err(CryptoError::VersionNegotiation)
    ));
}

/// Drives the initiator side by hand with the Noise layer so that it can lie.
fn raw_initiator(
    noise_identity: &SigningKey,
    claimed: &SigningKey,
    l2: &[&str],
) -> Result<Established, CryptoError> {
    let mut rng = StdRng::seed_from_u64(5);
    let rcfg = cfg(2, PqMode::Classic, NOW);
    let prologue = rcfg.prologue();
    let st = noise::InitiatorStart::new(
        noise_identity.to_x25519(),
        rcfg.identity().verifying_key().to_x25519(),
        &prologue,
    );
    let mut m1 = Vec::new();
    let st = st
        .write_message1(X25519Secret::generate(&mut rng), &[], &mut m1)
        .unwrap();
    let (rst, m2) = Responder::new(rcfg)?.read_msg1(&m1, &mut rng)?;
    let (m2, _) = split_prefixed(&m2).unwrap();
    let mut p2 = Vec::new();
    let st = st.read_message2(m2, &mut p2).unwrap();
    let mut caps = CapMsg::betanet_default(false);
    caps.l2 = l2.iter().map(|s| s.to_string()).collect();
    let body = cbor::encode(&Value::map([
        (
            "id",
            Value::bytes(claimed.verifying_key().to_bytes().to_vec()),
        ),
        ("caps", caps.to_value()),
        ("future", Value::Uint(1)),
    ]))
    .unwrap();
    let mut m3 = Vec::new();
    st.write_message3(&body, &mut m3).unwrap();
    rst.read_msg3(&m3)
}

#[test]
fn responder_checks_identity_mapping() {
    let a = SigningKey::from_seed(&[1; 32]);
    let b = SigningKey::from_seed(&[3; 32]);
    assert!(raw_initiator(&a, &a, &[HTX_1_2]).is_ok());
    let err = raw_initiator(&a, &b, &[HTX_1_2]).unwrap_err();
    assert!(matches!(err, CryptoError::AuthFailed(_)));
    assert_eq!(err.close_code(), betanet_wire::ErrorCode::AuthFailed);
}

#[test]
fn responder_flags_no_common_l2() {
    let a = SigningKey::from_seed(&[1; 32]);
    let est = raw_initiator(&a, &a, &["betanet/htx/9.0.0"]).unwrap();
    assert!(est.negotiation_failed());
}

#[test]
fn bad_msg1_payload_length_rejected() {
    let mut rng = StdRng::seed_from_u64(6);
    let rcfg = cfg(2, PqMode::Hybrid, NOW);
    let st = noise::InitiatorStart::new(
        SigningKey::from_seed(&[1; 32]).to_x25519(),
        rcfg.identity().verifying_key().to_x25519(),
        &rcfg.prologue(),
    );
    let mut m1 = Vec::new();
    st.write_message1(X25519Secret::generate(&mut rng), &[0u8; 100], &mut m1)
        .unwrap();
    let err = Responder::new(rcfg)
        .unwrap()
        .read_msg1(&m1, &mut rng)
        .err()
        .unwrap();
    assert!(matches!(err, CryptoError::HandshakeMalformed(_)));
}

#[test]
fn tampered_messages_rejected() {
    let mut rng = StdRng::seed_from_u64(8);
    let r = cfg(2, PqMode::Hybrid, NOW);
    let (ist, m1) = Initiator::start(
        cfg(1, PqMode::Hybrid, NOW),
        &r.identity().verifying_key(),
        &mut rng,
    )
    .unwrap();
    let (rst, m2) = Responder::new(r)
        .unwrap()
        .read_msg1(&m1[2..], &mut rng)
        .unwrap();
    let mut m2 = m2[2..].to_vec();
    let last = m2.len() - 1;
    m2[last] ^= 0x80;
    assert!(ist.read_msg2(&m2).is_err());
    assert!(rst.read_msg3(&[0u8; 10]).is_err());
}

#[test]
fn split_prefixed_waits_for_bytes() {
    assert_eq!(split_prefixed(&[]), None);
    assert_eq!(split_prefixed(&[0]), None);
    assert_eq!(split_prefixed(&[0, 2, 1]), None);
    assert_eq!(split_prefixed(&[0, 2, 1, 2, 3]), Some((&[1u8, 2][..], 4)));
    assert!(prefix_message(&vec![0u8; 70000]).is_err());
}
