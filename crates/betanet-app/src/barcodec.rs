//! Direct BAR head codecs for the serving hot path: the response head is written straight
//! into the framed output buffer and the request head is read straight out of the input,
//! without building a `cbor::Value` tree (which costs an allocation per key, header and
//! value, and a copy of the body, per request).
//!
//! Both are exact shortcuts of the reference codecs in `betanet_wire::bar`:
//! * [`encode_response_framed`] produces byte for byte what
//!   `frame_head(&bar::Response { .. }.encode()?)` produces for the same (normalized)
//!   headers, and returns `None` whenever the reference could fail or differ (a non-ASCII
//!   header name, a head above `MAX_HEAD_LEN`), so the caller falls back to the reference;
//! * [`decode_request`] accepts only canonical heads of the usual shape (a map of exactly the
//!   text keys `b`, `h`, `m`, `u`, headers text or bytes) and returns `None` for anything
//!   else, so the caller falls back to the strict `bar::Request::decode` (which gives the
//!   error, or handles extra keys). Whatever it accepts, the reference accepts with the same
//!   result (checked by property tests below).

use std::borrow::Cow;

use betanet_wire::bar;
use betanet_wire::bar::fast::put_head as cbor_head;
use betanet_wire::bar::stream::MAX_HEAD_LEN;

/// Lowercases and de-duplicates response header names (the last value of a name wins, at the
/// place of its first occurrence): the normalization the server applies before encoding.
/// `None` when a name is not ASCII (the reference encoder decides about those).
pub(crate) fn normalized_headers(
    headers: &[(String, String)],
) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut out: Vec<(Cow<'_, str>, &str)> = Vec::with_capacity(headers.len());
    for (n, v) in headers {
        if !n.is_ascii() {
            return None;
        }
        let name: Cow<'_, str> = if n.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(n.to_ascii_lowercase())
        } else {
            Cow::Borrowed(n.as_str())
        };
        if let Some(slot) = out.iter_mut().find(|(x, _)| *x == name) {
            slot.1 = v.as_str();
        } else {
            out.push((name, v.as_str()));
        }
    }
    Some(out)
}

