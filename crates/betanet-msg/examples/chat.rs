//! End-to-end encrypted chat over betanet-msg.
//!
//! The relay server authenticates clients with the secure profile (MAC + AEAD per hop) but
//! never sees message text: clients add an inner ChaCha20-Poly1305 layer keyed by the room
//! secret (`AeadCipher::inner`), which the relay forwards untouched.
//!
//! ```text
//! cargo run -p betanet-msg --example chat                          # in-process demo
//! cargo run -p betanet-msg --example chat -- server 127.0.0.1:9000 HOPSECRET
//! cargo run -p betanet-msg --example chat -- client 127.0.0.1:9000 HOPSECRET ROOMSECRET alice
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use betanet_msg::secure::AeadCipher;
use betanet_msg::{Content, Message, MessageType, Node, NodeBuilder, Plugins, Request};
use tokio::io::AsyncBufReadExt;

const ROOM: &str = "lobby";
const E2E_FIELD: &str = "e2e";

fn relay(hop_secret: &[u8]) -> Node {
    let n = NodeBuilder::secure(hop_secret).build();
    n.on(
        (MessageType::SUBSCRIBE_URI, ROOM),
        |r: Request| async move {
            r.node.subscribe(&r.msg.body.uri, &r.conn);
            Message::new(MessageType::OK, r.msg.body.uri.clone(), &b""[..])
        },
    );
    n.on((MessageType::PUBLISH_URI, ROOM), |r: Request| async move {
        // Forward ciphertext and its e2e salt; the relay cannot decrypt either.
        let mut m = Message::new(
            MessageType::NOTIFY_URI,
            r.msg.body.uri.clone(),
            r.msg.body.content.clone(),
        );
        if let Some(salt) = r.msg.auth.get_bytes(E2E_FIELD) {
            m.auth.set_bytes(E2E_FIELD, salt.to_vec());
        }
        let _ = r.node.notify(ROOM.as_bytes(), m).await;
    });
    n
}

struct Client {
    node: Node,
    conn: betanet_msg::Conn,
    e2e: Plugins,
    name: String,
}

async fn client(
    addr: SocketAddr,
    hop: &[u8],
    room: &[u8],
    name: &str,
    inbox: tokio::sync::mpsc::Sender<String>,
) -> Client {
    let node = NodeBuilder::secure(hop).build();
    let e2e = Plugins::none().with_cipher(AeadCipher::inner(room, E2E_FIELD));
    node.on_with(
        (MessageType::NOTIFY_URI, ROOM),
        e2e.clone(),
        move |Content(c): Content| {
            let inbox = inbox.clone();
            async move {
                let _ = inbox.send(String::from_utf8_lossy(&c).into_owned()).await;
            }
        },
    );
    let conn = node.connect(addr).await.unwrap();
    node.request(
        &conn,
        MessageType::SUBSCRIBE_URI,
        ROOM.as_bytes(),
        b"",
        None,
    )
    .await
    .unwrap();
    Client {
        node,
        conn,
        e2e,
        name: name.to_owned(),
    }
}

impl Client {
    async fn say(&self, text: &str) {
        let line = format!("{}: {}", self.name, text);
        let m = Message::new(MessageType::PUBLISH_URI, ROOM.as_bytes(), line.into_bytes());
        self.node.send_with(&self.conn, m, &self.e2e).await.unwrap();
    }
}

async fn demo() {
    let server = relay(b"hop secret");
    let addr = server.listen("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let (atx, mut arx) = tokio::sync::mpsc::channel(8);
    let (btx, mut brx) = tokio::sync::mpsc::channel(8);
    let alice = client(addr, b"hop secret", b"room secret", "alice", atx).await;
    let bob = client(addr, b"hop secret", b"room secret", "bob", btx).await;
    let t = std::time::Duration::from_secs(5);
    alice.say("hi bob, this is end-to-end encrypted").await;
    println!(
        "bob   got: {}",
        tokio::time::timeout(t, brx.recv()).await.unwrap().unwrap()
    );
    println!(
        "alice got: {}",
        tokio::time::timeout(t, arx.recv()).await.unwrap().unwrap()
    );
    bob.say("hi alice").await;
    println!(
        "alice got: {}",
        tokio::time::timeout(t, arx.recv()).await.unwrap().unwrap()
    );
    println!(
        "bob   got: {}",
        tokio::time::timeout(t, brx.recv()).await.unwrap().unwrap()
    );
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => demo().await,
        ["server", addr, hop] => {
            let n = relay(hop.as_bytes());
            let a = n
                .listen(addr.parse().expect("address like 127.0.0.1:9000"))
                .await
                .unwrap();
            println!("relay listening on {a} (Ctrl-C stops it gracefully)");
            let _ = tokio::signal::ctrl_c().await;
            let st = n.shutdown(std::time::Duration::from_secs(5)).await;
            println!(
                "relay stopped: {} connections closed, {} cut",
                st.closed, st.forced
            );
        }
        ["client", addr, hop, room, name] => {
            let (tx, mut rx) = tokio::sync::mpsc::channel(64);
            let c = client(
                addr.parse().expect("address like 127.0.0.1:9000"),
                hop.as_bytes(),
                room.as_bytes(),
                name,
                tx,
            )
            .await;
            tokio::spawn(async move {
                while let Some(l) = rx.recv().await {
                    println!("{l}");
                }
            });
            let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                c.say(&l).await;
            }
        }
        _ => eprintln!(
            "usage: chat | chat server ADDR HOPSECRET | chat client ADDR HOPSECRET ROOMSECRET NAME"
        ),
    }
}
