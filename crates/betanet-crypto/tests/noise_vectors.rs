//! The published Noise test vectors for `Noise_XK_25519_ChaChaPoly_SHA256` (cacophony format,
//! `testdata/noise_xk_vectors.json`, taken from the vector files shipped with `snow`).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use betanet_crypto::dh::X25519Secret;
use betanet_crypto::noise::{InitiatorStart, ResponderStart};

fn hx(v: &serde_json::Value, k: &str) -> Vec<u8> {
    hex::decode(v[k].as_str().unwrap_or_else(|| panic!("missing {k}"))).unwrap()
}

fn key(v: &serde_json::Value, k: &str) -> X25519Secret {
    X25519Secret::from_bytes(hx(v, k).try_into().unwrap())
}

#[test]
fn cacophony_xk() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("../testdata/noise_xk_vectors.json")).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(!vectors.is_empty());
    for v in vectors {
        assert_eq!(v["protocol_name"], "Noise_XK_25519_ChaChaPoly_SHA256");
        let msgs = v["messages"].as_array().unwrap();
        let rs = key(v, "resp_static").public().unwrap();
        assert_eq!(hx(v, "init_remote_static"), rs.0.to_vec());
        let ini = InitiatorStart::new(key(v, "init_static"), rs, &hx(v, "init_prologue"));
        let resp = ResponderStart::new(key(v, "resp_static"), &hx(v, "resp_prologue")).unwrap();

        // Message 1: initiator -> responder.
        let (p, c) = (hx(&msgs[0], "payload"), hx(&msgs[0], "ciphertext"));
        let mut out = Vec::new();
        let ini = ini
            .write_message1(key(v, "init_ephemeral"), &p, &mut out)
            .unwrap();
        assert_eq!(out, c, "message 1");
        let mut pt = Vec::new();
        let resp = resp.read_message1(&c, &mut pt).unwrap();
        assert_eq!(pt, p);

        // Message 2: responder -> initiator.
        let (p, c) = (hx(&msgs[1], "payload"), hx(&msgs[1], "ciphertext"));
        let mut out = Vec::new();
        let resp = resp
            .write_message2(key(v, "resp_ephemeral"), &p, &mut out)
            .unwrap();
        assert_eq!(out, c, "message 2");
        let mut pt = Vec::new();
        let ini = ini.read_message2(&c, &mut pt).unwrap();
        assert_eq!(pt, p);

        // Message 3: initiator -> responder.
        let (p, c) = (hx(&msgs[2], "payload"), hx(&msgs[2], "ciphertext"));
        let mut out = Vec::new();
        let idone = ini.write_message3(&p, &mut out).unwrap();
        assert_eq!(out, c, "message 3");
        let mut pt = Vec::new();
        let rdone = resp.read_message3(&c, &mut pt).unwrap();
        assert_eq!(pt, p);
        assert_eq!(rdone.remote_static, key(v, "init_static").public().unwrap());
        if v.get("handshake_hash").is_some() {
            assert_eq!(idone.handshake_hash.to_vec(), hx(v, "handshake_hash"));
            assert_eq!(rdone.handshake_hash.to_vec(), hx(v, "handshake_hash"));
        }

        // Transport messages alternate, starting with the responder (message index 3).
        let (mut i_tx, mut i_rx) = idone.into_transport(true);
        let (mut r_tx, mut r_rx) = rdone.into_transport(false);
        for (n, m) in msgs.iter().enumerate().skip(3) {
            let (p, c) = (hx(m, "payload"), hx(m, "ciphertext"));
            let (tx, rx) = if n % 2 == 0 {
                (&mut i_tx, &mut r_rx)
            } else {
                (&mut r_tx, &mut i_rx)
            };
            let mut out = Vec::new();
            tx.encrypt_with_ad(&[], &p, &mut out).unwrap();
            assert_eq!(out, c, "transport message {n}");
            let mut pt = Vec::new();
            rx.decrypt_with_ad(&[], &c, &mut pt).unwrap();
            assert_eq!(pt, p);
        }
    }
}
