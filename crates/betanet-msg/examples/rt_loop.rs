//! Profiling aid: a plain echo server and client on one current-thread runtime doing `N`
//! sequential round trips over loopback TCP; prints round trips per second.
//!
//! ```text
//! cargo build -p betanet-msg --profile bench --example rt_loop
//! target/release/examples/rt_loop 200000            # loop spawned as a task (default)
//! target/release/examples/rt_loop 200000 block_on   # loop polled directly by block_on
//! target/release/examples/rt_loop 200000 spawn secure   # secure profile (MAC + AEAD + ids)
//! strace -c -f target/release/examples/rt_loop 20000   # syscalls per round trip
//! perf record -g target/release/examples/rt_loop       # where the time goes
//! ```
//!
//! With the loop in a spawned task a round trip costs 2 `sendto`, 2 `recvfrom` and 2
//! `epoll_wait`; polled by `block_on` directly it costs one extra `epoll_wait(0)` (tokio's
//! current-thread scheduler polls the I/O driver before re-polling the main future).

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::time::Instant;

use betanet_msg::{Content, Message, MessageType, NodeBuilder};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let spawned = std::env::args().nth(2).as_deref() != Some("block_on");
    let secure = std::env::args().nth(3).as_deref() == Some("secure");
    let builder = move || {
        if secure {
            NodeBuilder::secure(b"rt_loop")
        } else {
            NodeBuilder::compat()
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let s = builder().build();
        s.on(
            (MessageType::REQUEST_URI, "echo"),
            |Content(c): Content| async move {
                Message::new(MessageType::RESPOND_URI, &b"echo"[..], c)
            },
        );
        let addr = s.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let client = builder().build();
        let conn = client.connect(addr).await.unwrap();
        let work = async move {
            let t = Instant::now();
            for _ in 0..n {
                let r = client
                    .request(&conn, MessageType::REQUEST_URI, b"echo", &[0u8; 32], None)
                    .await
                    .unwrap();
                assert_eq!(r.body.content.len(), 32);
            }
            println!(
                "{:.0} rt/s (spawned task: {spawned})",
                f64::from(n) / t.elapsed().as_secs_f64()
            );
        };
        if spawned {
            tokio::spawn(work).await.unwrap()
        } else {
            work.await
        }
        s.shutdown(std::time::Duration::from_secs(1)).await;
    });
}
