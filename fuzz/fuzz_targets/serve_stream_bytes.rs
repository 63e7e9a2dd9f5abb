//! Raw bytes as a whole inbound BAR stream into `serve_stream`: it must answer or close,
//! never panic.
#![no_main]

use betanet_app::{App, PeerInfo, Request, serve_stream};
use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fuzz_target!(|data: &[u8]| {
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
        let (mut client, server) = tokio::io::duplex(1 << 16);
        let input = data.to_vec();
        let writer = async move {
            let _ = client.write_all(&input).await;
            let _ = client.shutdown().await;
            let mut out = Vec::new();
            let _ = client.read_to_end(&mut out).await;
        };
        let _ = tokio::join!(serve_stream(app, server, PeerInfo::local()), writer);
    });
});
