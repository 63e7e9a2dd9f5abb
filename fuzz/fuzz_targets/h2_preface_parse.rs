//! Raw bytes: the first bytes an HTTP/2 server sends, as origin calibration reads them
//! (`betanet_net::calibrate::parse_preface`): never panics; any prefix of a complete preface
//! parses to nothing or to the same result.
#![no_main]
use betanet_net::calibrate::parse_preface;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let full = parse_preface(data);
    if let Some(p) = &full {
        if let Some(s) = &p.settings {
            assert!(s.windows(2).all(|w| w[0].0 <= w[1].0));
        }
        if let Some(w) = p.window {
            assert!(w <= 0x7fff_ffff);
        }
    }
    // Feeding more bytes never turns a complete SETTINGS result into a different one.
    if let Some(p) = &full
        && p.settings.is_some()
    {
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0u8; 16]);
        if let Some(q) = parse_preface(&longer) {
            assert_eq!(q.settings, p.settings);
        }
    }
});
