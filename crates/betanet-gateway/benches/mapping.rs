#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]
//! Hot paths without I/O: classifying a connection's first bytes and mapping an HTTP request
//! head to an encoded, framed BAR head (and a BAR response head back to HTTP).

use betanet_gateway::barmap::{request_head, request_head_framed, response_head};
use betanet_gateway::classify_first_bytes;
use betanet_wire::bar;
use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

fn benches(c: &mut Criterion) {
    let first = b"GET /account/orders?page=2 HTTP/1.1\r\nHost: bakery.example\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36\r\nAccept: text/html,application/xhtml+xml\r\nAccept-Language: en-US,en;q=0.9\r\nCookie: session=abc; __Host-bn1=AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4_QEFCQ0RFRkdISUpLTE1OT1BRUlNUVVZXWFlaW1xdXl9gYWJjZGVmZ2hpamtsbW5vcHFycw\r\n\r\n";
    c.bench_function("classify_first_bytes (browser GET, 500 B)", |b| {
        b.iter(|| classify_first_bytes(black_box(first), 4096))
    });
    let req = http::Request::builder()
        .uri("/account/orders?page=2&bn1=zzz")
        .header("host", "bakery.example")
        .header("user-agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0")
        .header("accept", "text/html")
        .header("accept-language", "en-US,en;q=0.9")
        .header("cookie", "session=abc; __Host-bn1=xyz")
        .header("connection", "keep-alive")
        .body(())
        .unwrap();
    c.bench_function(
        "HTTP head -> framed BAR head (direct encoder, hot path)",
        |b| {
            b.iter(|| {
                request_head_framed(black_box(req.method()), req.uri(), req.headers(), true, "/")
                    .unwrap()
            })
        },
    );
    c.bench_function(
        "HTTP head -> framed BAR head (bar::Request + cbor::Value)",
        |b| {
            b.iter(|| {
                let h = request_head(req.method(), req.uri(), req.headers(), true, "/");
                bar::stream::frame_head(&h.encode().unwrap()).unwrap()
            })
        },
    );
    let resp = bar::Response {
        status: 200,
        headers: vec![
            (
                "content-type".into(),
                bar::HeaderValue::Text("text/html; charset=utf-8".into()),
            ),
            (
                "content-length".into(),
                bar::HeaderValue::Text("5120".into()),
            ),
            (
                "cache-control".into(),
                bar::HeaderValue::Text("no-store".into()),
            ),
            (
                "set-cookie".into(),
                bar::HeaderValue::Text("s=1; Path=/".into()),
            ),
        ],
        body: vec![],
    };
    let enc = resp.encode().unwrap();
    c.bench_function("BAR response head -> HTTP head", |b| {
        b.iter(|| response_head(&bar::Response::decode(black_box(&enc)).unwrap()))
    });
}

criterion_group!(g, benches);
criterion_main!(g);
