//! BAR, the L7 request/response messages (SPEC §10), as deterministic-CBOR maps.
//!
//! ```text
//! request  = {"m": method text, "u": uri text, "h": {name: text|bytes}, "b": bytes}
//! response = {"s": u16,                        "h": {name: text|bytes}, "b": bytes}
//! ```
//!
//! Decoding goes through the strict [`crate::cbor::decode`] (non-canonical CBOR is rejected).
//! All listed keys are required; other top-level keys are ignored (room for evolution).
//! Methods `GET`, `PUT`, `POST`, `DEL`; any other method text decodes as
//! [`Method::Unknown`] so the application can answer 400. Header names must be lowercase
//! (a name with an uppercase character is rejected on decode and on encode); header order on
//! the wire is the canonical CBOR key order, unknown headers are preserved.

use crate::cbor::{self, Value};
use crate::error::{BarError, WireError};

/// Common status codes (SPEC §10).
pub mod status {
    /// OK.
    pub const OK: u16 = 200;
    /// Created (POST returns `location`).
    pub const CREATED: u16 = 201;
    /// No content.
    pub const NO_CONTENT: u16 = 204;
    /// Bad request (also: unknown method).
    pub const BAD_REQUEST: u16 = 400;
    /// Unauthorized.
    pub const UNAUTHORIZED: u16 = 401;
    /// Forbidden (e.g. missing voucher).
    pub const FORBIDDEN: u16 = 403;
    /// Not found.
    pub const NOT_FOUND: u16 = 404;
    /// Conflict.
    pub const CONFLICT: u16 = 409;
    /// Too many requests.
    pub const TOO_MANY_REQUESTS: u16 = 429;
    /// Internal error.
    pub const INTERNAL_ERROR: u16 = 500;
    /// Unavailable (also: zero credit for 15 s).
    pub const SERVICE_UNAVAILABLE: u16 = 503;
}

/// A BAR method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET` (empty body).
    Get,
    /// `PUT`.
    Put,
    /// `POST` (response carries `location`).
    Post,
    /// `DEL`.
    Del,
    /// Anything else: the server answers 400.
    Unknown(String),
}

impl Method {
    /// The method text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Del => "DEL",
            Method::Unknown(s) => s,
        }
    }

    /// Parses method text (case-sensitive).
    #[must_use]
    pub fn parse(s: &str) -> Method {
        match s {
            "GET" => Method::Get,
            "PUT" => Method::Put,
            "POST" => Method::Post,
            "DEL" => Method::Del,
            other => Method::Unknown(other.to_owned()),
        }
    }
}

/// A header value: text or bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderValue {
    /// A text value.
    Text(String),
    /// A byte value.
    Bytes(Vec<u8>),
}

/// Headers in canonical order after decoding (any order before encoding).
pub type Headers = Vec<(String, HeaderValue)>;

/// A BAR request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `m`.
    pub method: Method,
    /// `u`.
    pub uri: String,
    /// `h`.
    pub headers: Headers,
    /// `b`.
    pub body: Vec<u8>,
}

/// A BAR response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// `s`.
    pub status: u16,
    /// `h`.
    pub headers: Headers,
    /// `b`.
    pub body: Vec<u8>,
}

/// The value of header `name` (exact, lowercase match).
#[must_use]
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a HeaderValue> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn is_lowercase_name(name: &str) -> bool {
    !name.chars().any(char::is_uppercase)
}

fn headers_to_value(headers: &Headers) -> Result<Value, WireError> {
    let mut entries = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        if !is_lowercase_name(name) {
            return Err(BarError::HeaderNameNotLowercase.into());
        }
        let v = match value {
            HeaderValue::Text(t) => Value::Text(t.clone()),
            HeaderValue::Bytes(b) => Value::Bytes(b.clone()),
        };
        entries.push((Value::Text(name.clone()), v));
    }
    Ok(Value::Map(entries))
}

