//! Structure-aware: a message split into chunks, delivered in an arbitrary order with
//! duplicates, reassembles to the same bytes.
#![no_main]
use arbitrary::Arbitrary;
use betanet_mix::hs_stream::{Chunk, Reassembler, split_message};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    msg_id: u32,
    message: Vec<u8>,
    order: Vec<u16>,
}

fuzz_target!(|inp: Input| {
    let chunks = split_message(inp.msg_id, &inp.message).expect("within the size limit");
    let mut idx: Vec<usize> = inp
        .order
        .iter()
        .map(|&i| usize::from(i) % chunks.len())
        .collect();
    idx.extend(0..chunks.len());
    let mut r = Reassembler::new();
    let mut got = None;
    for i in idx {
        let c = Chunk::decode(&chunks[i]).expect("valid chunk");
        assert_eq!(c.encode(), chunks[i]);
        if let Ok(Some(m)) = r.push(c) {
            assert!(got.is_none(), "completed twice");
            got = Some(m);
        }
    }
    assert_eq!(got, Some((inp.msg_id, inp.message)));
});
