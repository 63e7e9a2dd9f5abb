#![no_main]
//! Arbitrary JSON into the governance tally (must never panic).
use betanet_trust::tally::{TallyInput, tally_report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(input) = TallyInput::from_json(s) {
            let r = tally_report(&input, 1_800_000_000_000);
            let _ = r.to_string();
        }
    }
});