fn headers_from_value(v: &Value) -> Result<Headers, WireError> {
    let map = v.as_map().ok_or(BarError::WrongType("h"))?;
    let mut out = Vec::with_capacity(map.len());
    for (k, v) in map {
        let name = k.as_text().ok_or(BarError::WrongType("h"))?;
        if !is_lowercase_name(name) {
            return Err(BarError::HeaderNameNotLowercase.into());
        }
        let value = match v {
            Value::Text(t) => HeaderValue::Text(t.clone()),
            Value::Bytes(b) => HeaderValue::Bytes(b.clone()),
            _ => return Err(BarError::WrongType("h").into()),
        };
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

fn field<'a>(top: &'a Value, key: &'static str) -> Result<&'a Value, WireError> {
    top.get(key)
        .ok_or_else(|| BarError::MissingField(key).into())
}

fn top_map(buf: &[u8]) -> Result<Value, WireError> {
    let v = cbor::decode(buf)?;
    if v.as_map().is_none() {
        return Err(BarError::NotAMap.into());
    }
    Ok(v)
}

impl Request {
    /// Deterministic-CBOR encoding. Fails on an uppercase or duplicate header name.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let v = Value::map([
            ("m", Value::text(self.method.as_str())),
            ("u", Value::text(self.uri.clone())),
            ("h", headers_to_value(&self.headers)?),
            ("b", Value::bytes(self.body.clone())),
        ]);
        Ok(cbor::encode(&v)?)
    }

    /// Strict decoding (canonical CBOR, required keys, typed fields).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let top = top_map(buf)?;
        let m = field(&top, "m")?
            .as_text()
            .ok_or(BarError::WrongType("m"))?;
        let uri = field(&top, "u")?
            .as_text()
            .ok_or(BarError::WrongType("u"))?
            .to_owned();
        let headers = headers_from_value(field(&top, "h")?)?;
        let body = field(&top, "b")?
            .as_bytes()
            .ok_or(BarError::WrongType("b"))?
            .to_vec();
        Ok(Request {
            method: Method::parse(m),
            uri,
            headers,
            body,
        })
    }
}

impl Response {
    /// Deterministic-CBOR encoding. Fails on an uppercase or duplicate header name.
    pub fn encode(&self) -> Result<Vec<u8>, WireError> {
        let v = Value::map([
            ("s", Value::Uint(u64::from(self.status))),
            ("h", headers_to_value(&self.headers)?),
            ("b", Value::bytes(self.body.clone())),
        ]);
        Ok(cbor::encode(&v)?)
    }

