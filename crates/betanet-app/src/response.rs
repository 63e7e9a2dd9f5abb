//! Responses and the helpers handlers build them with (`json`, `text`, `html`, `redirect`,
//! `error`).

use betanet_wire::bar::status;
use bytes::Bytes;
use serde::Serialize;

use crate::body::Body;
use crate::error::AppError;

/// A response: status, lowercase headers (unique names) and a body.
#[derive(Debug)]
pub struct Response {
    /// BAR status code.
    pub status: u16,
    /// Headers; names are lowercase and unique (use [`Response::set_header`]).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Body,
}

impl Response {
    /// A response with `status`, no headers and `body`.
    #[must_use]
    pub fn new(status: u16, body: impl Into<Body>) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// 200 with `text/plain; charset=utf-8`.
    #[must_use]
    pub fn text(s: impl Into<String>) -> Self {
        Response::new(status::OK, s.into()).with_header("content-type", "text/plain; charset=utf-8")
    }

    /// 200 with `text/html; charset=utf-8`.
    #[must_use]
    pub fn html(s: impl Into<String>) -> Self {
        Response::new(status::OK, s.into()).with_header("content-type", "text/html; charset=utf-8")
    }

    /// 200 with `application/json`; a value that cannot be serialized gives a 500.
    #[must_use]
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(v) => Response::new(status::OK, v).with_header("content-type", "application/json"),
            Err(_) => Response::error(status::INTERNAL_ERROR, "response serialization failed"),
        }
    }

    /// A redirect (302) to `location`.
    #[must_use]
    pub fn redirect(location: impl Into<String>) -> Self {
        Response::redirect_with(302, location)
    }

    /// A redirect with an explicit status (301, 302, 303, 307, 308).
    #[must_use]
    pub fn redirect_with(status: u16, location: impl Into<String>) -> Self {
        Response::new(status, Body::Empty).with_header("location", location.into())
    }

    /// An error response: `{"error": msg, "status": status}` as JSON.
    #[must_use]
    pub fn error(status: u16, msg: impl AsRef<str>) -> Self {
        let v = serde_json::json!({ "status": status, "error": msg.as_ref() });
        let mut r = Response::json(&v);
        r.status = status;
        r
    }

    /// 201 Created with `location` (what a POST returns per SPEC §10).
    #[must_use]
    pub fn created(location: impl Into<String>, body: impl Into<Body>) -> Self {
        Response::new(status::CREATED, body).with_header("location", location.into())
    }

    /// A streamed or in-memory body with an explicit content type.
    #[must_use]
    pub fn with_body(content_type: &str, body: impl Into<Body>) -> Self {
        Response::new(status::OK, body).with_header("content-type", content_type)
    }

    /// Sets the status.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Sets a header (builder form).
    #[must_use]
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.set_header(name, value);
        self
    }

    /// Sets header `name` (lowercased), replacing any previous value.
    pub fn set_header(&mut self, name: &str, value: impl Into<String>) {
        let name = name.to_ascii_lowercase();
        let value = value.into();
        if let Some(slot) = self.headers.iter_mut().find(|(n, _)| *n == name) {
            slot.1 = value;
        } else {
            self.headers.push((name, value));
        }
    }

    /// The value of header `name` (lowercase).
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The in-memory body bytes (`None` for streams and files).
    #[must_use]
    pub fn body_bytes(&self) -> Option<Bytes> {
        match &self.body {
            Body::Empty => Some(Bytes::new()),
            Body::Bytes(b) => Some(b.clone()),
            _ => None,
        }
    }
}

/// Anything a handler may return.
pub trait IntoResponse {
    /// Converts into a [`Response`].
    fn into_response(self) -> Response;
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        Response::error(self.status(), self.public_message())
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(v) => v.into_response(),
            Err(e) => e.into_response(),
        }
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        Response::text(self)
    }
}

impl IntoResponse for (u16, String) {
    fn into_response(self) -> Response {
        Response::text(self.1).with_status(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_set_status_type_and_body() {
        let r = Response::text("hi");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(r.body_bytes().unwrap(), Bytes::from_static(b"hi"));

        let r = Response::json(&serde_json::json!({"a": 1}));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body_bytes().unwrap(), Bytes::from_static(b"{\"a\":1}"));

        let r = Response::redirect("/x");
        assert_eq!((r.status, r.header("location")), (302, Some("/x")));

        let r = Response::error(404, "missing");
        assert_eq!(r.status, 404);
        let v: serde_json::Value = serde_json::from_slice(&r.body_bytes().unwrap()).unwrap();
        assert_eq!(v["error"], "missing");

        let mut r = Response::html("<b>");
        r.set_header("X-A", "1");
        r.set_header("x-a", "2");
        assert_eq!(r.header("x-a"), Some("2"));
        assert_eq!(r.headers.iter().filter(|(n, _)| n == "x-a").count(), 1);

        let r = AppError::http(409, "taken").into_response();
        assert_eq!(r.status, 409);
        let r: Response = Err::<Response, AppError>(AppError::Truncated).into_response();
        assert_eq!(r.status, 400);
    }
}
