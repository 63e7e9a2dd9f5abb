//! Structure-aware: an arbitrary BAR request → encode → serve over a duplex → decode the
//! response; the echo route must return the body unchanged and unknown methods get 400.
#![no_main]

use arbitrary::Arbitrary;
use betanet_app::client::{fetch, request};
use betanet_app::{App, Method, PeerInfo, Request, serve_stream};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    method: u8,
    other: String,
    body: Vec<u8>,
}

fuzz_target!(|inp: Input| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut app = App::new();
        app.post("/echo", |r: Request| async move {
            betanet_app::Response::new(200, r.body.clone())
        })
        .unwrap();
        let app = app.into_shared();
        let method = match inp.method % 3 {
            0 => Method::Post,
            1 => Method::parse(&inp.other),
            _ => Method::Get,
        };
        let req = request(method.clone(), "/echo", inp.body.clone());
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let (_, resp) = tokio::join!(
            serve_stream(app, server, PeerInfo::local()),
            fetch(&mut client, &req, 64 << 20)
        );
        let resp = resp.unwrap();
        match method {
            Method::Post => {
                assert_eq!(resp.status, 200);
                assert_eq!(resp.body, inp.body);
            }
            Method::Unknown(_) => assert_eq!(resp.status, 400),
            _ => assert!(resp.status == 400 || resp.status == 404 || resp.status == 200),
        }
    });
});
