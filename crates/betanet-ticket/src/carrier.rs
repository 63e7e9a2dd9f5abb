//! Finding the ticket in a request (server side of SPEC §4.2 step 3).
//!
//! The gateway hands over the request's `Cookie` header values, its query string and (for a
//! POST) the content type and the form part of the body. Exactly one carrier must hold a
//! ticket; a ticket in two places (or twice in one place) is refused as
//! [`Refusal::AmbiguousCarrier`]. Values may be percent-encoded in the query and the body and
//! DQUOTE-wrapped in the cookie (RFC 6265); the Base64URL text itself must be unpadded.
//! Everything is length-capped before decoding.

use zeroize::Zeroizing;

use betanet_wire::b64;

use crate::error::Refusal;
use crate::policy::Carrier;
use crate::ticket::{COOKIE_NAME, FORM_CONTENT_TYPE, MAX_PAYLOAD_LEN, PARAM_NAME};

/// Longest Base64URL text accepted for a ticket.
pub const MAX_TICKET_TEXT: usize = (MAX_PAYLOAD_LEN * 4).div_ceil(3);
/// Longest query string or form body scanned.
pub const MAX_FORM_LEN: usize = 8192;
/// Longest total of `Cookie` header values scanned (generous: a front's other cookies must not
/// turn a valid ticket into a refusal; HTTP servers bound header sizes anyway).
pub const MAX_COOKIE_LEN: usize = 65_536;

/// The parts of an HTTP request that can carry a ticket.
#[derive(Clone, Copy, Debug, Default)]
pub struct TicketRequest<'a> {
    /// Every `Cookie` header value (HTTP/2 may split cookies over several fields).
    pub cookies: &'a [&'a str],
    /// The query string (with or without the leading `?`).
    pub query: Option<&'a str>,
    /// The request's `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// The form part of the body (for a POST carrying the body carrier).
    pub body: Option<&'a [u8]>,
}

/// A ticket found in a request, not yet verified.
pub struct Candidate {
    /// Where it was found.
    pub carrier: Carrier,
    /// The decoded payload.
    pub payload: Zeroizing<Vec<u8>>,
}

