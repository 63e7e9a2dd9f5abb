//! Raw bytes into the hidden-service directory decoders (requests, replies) and the directory
//! store: never panics; a decoded reply re-encodes to the same bytes; anything the store keeps
//! is returned unchanged by a lookup.
#![no_main]
use betanet_mix::hsdir::{HsDirReply, HsDirRequest, HsDirStore};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (u64, Vec<u8>)| {
    let (now, b) = input;
    let _ = HsDirRequest::decode(&b);
    if let Ok(r) = HsDirReply::decode(&b) {
        assert_eq!(r.encode(), b);
    }
    let mut store = HsDirStore::new();
    let (status, id) = store.insert(&b, now);
    if status == betanet_mix::hsdir::PublishStatus::Stored {
        assert_eq!(store.get(&id, now), Some(&b[..]));
    }
});