/// The framed BAR response head (`u32be len ‖ det-CBOR {"b": body, "h": headers, "s":
/// status}`), header names lowercased and de-duplicated like the reference path. `None` when
/// the reference encoder must decide (see the module docs).
pub(crate) fn encode_response_framed(
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> Option<Vec<u8>> {
    let mut hs = normalized_headers(headers)?;
    // Canonical key order for text keys = shorter first, then bytewise.
    hs.sort_unstable_by(|a, b| {
        a.0.len()
            .cmp(&b.0.len())
            .then_with(|| a.0.as_bytes().cmp(b.0.as_bytes()))
    });
    let hbytes: usize = hs.iter().map(|(n, v)| n.len() + v.len() + 18).sum();
    let mut out = Vec::with_capacity(4 + 16 + hbytes + body.len() + 9);
    out.extend_from_slice(&[0; 4]);
    cbor_head(&mut out, 5, 3);
    out.extend_from_slice(&[0x61, b'b']);
    cbor_head(&mut out, 2, body.len() as u64);
    out.extend_from_slice(body);
    out.extend_from_slice(&[0x61, b'h']);
    cbor_head(&mut out, 5, hs.len() as u64);
    for (n, v) in &hs {
        cbor_head(&mut out, 3, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        cbor_head(&mut out, 3, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&[0x61, b's']);
    cbor_head(&mut out, 0, u64::from(status));
    let len = out.len() - 4;
    if len > MAX_HEAD_LEN {
        return None;
    }
    let len = u32::try_from(len).ok()?.to_be_bytes();
    out.get_mut(..4)?.copy_from_slice(&len);
    Some(out)
}

/// Decodes a request head of the usual shape; `None` means "use the reference decoder"
/// (`betanet_wire::bar::fast::decode_request`).
pub(crate) fn decode_request(buf: &[u8]) -> Option<bar::Request> {
    bar::fast::decode_request(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use betanet_wire::bar::stream::frame_head;
    use betanet_wire::bar::{HeaderValue, Method};
    use proptest::prelude::*;

    /// The reference path: normalize like the server always did, then the wire codec.
    fn reference(status: u16, headers: &[(String, String)], body: &[u8]) -> Option<Vec<u8>> {
        let hs = normalized_headers(headers)?
            .into_iter()
            .map(|(n, v)| (n.into_owned(), HeaderValue::Text(v.to_owned())))
            .collect();
        let head = bar::Response {
            status,
            headers: hs,
            body: body.to_vec(),
        };
        frame_head(&head.encode().ok()?).ok()
    }

    #[test]
    fn golden_response_head() {
        let framed = encode_response_framed(
            200,
            &[
                ("Content-Type".into(), "text/plain".into()),
                ("x".into(), "1".into()),
                ("X".into(), "2".into()),
            ],
            b"hi",
        )
        .unwrap();
        let expect = hex_literal(
            "00000029 a3 6162 426869 6168 a2 6178 6132 6c636f6e74656e742d74797065 \
             6a746578742f706c61696e 6173 18c8",
        );
        assert_eq!(framed, expect);
        assert_eq!(
            reference(
                200,
                &[
                    ("content-type".into(), "text/plain".into()),
                    ("x".into(), "2".into())
                ],
                b"hi"
            )
            .unwrap(),
            expect
        );
    }

    fn hex_literal(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn non_ascii_names_fall_back() {
        assert_eq!(
            encode_response_framed(200, &[("Ä".into(), "v".into())], b""),
            None
        );
    }

    #[test]
    fn request_fast_path_and_fallbacks() {
        let req = bar::Request {
            method: Method::Get,
            uri: "/bench?x=1".into(),
            headers: vec![
                ("host".into(), HeaderValue::Text("bench.test".into())),
                ("k".into(), HeaderValue::Bytes(vec![0, 1, 2])),
            ],
            body: vec![],
        };
        let enc = req.encode().unwrap();
        let mut fast = decode_request(&enc).unwrap();
        let mut slow = bar::Request::decode(&enc).unwrap();
        fast.headers.sort_by(|a, b| a.0.cmp(&b.0));
        slow.headers.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(fast, slow);
        // Trailing byte, truncation, unknown method text, an extra key.
        let mut t = enc.clone();
        t.push(0);
        assert_eq!(decode_request(&t), None);
        assert_eq!(decode_request(&enc[..enc.len() - 1]), None);
        let extra = betanet_wire::cbor::encode(&betanet_wire::cbor::Value::map([
            ("b", betanet_wire::cbor::Value::bytes(vec![])),
            ("h", betanet_wire::cbor::Value::Map(vec![])),
            ("m", betanet_wire::cbor::Value::text("GET")),
            ("u", betanet_wire::cbor::Value::text("/")),
            ("z", betanet_wire::cbor::Value::Null),
        ]))
        .unwrap();
        assert_eq!(decode_request(&extra), None);
        assert!(bar::Request::decode(&extra).is_ok());
        // Non-shortest length of the uri text: both reject (the fast path by falling back).
        let bad = hex_literal("a4 6162 40 6168 a0 616d 63474554 6175 7801 2f");
        assert_eq!(decode_request(&bad), None);
        assert!(bar::Request::decode(&bad).is_err());
        let ok = hex_literal("a4 6162 40 6168 a0 616d 6350555a 6175 612f");
        assert_eq!(
            decode_request(&ok).unwrap().method,
            Method::Unknown("PUZ".into())
        );
    }

    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z][a-zA-Z0-9-]{0,30}",
            Just("content-length".to_owned()),
            Just("Content-Type".to_owned()),
            "[a-z]{20,40}",
        ]
    }

    proptest! {
        #[test]
        fn response_head_equals_reference(
            status in any::<u16>(),
            headers in prop::collection::vec((name(), "[ -~]{0,300}"), 0..12),
            body in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let fast = encode_response_framed(status, &headers, &body);
            prop_assert!(fast.is_some());
            prop_assert_eq!(fast, reference(status, &headers, &body));
        }

        #[test]
        fn request_fast_decode_equals_reference(
            m in prop_oneof![Just("GET".to_owned()), Just("POST".to_owned()), "[A-Z]{1,8}"],
            uri in "/[ -~]{0,300}",
            headers in prop::collection::vec(
                ("[a-z][a-z0-9-]{0,30}", prop_oneof![
                    "[ -~]{0,300}".prop_map(HeaderValue::Text),
                    prop::collection::vec(any::<u8>(), 0..40).prop_map(HeaderValue::Bytes),
                ]), 0..10),
            body in prop::collection::vec(any::<u8>(), 0..400),
        ) {
            let mut hs: bar::Headers = Vec::new();
            for (n, v) in headers {
                if !hs.iter().any(|(x, _)| *x == n) {
                    hs.push((n, v));
                }
            }
            let req = bar::Request { method: Method::parse(&m), uri, headers: hs, body };
            let enc = req.encode().unwrap();
            let slow = bar::Request::decode(&enc).unwrap();
            prop_assert_eq!(decode_request(&enc), Some(slow));
        }

        #[test]
        fn request_fast_decode_never_disagrees(
            base in prop::collection::vec(any::<u8>(), 0..8),
            flips in prop::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            cut in any::<usize>(),
        ) {
            let req = bar::Request {
                method: Method::Post,
                uri: "/x?y".into(),
                headers: vec![("h".into(), HeaderValue::Text("v".into())), ("host".into(), HeaderValue::Bytes(base.clone()))],
                body: base,
            };
            let mut enc = req.encode().unwrap();
            for (i, b) in flips {
                let i = i % enc.len();
                enc[i] = b;
            }
            enc.truncate(enc.len() - cut % 3);
            if let Some(fast) = decode_request(&enc) {
                prop_assert_eq!(Some(fast), bar::Request::decode(&enc).ok());
            }
        }
    }
}
