#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use betanet_app::client::{fetch_tcp, request};
use betanet_app::{App, Method, serve_tcp_bar};
use betanet_wire::bar;

pub async fn start(app: App) -> (SocketAddr, Arc<App>) {
    let app = app.into_shared();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(serve_tcp_bar(app.clone(), listener));
    (addr, app)
}

pub async fn call(addr: SocketAddr, method: Method, uri: &str, body: &[u8]) -> bar::Response {
    fetch_tcp(addr, &request(method, uri, body.to_vec()), 64 << 20)
        .await
        .unwrap()
}

pub async fn call_h(addr: SocketAddr, uri: &str, headers: &[(&str, &str)]) -> bar::Response {
    let mut req = request(Method::Get, uri, Vec::new());
    req.headers = headers
        .iter()
        .map(|(n, v)| ((*n).to_owned(), bar::HeaderValue::Text((*v).to_owned())))
        .collect();
    fetch_tcp(addr, &req, 64 << 20).await.unwrap()
}

pub fn hdr<'a>(r: &'a bar::Response, name: &str) -> Option<&'a str> {
    match bar::header(&r.headers, name)? {
        bar::HeaderValue::Text(t) => Some(t),
        bar::HeaderValue::Bytes(_) => None,
    }
}
