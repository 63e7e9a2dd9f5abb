#![no_main]
//! Raw bytes into every other decoder that takes peer bytes: must never panic.

use betanet_mix::app::ExitApp;
use betanet_mix::descriptor::{UncheckedMixDescriptor, UncheckedServiceDescriptor};
use betanet_mix::packet::{NodeAddr, Surb};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Surb::decode(data);
    if let Ok(a) = <[u8; 32]>::try_from(data.get(..32).unwrap_or_default()) {
        let _ = NodeAddr::decode(&a);
    }
    if let Ok(d) = UncheckedMixDescriptor::decode(data) {
        let _ = d.verify();
    }
    if let Ok(d) = UncheckedServiceDescriptor::decode(data) {
        let _ = d.verify(&[0u8; 32], 0);
    }
    let mut app = ExitApp::new([1u8; 32], None);
    let _ = app.handle(data, 0);
});
