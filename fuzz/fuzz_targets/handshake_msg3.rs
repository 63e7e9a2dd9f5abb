#![no_main]
//! A responder that completed messages 1 and 2 for real processes an arbitrary message 3, and
//! a real message 3 with bytes flipped at fuzzer-chosen positions.
use betanet_crypto::handshake::{Initiator, Responder};
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    let pq = PqMode::Classic;
    let mut rng = rng();
    let server = server_cfg(pq).identity().verifying_key();
    let Ok((ist, m1)) = Initiator::start(client_cfg(pq), &server, &mut rng) else { return };
    let Ok(r) = Responder::new(server_cfg(pq)) else { return };
    let Ok((rst, m2)) = r.read_msg1(&m1[2..], &mut rng) else { return };
    let Ok((_, m3)) = ist.read_msg2(&m2[2..]) else { return };
    let mut flipped = m3[2..].to_vec();
    for (i, b) in data.iter().enumerate().take(8) {
        let n = flipped.len();
        if n > 0 {
            flipped[(usize::from(*b) * 31 + i) % n] ^= b | 1;
        }
    }
    if data.first().is_some_and(|b| b & 1 == 0) {
        let _ = rst.read_msg3(data);
    } else {
        let _ = rst.read_msg3(&flipped);
    }
});