impl core::fmt::Debug for Candidate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Candidate")
            .field("carrier", &self.carrier)
            .field("len", &self.payload.len())
            .finish_non_exhaustive()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s` (`+` → space when `plus_is_space`). Fails on a bad escape.
fn percent_decode(s: &[u8], plus_is_space: bool) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        match b {
            b'%' => {
                let hi = s.get(i + 1).copied().and_then(hex_val);
                let lo = s.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(Refusal::Malformed),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn decode_text(text: &[u8]) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    if text.len() > MAX_TICKET_TEXT {
        return Err(Refusal::Oversize);
    }
    let s = core::str::from_utf8(text).map_err(|_| Refusal::Malformed)?;
    b64::decode(s)
        .map(Zeroizing::new)
        .map_err(|_| Refusal::Malformed)
}

/// Finds `bn1=` in a urlencoded string. `Ok(None)` when absent.
fn find_in_form(form: &[u8], plus_is_space: bool) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
    if form.len() > MAX_FORM_LEN {
        return Err(Refusal::Oversize);
    }
    let form = form.strip_prefix(b"?").unwrap_or(form);
    let mut found = None;
    for pair in form.split(|b| *b == b'&') {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (
                pair.get(..i).unwrap_or_default(),
                pair.get(i + 1..).unwrap_or_default(),
            ),
            None => (pair, &[][..]),
        };
        if percent_decode(k, plus_is_space)? != PARAM_NAME.as_bytes() {
            continue;
        }
        if found.is_some() {
            return Err(Refusal::AmbiguousCarrier);
        }
        if v.len() > MAX_TICKET_TEXT * 3 {
            return Err(Refusal::Oversize);
        }
        found = Some(Zeroizing::new(percent_decode(v, plus_is_space)?));
    }
    match found {
        Some(text) => decode_text(&text).map(Some),
        None => Ok(None),
    }
}

/// Finds the ticket in a query string (`bn1=<b64>`, percent-decoding allowed).
pub fn from_query(query: &str) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
    find_in_form(query.as_bytes(), false)
}

/// Finds the ticket in an `application/x-www-form-urlencoded` body.
pub fn from_form_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
    let essence = content_type
        .and_then(|c| c.split(';').next())
        .map(|c| c.trim_matches([' ', '\t']));
    match essence {
        Some(e) if e.eq_ignore_ascii_case(FORM_CONTENT_TYPE) => find_in_form(body, true),
        _ => Err(Refusal::BadContentType),
    }
}

/// Finds the ticket in `Cookie` header values (`__Host-bn1=<b64>`).
pub fn from_cookies(cookies: &[&str]) -> Result<Option<Zeroizing<Vec<u8>>>, Refusal> {
    let total: usize = cookies.iter().map(|c| c.len()).sum();
    if total > MAX_COOKIE_LEN {
        return Err(Refusal::Oversize);
    }
    let mut found: Option<&str> = None;
    for header in cookies {
        for pair in header.split(';') {
            let pair = pair.trim_matches([' ', '\t']);
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            if name.trim_matches([' ', '\t']) != COOKIE_NAME {
                continue;
            }
            if found.is_some() {
                return Err(Refusal::AmbiguousCarrier);
            }
            let v = value.trim_matches([' ', '\t']);
            let v = v
                .strip_prefix('"')
                .and_then(|x| x.strip_suffix('"'))
                .unwrap_or(v);
            found = Some(v);
        }
    }
    match found {
        Some(v) => decode_text(v.as_bytes()).map(Some),
        None => Ok(None),
    }
}

/// Finds the single ticket in a request.
///
/// The body is only looked at when it is present **and** the content type is the form type
/// (a streaming POST with another content type is not a body carrier). Errors in a carrier
/// that holds a ticket are reported; a ticket in more than one carrier is ambiguous.
pub fn extract_from_request(req: &TicketRequest<'_>) -> Result<Candidate, Refusal> {
    let mut found: Option<Candidate> = None;
    let mut put = |carrier: Carrier, p: Option<Zeroizing<Vec<u8>>>| -> Result<(), Refusal> {
        if let Some(payload) = p {
            if found.is_some() {
                return Err(Refusal::AmbiguousCarrier);
            }
            found = Some(Candidate { carrier, payload });
        }
        Ok(())
    };
    if !req.cookies.is_empty() {
        put(Carrier::Cookie, from_cookies(req.cookies)?)?;
    }
    if let Some(q) = req.query {
        put(Carrier::Query, from_query(q)?)?;
    }
    if let Some(body) = req.body {
        let is_form = req
            .content_type
            .and_then(|c| c.split(';').next())
            .is_some_and(|e| {
                e.trim_matches([' ', '\t'])
                    .eq_ignore_ascii_case(FORM_CONTENT_TYPE)
            });
        if is_form {
            put(Carrier::Body, from_form_body(req.content_type, body)?)?;
        }
    }
    found.ok_or(Refusal::NoTicket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: &str = "AQID"; // [1, 2, 3]

    #[test]
    fn cookie_carrier() {
        let h = format!("a=b; __Host-bn1={T}; c=d");
        assert_eq!(*from_cookies(&[&h]).unwrap().unwrap(), vec![1, 2, 3]);
        let q = format!("__Host-bn1=\"{T}\"");
        assert_eq!(*from_cookies(&[&q]).unwrap().unwrap(), vec![1, 2, 3]);
        assert!(
            from_cookies(&["bn1=AQID; __host-bn1=AQID"])
                .unwrap()
                .is_none()
        );
        let two = [h.as_str(), q.as_str()];
        assert_eq!(from_cookies(&two).unwrap_err(), Refusal::AmbiguousCarrier);
        assert_eq!(
            from_cookies(&["__Host-bn1=AQID="]).unwrap_err(),
            Refusal::Malformed
        );
        let long = format!("__Host-bn1={}", "A".repeat(MAX_TICKET_TEXT + 4));
        assert_eq!(from_cookies(&[&long]).unwrap_err(), Refusal::Oversize);
    }

    #[test]
    fn query_and_body_carriers() {
        assert_eq!(
            *from_query("?x=1&bn1=AQID&y").unwrap().unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(*from_query("bn%31=AQ%49D").unwrap().unwrap(), vec![1, 2, 3]);
        assert!(from_query("x=1&bn2=AQID").unwrap().is_none());
        assert_eq!(
            from_query("bn1=AQID&bn1=AQID").unwrap_err(),
            Refusal::AmbiguousCarrier
        );
        assert_eq!(from_query("bn1=AQ%4").unwrap_err(), Refusal::Malformed);
        assert_eq!(from_query("bn1=AQ+D").unwrap_err(), Refusal::Malformed);
        let ct = Some("application/x-www-form-urlencoded; charset=utf-8");
        assert_eq!(
            *from_form_body(ct, b"bn1=AQID").unwrap().unwrap(),
            vec![1, 2, 3]
        );
        assert_eq!(
            from_form_body(Some("text/plain"), b"bn1=AQID").unwrap_err(),
            Refusal::BadContentType
        );
        assert_eq!(
            from_form_body(None, b"bn1=AQID").unwrap_err(),
            Refusal::BadContentType
        );
    }

    #[test]
    fn request_extraction() {
        let cookie = format!("__Host-bn1={T}");
        let cookies = [cookie.as_str()];
        let req = TicketRequest {
            cookies: &cookies,
            ..Default::default()
        };
        let c = extract_from_request(&req).unwrap();
        assert_eq!(c.carrier, Carrier::Cookie);
        let req = TicketRequest {
            query: Some("bn1=AQID"),
            ..Default::default()
        };
        assert_eq!(extract_from_request(&req).unwrap().carrier, Carrier::Query);
        let req = TicketRequest {
            content_type: Some("application/x-www-form-urlencoded"),
            body: Some(b"bn1=AQID"),
            ..Default::default()
        };
        assert_eq!(extract_from_request(&req).unwrap().carrier, Carrier::Body);
        // Streaming body of another type is not a carrier.
        let req = TicketRequest {
            content_type: Some("application/octet-stream"),
            body: Some(b"bn1=AQID"),
            ..Default::default()
        };
        assert_eq!(extract_from_request(&req).unwrap_err(), Refusal::NoTicket);
        let req = TicketRequest {
            cookies: &cookies,
            query: Some("bn1=AQID"),
            ..Default::default()
        };
        assert_eq!(
            extract_from_request(&req).unwrap_err(),
            Refusal::AmbiguousCarrier
        );
        assert_eq!(
            extract_from_request(&TicketRequest::default()).unwrap_err(),
            Refusal::NoTicket
        );
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}", b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let cookies = [s.as_str()];
            let req = TicketRequest {
                cookies: &cookies,
                query: Some(&s),
                content_type: Some(FORM_CONTENT_TYPE),
                body: Some(&b),
            };
            let _ = extract_from_request(&req);
        }

        #[test]
        fn round_trip(payload in proptest::collection::vec(any::<u8>(), 0..300)) {
            let t = b64::encode(&payload);
            let c = crate::ticket::render_cookie(&t);
            prop_assert_eq!(&*from_cookies(&[&c]).unwrap().unwrap(), &payload);
            let q = crate::ticket::render_query(&t);
            prop_assert_eq!(&*from_query(&q).unwrap().unwrap(), &payload);
            let b = crate::ticket::render_form_body(&t);
            prop_assert_eq!(&*from_form_body(Some(FORM_CONTENT_TYPE), b.as_bytes()).unwrap().unwrap(), &payload);
        }
    }
}
