#![no_main]
//! Structure-aware: arbitrary value tree -> det-CBOR -> decode -> same value and same bytes.

use arbitrary::Arbitrary;
use betanet_wire::cbor::{self, Value};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Node {
    Uint(u64),
    Nint(u64),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Node>),
    Map(Vec<(String, Node)>),
    Bool(bool),
    Null,
}

fn to_value(n: Node, depth: usize) -> Option<Value> {
    // Stay well inside the decoder's depth limit so every encoded value must decode.
    if depth > cbor::MAX_DEPTH / 2 {
        return None;
    }
    Some(match n {
        Node::Uint(v) => Value::Uint(v),
        Node::Nint(v) => Value::Nint(v),
        Node::Bytes(b) => Value::Bytes(b),
        Node::Text(t) => Value::Text(t),
        Node::Array(a) => {
            Value::Array(a.into_iter().map(|x| to_value(x, depth + 1)).collect::<Option<_>>()?)
        }
        Node::Map(m) => {
            let mut seen = std::collections::BTreeSet::new();
            let mut entries = Vec::new();
            for (k, v) in m {
                if seen.insert(k.clone()) {
                    entries.push((Value::Text(k), to_value(v, depth + 1)?));
                }
            }
            Value::Map(entries)
        }
        Node::Bool(b) => Value::Bool(b),
        Node::Null => Value::Null,
    })
}

fuzz_target!(|n: Node| {
    let Some(v) = to_value(n, 1) else { return };
    let Ok(enc) = cbor::encode(&v) else { return };
    let back = cbor::decode(&enc).expect("own encoding decodes");
    // Maps come back in canonical key order; re-encoding must give the same bytes.
    assert_eq!(cbor::encode(&back).expect("re-encodes"), enc);
});