    /// Strict decoding (canonical CBOR, required keys, typed fields, status ≤ 65 535).
    pub fn decode(buf: &[u8]) -> Result<Self, WireError> {
        let top = top_map(buf)?;
        let status = field(&top, "s")?
            .as_u64()
            .and_then(|s| u16::try_from(s).ok())
            .ok_or(BarError::WrongType("s"))?;
        let headers = headers_from_value(field(&top, "h")?)?;
        let body = field(&top, "b")?
            .as_bytes()
            .ok_or(BarError::WrongType("b"))?
            .to_vec();
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn golden_request() {
        let r = Request {
            method: Method::Get,
            uri: "/a".into(),
            headers: vec![("x".into(), HeaderValue::Text("y".into()))],
            body: vec![],
        };
        // Keys "b","h","m","u" (all 1-char text: sorted by byte): a4 61 62 40 61 68 a1 61 78 61 79
        // 61 6d 63 47 45 54 61 75 62 2f 61.
        let want = h("a4 6162 40 6168 a1 6178 6179 616d 63474554 6175 622f61");
        assert_eq!(r.encode().unwrap(), want);
        assert_eq!(Request::decode(&want).unwrap(), r);
    }

    #[test]
    fn golden_response() {
        let r = Response {
            status: status::CREATED,
            headers: vec![("location".into(), HeaderValue::Text("/x".into()))],
            body: vec![1, 2],
        };
        // Keys "b","h","s"; 201 = 18 c9.
        let want = h("a3 6162 420102 6168 a1 686c6f636174696f6e 622f78 6173 18c9");
        assert_eq!(r.encode().unwrap(), want);
        assert_eq!(Response::decode(&want).unwrap(), r);
    }

    #[test]
    fn unknown_method_and_extra_keys() {
        // {"b": h'', "h": {}, "m": "PATCH", "u": "/", "zz": 1}
        let bytes = h("a5 6162 40 6168 a0 616d 655041544348 6175 612f 627a7a 01");
        let r = Request::decode(&bytes).unwrap();
        assert_eq!(r.method, Method::Unknown("PATCH".into()));
        assert_eq!(r.uri, "/");
        // Header values may be bytes.
        let r = Request {
            method: Method::Del,
            uri: "/k".into(),
            headers: vec![("k".into(), HeaderValue::Bytes(vec![0xff]))],
            body: vec![],
        };
        let back = Request::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(
            header(&back.headers, "k"),
            Some(&HeaderValue::Bytes(vec![0xff]))
        );
    }

    #[test]
    fn rejections() {
        let bar = |b: &str| Request::decode(&h(b)).unwrap_err();
        // Uppercase header name {"b":h'',"h":{"X":"y"},"m":"GET","u":"/"}.
        assert_eq!(
            bar("a4 6162 40 6168 a1 6158 6179 616d 63474554 6175 612f"),
            WireError::Bar(BarError::HeaderNameNotLowercase)
        );
        // Header value an integer.
        assert_eq!(
            bar("a4 6162 40 6168 a1 6178 01 616d 63474554 6175 612f"),
            WireError::Bar(BarError::WrongType("h"))
        );
        // Header name not text.
        assert_eq!(
            bar("a4 6162 40 6168 a1 01 6179 616d 63474554 6175 612f"),
            WireError::Bar(BarError::WrongType("h"))
        );
        // Missing "u".
        assert_eq!(
            bar("a3 6162 40 6168 a0 616d 63474554"),
            WireError::Bar(BarError::MissingField("u"))
        );
        // "m" not text.
        assert_eq!(
            bar("a4 6162 40 6168 a0 616d 01 6175 612f"),
            WireError::Bar(BarError::WrongType("m"))
        );
        // Body as text.
        assert_eq!(
            bar("a4 6162 60 6168 a0 616d 63474554 6175 612f"),
            WireError::Bar(BarError::WrongType("b"))
        );
        // Not a map.
        assert_eq!(bar("80"), WireError::Bar(BarError::NotAMap));
        // Unsorted keys ("h" before "b") → CBOR error.
        assert!(matches!(
            bar("a4 6168 a0 6162 40 616d 63474554 6175 612f"),
            WireError::Cbor(_)
        ));
        // Trailing byte.
        assert!(matches!(
            bar("a4 6162 40 6168 a0 616d 63474554 6175 612f 00"),
            WireError::Cbor(_)
        ));
        // Status too large / negative.
        assert_eq!(
            Response::decode(&h("a3 6162 40 6168 a0 6173 1a00010000")).unwrap_err(),
            WireError::Bar(BarError::WrongType("s"))
        );
        assert_eq!(
            Response::decode(&h("a3 6162 40 6168 a0 6173 20")).unwrap_err(),
            WireError::Bar(BarError::WrongType("s"))
        );
        // Encoders refuse uppercase and duplicate names.
        let mut r = Response {
            status: 200,
            headers: vec![("A".into(), HeaderValue::Text("".into()))],
            body: vec![],
        };
        assert_eq!(
            r.encode(),
            Err(WireError::Bar(BarError::HeaderNameNotLowercase))
        );
        r.headers = vec![
            ("a".into(), HeaderValue::Text("".into())),
            ("a".into(), HeaderValue::Text("".into())),
        ];
        assert!(matches!(r.encode(), Err(WireError::Cbor(_))));
    }

    fn arb_headers() -> impl Strategy<Value = Headers> {
        proptest::collection::btree_map(
            "[a-z0-9-]{1,12}",
            prop_oneof![
                "[ -~]{0,20}".prop_map(HeaderValue::Text),
                proptest::collection::vec(any::<u8>(), 0..20).prop_map(HeaderValue::Bytes)
            ],
            0..5,
        )
        .prop_map(|m| m.into_iter().collect())
    }

    fn canonical(mut h: Headers) -> Headers {
        // Canonical CBOR order of text keys: shorter first, then bytewise.
        h.sort_by(|a, b| (a.0.len(), a.0.as_bytes()).cmp(&(b.0.len(), b.0.as_bytes())));
        h
    }

    proptest! {
        #[test]
        fn request_round_trip(m in prop_oneof![Just("GET".to_string()), Just("PUT".into()), Just("POST".into()), Just("DEL".into()), "[A-Z]{1,8}"],
                              uri in "/[ -~]{0,30}", headers in arb_headers(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = Request { method: Method::parse(&m), uri, headers, body };
            let enc = r.encode().unwrap();
            let back = Request::decode(&enc).unwrap();
            prop_assert_eq!(back.method.as_str(), m.as_str());
            prop_assert_eq!(&back.headers, &canonical(r.headers.clone()));
            prop_assert_eq!(back.encode().unwrap(), enc);
            prop_assert_eq!(Request { headers: canonical(r.headers.clone()), ..r }, back);
        }

        #[test]
        fn response_round_trip(s in any::<u16>(), headers in arb_headers(), body in proptest::collection::vec(any::<u8>(), 0..64)) {
            let r = Response { status: s, headers: canonical(headers), body };
            let enc = r.encode().unwrap();
            prop_assert_eq!(Response::decode(&enc).unwrap(), r);
        }

        #[test]
        fn decode_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Request::decode(&data);
            let _ = Response::decode(&data);
        }
    }
}

/// BAR over a byte stream (an HTX stream): how a request or response is laid out so that
/// bodies of any size can stream (our reading of SPEC §10, recorded in docs/PROTOCOL.md).
///
/// ```text
/// u32be head_len ‖ det-CBOR head map ({"m","u","h","b"} or {"s","h","b"}) ‖ body continuation … FIN
/// ```
///
/// The full body is the head's `b` followed by every byte after the head until the stream's
/// FIN. A sender with a small body puts it all in `b`; a streaming sender puts an empty (or
/// first) chunk in `b` and writes the rest raw. The head is at most [`stream::MAX_HEAD_LEN`] bytes.
pub mod stream {
    use crate::WireError;

