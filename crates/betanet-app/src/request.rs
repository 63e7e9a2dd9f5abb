//! Requests and their extractors: path params, query, headers, body, JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use betanet_wire::bar::{self, HeaderValue, Headers, Method};
use bytes::Bytes;
use serde::de::DeserializeOwned;

use crate::app::AppContext;
use crate::error::AppError;
use crate::response::Response;

/// Who is on the other end of a stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerInfo {
    /// Transport address, when the transport has one.
    pub addr: Option<SocketAddr>,
    /// The authenticated peer (PeerID text) for HTX streams.
    pub peer_id: Option<String>,
    /// Transport name (`"tcp-bar"`, `"htx"`, `"local"`).
    pub transport: &'static str,
}

impl PeerInfo {
    /// A plain TCP peer.
    #[must_use]
    pub fn tcp(addr: SocketAddr) -> Self {
        PeerInfo {
            addr: Some(addr),
            peer_id: None,
            transport: "tcp-bar",
        }
    }

    /// An in-process peer (tests, benches).
    #[must_use]
    pub fn local() -> Self {
        PeerInfo {
            addr: None,
            peer_id: None,
            transport: "local",
        }
    }
}

/// The parts of a request that hooks and error handlers see (everything but the body).
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The BAR method.
    pub method: Method,
    /// The URI as sent (`/path?query`).
    pub uri: String,
    /// The path part of the URI (still percent-encoded).
    pub path: String,
    /// The query part without `?`.
    pub query: Option<String>,
    /// Headers (lowercase names).
    pub headers: Headers,
    /// The peer.
    pub peer: PeerInfo,
}

impl RequestHead {
    /// A head for `method` and `uri`.
    #[must_use]
    pub fn new(method: Method, uri: &str, headers: Headers, peer: PeerInfo) -> Self {
        let (path, query) = match uri.split_once('?') {
            Some((p, q)) => (p.to_owned(), Some(q.to_owned())),
            None => (uri.to_owned(), None),
        };
        let path = if path.is_empty() {
            "/".to_owned()
        } else {
            path
        };
        RequestHead {
            method,
            uri: uri.to_owned(),
            path,
            query,
            headers,
            peer,
        }
    }

    /// Header `name` as text (bytes values that are valid UTF-8 included).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        match bar::header(&self.headers, name)? {
            HeaderValue::Text(t) => Some(t.as_str()),
            HeaderValue::Bytes(b) => std::str::from_utf8(b).ok(),
        }
    }
}

/// A request as a handler receives it.
#[derive(Debug)]
pub struct Request {
    /// Method, URI, headers, peer.
    pub head: RequestHead,
    /// Path parameters captured by the route (`{name}` and the trailing wildcard), decoded.
    pub params: Vec<(String, String)>,
    /// The whole request body.
    pub body: Bytes,
    pub(crate) ctx: Arc<AppContext>,
}

impl Request {
    /// Builds a request (used by the server; handy in tests).
    #[must_use]
    pub fn new(head: RequestHead, body: Bytes, ctx: Arc<AppContext>) -> Self {
        Request {
            head,
            params: Vec::new(),
            body,
            ctx,
        }
    }

    /// The method.
    #[must_use]
    pub fn method(&self) -> &Method {
        &self.head.method
    }

    /// The path (percent-encoded as sent).
    #[must_use]
    pub fn path(&self) -> &str {
        &self.head.path
    }

    /// Path parameter `name`.
    #[must_use]
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// All decoded query pairs in order (`+` is a space).
    #[must_use]
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        parse_query(self.head.query.as_deref().unwrap_or(""))
    }

    /// The first query value for `name`.
    #[must_use]
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Header `name` (lowercase) as text.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.header(name)
    }

    /// The body bytes.
    #[must_use]
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> Result<&str, AppError> {
        std::str::from_utf8(&self.body).map_err(AppError::NotUtf8)
    }

    /// The body parsed as JSON into `T` (an error answers 400).
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, AppError> {
        serde_json::from_slice(&self.body).map_err(AppError::Json)
    }

    /// The peer.
    #[must_use]
    pub fn peer(&self) -> &PeerInfo {
        &self.head.peer
    }

    /// Shared application context (templates, stats).
    #[must_use]
    pub fn context(&self) -> &Arc<AppContext> {
        &self.ctx
    }

    /// Renders template `name` with `ctx` into an HTML (or text) response; errors give a 500.
    #[must_use]
    pub fn render<T: serde::Serialize>(&self, name: &str, ctx: T) -> Response {
        self.ctx.templates.render_response(name, ctx)
    }
}

/// Decodes `%XX` escapes; with `plus` a `+` becomes a space. Invalid escapes stay literal;
/// invalid UTF-8 is replaced.
#[must_use]
pub fn percent_decode(s: &str, plus: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hi = bytes.get(i + 1).and_then(|c| (*c as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|c| (*c as char).to_digit(16));
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if plus && b == b'+' { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=two` into decoded pairs.
#[must_use]
pub fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (percent_decode(k, true), percent_decode(v, true)),
            None => (percent_decode(p, true), String::new()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_and_query() {
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%2e%2E", false), "..");
        assert_eq!(
            parse_query("x=1&y=a%26b&z&&w=+"),
            vec![
                ("x".into(), "1".into()),
                ("y".into(), "a&b".into()),
                ("z".into(), String::new()),
                ("w".into(), " ".into())
            ]
        );
        let h = RequestHead::new(Method::Get, "/p?q=1", vec![], PeerInfo::local());
        assert_eq!((h.path.as_str(), h.query.as_deref()), ("/p", Some("q=1")));
        let h = RequestHead::new(Method::Get, "", vec![], PeerInfo::local());
        assert_eq!(h.path, "/");
    }
}
