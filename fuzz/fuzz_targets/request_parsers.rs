//! Raw bytes into the peer-facing text parsers: route matching, query, percent-decoding,
//! `Range`.
#![no_main]

use betanet_app::request::{parse_query, percent_decode};
use betanet_app::router::Pattern;
use betanet_app::static_files::parse_range;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let _ = percent_decode(&s, true);
    let _ = parse_query(&s);
    if let Ok(Some((a, b))) = parse_range(&s, 1000) {
        assert!(a <= b && b < 1000);
    }
    for p in ["/", "/hello/{name}", "/static/{*path}", "/a/b/{c}/{*d}"] {
        let pat = Pattern::parse(p).unwrap();
        let _ = pat.matches(&s);
    }
});