    /// Largest accepted head (1 MiB).
    pub const MAX_HEAD_LEN: usize = 1 << 20;

    /// Prefixes an encoded head with its u32be length.
    pub fn frame_head(head: &[u8]) -> Result<Vec<u8>, WireError> {
        if head.len() > MAX_HEAD_LEN {
            return Err(WireError::OutOfRange {
                what: "BAR head length",
            });
        }
        let mut out = Vec::with_capacity(4 + head.len());
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        out.extend_from_slice(head);
        Ok(out)
    }

    /// Splits a complete head off the front of `buf`: `Ok(Some((head, consumed)))`, `Ok(None)`
    /// while more bytes are needed, or an error for a length above [`MAX_HEAD_LEN`] (checked as
    /// soon as the 4 length bytes are there).
    pub fn split_head(buf: &[u8]) -> Result<Option<(&[u8], usize)>, WireError> {
        let Some(len) = buf.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        if len > MAX_HEAD_LEN {
            return Err(WireError::OutOfRange {
                what: "BAR head length",
            });
        }
        Ok(buf.get(4..4 + len).map(|h| (h, 4 + len)))
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::bar::{Method, Request};

        #[test]
        fn head_roundtrip_and_limits() {
            let req = Request {
                method: Method::Get,
                uri: "/x".into(),
                headers: vec![],
                body: vec![],
            };
            let framed = frame_head(&req.encode().unwrap()).unwrap();
            let mut buf = framed.clone();
            buf.extend_from_slice(b"body-continuation");
            let (head, used) = split_head(&buf).unwrap().unwrap();
            assert_eq!(Request::decode(head).unwrap(), req);
            assert_eq!(&buf[used..], b"body-continuation");
            assert_eq!(split_head(&framed[..framed.len() - 1]).unwrap(), None);
            assert_eq!(split_head(&framed[..3]).unwrap(), None);
            assert!(split_head(&[0x00, 0x10, 0x00, 0x01]).is_err());
        }
    }
}

/// Direct codecs for BAR heads of the usual shape, for hot paths (the site's request and
/// response, the gateway's response mapping): they read and write deterministic CBOR without
/// a [`Value`] tree. They are shortcuts, not alternatives: a decoder here returns `None` for
/// anything unusual (extra keys, a header value that is neither text nor bytes, an uppercase
/// name, arguments above 32 bits), and the caller then asks the strict reference decoder,
/// which gives the error or the result. Whatever they accept, the reference accepts with the
/// same result (property-tested by their users against [`Request::decode`] and
/// [`Response::decode`]).
pub mod fast {
    use super::{HeaderValue, Method, Request, Response};

