// Shared fixtures for the handshake fuzz targets (included with `include!`).
use betanet_crypto::handshake::{HandshakeConfig, PqMode};
use betanet_crypto::sign::SigningKey;
use rand::SeedableRng;
use rand::rngs::StdRng;

const NOW: u64 = 1_790_000_000;

fn rng() -> StdRng {
    StdRng::seed_from_u64(0x5eed)
}

fn server_cfg(pq: PqMode) -> HandshakeConfig {
    let mut c = HandshakeConfig::new(SigningKey::from_seed(&[1; 32]), NOW);
    c.pq = pq;
    c
}

#[allow(dead_code)]
fn client_cfg(pq: PqMode) -> HandshakeConfig {
    let mut c = HandshakeConfig::new(SigningKey::from_seed(&[2; 32]), NOW);
    c.pq = pq;
    c
}
