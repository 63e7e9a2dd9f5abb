#![no_main]
//! Structure-aware: arbitrary record -> encode -> decode -> compare.
use arbitrary::Arbitrary;
use betanet_trust::alias::{AliasContent, AliasRecord};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    alias: String,
    node: [u8; 20],
    seq: u64,
    ts_ms: u64,
    sig: [u8; 32],
    sig2: [u8; 32],
}

fuzz_target!(|i: Input| {
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&i.sig);
    sig[32..].copy_from_slice(&i.sig2);
    let r = AliasRecord {
        content: AliasContent {
            alias: i.alias,
            node: i.node,
            seq: i.seq,
            ts_ms: i.ts_ms,
        },
        sig,
    };
    let Ok(bytes) = r.encode() else { return };
    match AliasRecord::decode(&bytes) {
        Ok(back) => assert_eq!(back, r),
        // only invalid aliases (empty, too long, control characters) may fail
        Err(_) => assert!(
            r.content.alias.is_empty()
                || r.content.alias.len() > 253
                || r.content.alias.chars().any(char::is_control)
        ),
    }
});