    /// Appends a deterministic-CBOR item head (major type `major`, argument `n`, shortest
    /// form).
    pub fn put_head(out: &mut Vec<u8>, major: u8, n: u64) {
        let m = major << 5;
        if n < 24 {
            out.push(m | n as u8);
        } else if let Ok(b) = u8::try_from(n) {
            out.extend_from_slice(&[m | 24, b]);
        } else if let Ok(b) = u16::try_from(n) {
            out.push(m | 25);
            out.extend_from_slice(&b.to_be_bytes());
        } else if let Ok(b) = u32::try_from(n) {
            out.push(m | 26);
            out.extend_from_slice(&b.to_be_bytes());
        } else {
            out.push(m | 27);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }

    /// Appends a text string item.
    pub fn put_text(out: &mut Vec<u8>, t: &[u8]) {
        put_head(out, 3, t.len() as u64);
        out.extend_from_slice(t);
    }

    /// A cursor over deterministic CBOR that accepts only shortest-form, definite-length
    /// items with arguments up to 32 bits (`None` otherwise).
    #[derive(Debug, Clone)]
    pub struct HeadReader<'a> {
        buf: &'a [u8],
        pos: usize,
    }

    impl<'a> HeadReader<'a> {
        /// A reader at the start of `buf`.
        #[must_use]
        pub fn new(buf: &'a [u8]) -> Self {
            HeadReader { buf, pos: 0 }
        }

        /// The offset of the next item.
        #[must_use]
        pub fn pos(&self) -> usize {
            self.pos
        }

        /// Whether every byte was read.
        #[must_use]
        pub fn at_end(&self) -> bool {
            self.pos == self.buf.len()
        }

        /// The major type of the next item.
        #[must_use]
        pub fn peek_major(&self) -> Option<u8> {
            self.buf.get(self.pos).map(|b| b >> 5)
        }

        fn byte(&mut self) -> Option<u8> {
            let b = *self.buf.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }

        /// The next `n` raw bytes.
        pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
            let end = self.pos.checked_add(n)?;
            let s = self.buf.get(self.pos..end)?;
            self.pos = end;
            Some(s)
        }

