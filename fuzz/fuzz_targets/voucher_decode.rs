#![no_main]
//! Raw bytes into the voucher, announcement, certificate and 1.1 payload parsers.
use betanet_trust::ledger11::{LedgerPayload, QuorumCertificate};
use betanet_trust::mint::MintAnnouncement;
use betanet_trust::voucher::AnyVoucher;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = AnyVoucher::parse(data);
    if let Ok(a) = MintAnnouncement::decode(data) {
        assert_eq!(a.encode().ok().as_deref(), Some(data));
        let _ = a.verify(0, u64::MAX);
    }
    if let Ok(q) = QuorumCertificate::decode(data) {
        assert_eq!(q.encode().ok().as_deref(), Some(data));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(p) = LedgerPayload::parse(s) {
            assert_eq!(p.to_string(), s);
        }
    }
});
