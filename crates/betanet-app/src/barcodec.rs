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

use betanet_wire::bar::stream::MAX_HEAD_LEN;
use betanet_wire::bar::{self, HeaderValue, Method};

/// Appends a CBOR item head (shortest form).
fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.push(m | 24);
        out.push(n as u8);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

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

/// A strict reader for the shapes [`decode_request`] accepts.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let b = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }

    /// A definite-length head of `major` in shortest form.
    fn head(&mut self, major: u8) -> Option<u64> {
        let ib = self.byte()?;
        if ib >> 5 != major {
            return None;
        }
        let v = match ib & 0x1f {
            n @ 0..=23 => u64::from(n),
            24 => Some(u64::from(self.byte()?)).filter(|&v| v >= 24)?,
            25 => {
                let b = self.take(2)?;
                Some(u64::from(u16::from_be_bytes([b[0], b[1]])))
                    .filter(|&v| v > u64::from(u8::MAX))?
            }
            26 => {
                let b = self.take(4)?;
                Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
                    .filter(|&v| v > u64::from(u16::MAX))?
            }
            _ => return None,
        };
        Some(v)
    }

    fn bytes(&mut self, major: u8) -> Option<&'a [u8]> {
        let n = usize::try_from(self.head(major)?).ok()?;
        self.take(n)
    }

    fn text(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes(3)?).ok()
    }

    /// A text key, checked to sort strictly after the previous key's encoding.
    fn key(&mut self, prev: &mut Option<&'a [u8]>) -> Option<&'a str> {
        let start = self.pos;
        let k = self.text()?;
        let enc = self.buf.get(start..self.pos)?;
        if prev.is_some_and(|p| p >= enc) {
            return None;
        }
        *prev = Some(enc);
        Some(k)
    }
}

/// Decodes a request head of the usual shape; `None` means "use the reference decoder".
pub(crate) fn decode_request(buf: &[u8]) -> Option<bar::Request> {
    let mut r = Reader { buf, pos: 0 };
    if r.head(5)? != 4 {
        return None;
    }
    let mut prev = None;
    // The only canonical order of these four keys is b, h, m, u.
    if r.key(&mut prev)? != "b" {
        return None;
    }
    let body = r.bytes(2)?.to_vec();
    if r.key(&mut prev)? != "h" {
        return None;
    }
    let n = usize::try_from(r.head(5)?).ok()?;
    // Every entry takes at least 2 bytes: bound the allocation by the input.
    if n > buf.len() / 2 {
        return None;
    }
    let mut headers = Vec::with_capacity(n);
    let mut hprev = None;
    for _ in 0..n {
        let name = r.key(&mut hprev)?;
        if name.chars().any(char::is_uppercase) {
            return None;
        }
        let value = match r.buf.get(r.pos)? >> 5 {
            3 => HeaderValue::Text(r.text()?.to_owned()),
            2 => HeaderValue::Bytes(r.bytes(2)?.to_vec()),
            _ => return None,
        };
        headers.push((name.to_owned(), value));
    }
    if r.key(&mut prev)? != "m" {
        return None;
    }
    let method = Method::parse(r.text()?);
    if r.key(&mut prev)? != "u" {
        return None;
    }
    let uri = r.text()?.to_owned();
    if r.pos != buf.len() {
        return None;
    }
    Some(bar::Request {
        method,
        uri,
        headers,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use betanet_wire::bar::stream::frame_head;
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
