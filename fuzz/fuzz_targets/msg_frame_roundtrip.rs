#![no_main]
use arbitrary::Arbitrary;
use betanet_msg::{Message, MessageType};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    mtype: u8,
    uri: Vec<u8>,
    content: Vec<u8>,
    fields: Vec<(String, Vec<u8>)>,
    big: bool,
}

fuzz_target!(|i: Input| {
    let mut m = Message::new(MessageType(i.mtype), i.uri, i.content);
    for (k, v) in i.fields.into_iter().take(8) {
        m.auth.set_bytes(&k, v);
    }
    match m.encode() {
        Ok(e) => assert_eq!(Message::decode(&e).expect("decode"), m),
        Err(_) => {}
    }
    if i.big {
        let frames = betanet_msg::chunk::split(&m, 7).expect("split");
        let mut r = betanet_msg::chunk::Reassembler::new(usize::MAX);
        let mut out = None;
        for f in &frames {
            out = r.push(Message::decode(f).expect("piece")).expect("push");
        }
        assert_eq!(out.expect("complete"), m);
    }
});
