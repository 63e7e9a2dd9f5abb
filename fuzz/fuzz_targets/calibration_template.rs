//! Structure-aware: an origin-calibration template survives det-CBOR encoding (the cache
//! format) unchanged, its TemplateID is stable, it matches itself, and arbitrary CBOR never
//! makes `Template::from_cbor` panic.
#![no_main]
use arbitrary::Arbitrary;
use betanet_net::calibrate::Template;
use betanet_wire::cbor;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    alpn_offered: Vec<String>,
    alpn: Option<String>,
    version: Option<String>,
    cipher: Option<String>,
    group: Option<String>,
    settings: Vec<(u16, u32)>,
    window: Option<u32>,
    raw: Vec<u8>,
}

fuzz_target!(|inp: Input| {
    let mut settings = inp.settings;
    settings.sort_by_key(|(id, _)| *id);
    let t = Template {
        alpn_offered: inp.alpn_offered,
        alpn: inp.alpn,
        version: inp.version,
        cipher_suite: inp.cipher,
        group: inp.group,
        h2_settings: settings,
        h2_connection_window: inp.window,
    };
    let bytes = cbor::encode(&t.to_cbor()).unwrap();
    let back = Template::from_cbor(&cbor::decode(&bytes).unwrap()).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.id(), t.id());
    assert!(t.check(&back).is_empty());
    if let Ok(v) = cbor::decode(&inp.raw) {
        let _ = Template::from_cbor(&v);
    }
});