        /// An item head of `major` and its argument.
        pub fn head(&mut self, major: u8) -> Option<u64> {
            let ib = self.byte()?;
            if ib >> 5 != major {
                return None;
            }
            match ib & 0x1f {
                n @ 0..=23 => Some(u64::from(n)),
                24 => Some(u64::from(self.byte()?)).filter(|&v| v >= 24),
                25 => {
                    let b = self.take(2)?;
                    Some(u64::from(u16::from_be_bytes([b[0], b[1]]))).filter(|&v| v > 0xff)
                }
                26 => {
                    let b = self.take(4)?;
                    Some(u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])))
                        .filter(|&v| v > 0xffff)
                }
                _ => None,
            }
        }

        /// A byte (`major` 2) or text (3) string's raw content.
        pub fn bytes(&mut self, major: u8) -> Option<&'a [u8]> {
            let n = usize::try_from(self.head(major)?).ok()?;
            self.take(n)
        }

        /// A text string.
        pub fn text(&mut self) -> Option<&'a str> {
            std::str::from_utf8(self.bytes(3)?).ok()
        }

        /// A text key that sorts strictly after the previous key's encoding (canonical maps).
        pub fn key(&mut self, prev: &mut Option<&'a [u8]>) -> Option<&'a str> {
            let start = self.pos;
            let k = self.text()?;
            let enc = self.buf.get(start..self.pos)?;
            if prev.is_some_and(|p| p >= enc) {
                return None;
            }
            *prev = Some(enc);
            Some(k)
        }

        /// The `h` map's length, bounded by the input (every entry takes at least 2 bytes).
        pub fn header_count(&mut self) -> Option<usize> {
            let n = usize::try_from(self.head(5)?).ok()?;
            (n <= self.buf.len() / 2).then_some(n)
        }

        /// One header entry: a lowercase text name and a text or byte value, as raw parts
        /// (`major` 3 for text, checked UTF-8, or 2 for bytes).
        pub fn header(&mut self, prev: &mut Option<&'a [u8]>) -> Option<(&'a str, u8, &'a [u8])> {
            let name = self.key(prev)?;
            if name.chars().any(char::is_uppercase) {
                return None;
            }
            let major = self.peek_major()?;
            if major != 2 && major != 3 {
                return None;
            }
            let raw = self.bytes(major)?;
            if major == 3 {
                std::str::from_utf8(raw).ok()?;
            }
            Some((name, major, raw))
        }
    }

    /// A head's body (`b`) and headers (`h`).
    type BodyAndHeaders = (Vec<u8>, Vec<(String, HeaderValue)>);

    /// `b` and `h` of a head map with `keys` entries: the body and the headers.
    fn body_and_headers<'a>(
        r: &mut HeadReader<'a>,
        prev: &mut Option<&'a [u8]>,
        keys: u64,
    ) -> Option<BodyAndHeaders> {
        if r.head(5)? != keys || r.key(prev)? != "b" {
            return None;
        }
        let body = r.bytes(2)?.to_vec();
        if r.key(prev)? != "h" {
            return None;
        }
        let n = r.header_count()?;
        let mut headers = Vec::with_capacity(n);
        let mut hprev = None;
        for _ in 0..n {
            let (name, major, raw) = r.header(&mut hprev)?;
            let value = if major == 3 {
                HeaderValue::Text(std::str::from_utf8(raw).ok()?.to_owned())
            } else {
                HeaderValue::Bytes(raw.to_vec())
            };
            headers.push((name.to_owned(), value));
        }
        Some((body, headers))
    }

    /// A request head `{"b", "h", "m", "u"}`; `None`: ask [`Request::decode`].
    #[must_use]
    pub fn decode_request(buf: &[u8]) -> Option<Request> {
        let mut r = HeadReader::new(buf);
        let mut prev = None;
        let (body, headers) = body_and_headers(&mut r, &mut prev, 4)?;
        if r.key(&mut prev)? != "m" {
            return None;
        }
        let method = Method::parse(r.text()?);
        if r.key(&mut prev)? != "u" {
            return None;
        }
        let uri = r.text()?.to_owned();
        r.at_end().then_some(Request {
            method,
            uri,
            headers,
            body,
        })
    }

    /// A response head `{"b", "h", "s"}`; `None`: ask [`Response::decode`].
    #[must_use]
    pub fn decode_response(buf: &[u8]) -> Option<Response> {
        let mut r = HeadReader::new(buf);
        let mut prev = None;
        let (body, headers) = body_and_headers(&mut r, &mut prev, 3)?;
        if r.key(&mut prev)? != "s" {
            return None;
        }
        let status = u16::try_from(r.head(0)?).ok()?;
        r.at_end().then_some(Response {
            status,
            headers,
            body,
        })
    }
}
