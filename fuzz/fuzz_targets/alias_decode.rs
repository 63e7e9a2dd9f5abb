#![no_main]
//! Raw bytes into the alias and rotation record decoders.
use betanet_trust::alias::{AliasRecord, RotationRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = AliasRecord::decode(data) {
        // whatever decodes re-encodes to the same canonical bytes
        assert_eq!(r.encode().ok().as_deref(), Some(data));
    }
    if let Ok(r) = RotationRecord::decode(data) {
        assert_eq!(r.encode().ok().as_deref(), Some(data));
    }
});
