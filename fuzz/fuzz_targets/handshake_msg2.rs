#![no_main]
//! An initiator that sent a real message 1 processes an arbitrary message 2.
use betanet_crypto::handshake::Initiator;
use libfuzzer_sys::fuzz_target;

include!("common.rs");

fuzz_target!(|data: &[u8]| {
    for pq in [PqMode::Hybrid, PqMode::Classic] {
        let server = server_cfg(pq).identity().verifying_key();
        let Ok((st, _m1)) = Initiator::start(client_cfg(pq), &server, &mut rng()) else { return };
        let _ = st.read_msg2(data);
    }
});
