//! Voucher parse (128-byte and legacy 64-byte): never panics, parsed vouchers re-encode to the
//! input bytes.
#![no_main]

use betanet_ticket::voucher::AnyVoucher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match AnyVoucher::parse(data) {
        Ok(AnyVoucher::Current(v)) => assert_eq!(v.to_bytes().as_slice(), data),
        Ok(AnyVoucher::Legacy(l)) => assert_eq!(l.to_bytes().as_slice(), data),
        Err(_) => assert!(data.len() != 128 && data.len() != 64),
    }
});
