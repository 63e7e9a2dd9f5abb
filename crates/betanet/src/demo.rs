//! `betanet demo`: a complete local exchange on loopback with what exists so far.
//!
//! Two nodes with fresh Ed25519 identities meet over a real TCP socket on 127.0.0.1 (`tcp12`
//! carriage): the inner Noise XK handshake with the ML-KEM-768 hybrid, then HTX 1.2 STREAM
//! frames carrying the requested amount of data with a KEY_UPDATE every 1024 frames, and the
//! responder answers with the SHA-256 of everything it received, which the initiator checks.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use betanet_crypto::handshake::{Established, HandshakeConfig, Initiator, PqMode, Responder};
use betanet_crypto::hash::Sha256;
use betanet_crypto::identity::{NodeId, PeerId};
use betanet_crypto::schedule::{FrameOpener, FrameSealer};
use betanet_crypto::sign::SigningKey;
use betanet_wire::frame::{FrameHeader, FrameType, HEADER_LEN, MAX_STREAM_DATA, StreamPayload};
use bytes::Bytes;

const REKEY_EVERY: u64 = 1024;

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn read_prefixed(r: &mut impl Read) -> Result<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let mut msg = vec![0u8; usize::from(u16::from_be_bytes(len))];
    r.read_exact(&mut msg)?;
    Ok(msg)
}

/// Seals and writes one frame.
fn write_frame(
    w: &mut impl Write,
    tx: &mut FrameSealer,
    ty: FrameType,
    stream: u32,
    plaintext: &mut [u8],
) -> Result<()> {
    let header = FrameHeader::for_plaintext(ty, stream, 0, plaintext.len())?;
    let tag = tx.seal(&header.aad(), plaintext)?;
    w.write_all(&header.encode())?;
    w.write_all(plaintext)?;
    w.write_all(&tag)?;
    if ty == FrameType::KeyUpdate {
        tx.key_update();
    }
    Ok(())
}

/// Reads and opens one frame; returns its header and plaintext.
fn read_frame(r: &mut impl Read, rx: &mut FrameOpener) -> Result<(FrameHeader, Vec<u8>)> {
    let mut h = [0u8; HEADER_LEN];
    r.read_exact(&mut h)?;
    let header = FrameHeader::decode(&h)?;
    let mut body = vec![0u8; header.body_len()];
    r.read_exact(&mut body)?;
    let n = rx.open(&header.aad(), &mut body)?.len;
    body.truncate(n);
    if header.frame_type() == FrameType::KeyUpdate {
        rx.key_update();
    }
    Ok((header, body))
}

fn serve(listener: TcpListener, key: SigningKey) -> Result<Established> {
    let (sock, _) = listener.accept()?;
    sock.set_nodelay(true)?;
    let mut r = BufReader::with_capacity(256 << 10, sock.try_clone()?);
    let mut w = BufWriter::with_capacity(256 << 10, sock);
    let m1 = read_prefixed(&mut r)?;
    let (st, m2) = Responder::new(HandshakeConfig::new(key, now_unix()))?
        .read_msg1(&m1, &mut rand_core::OsRng)?;
    w.write_all(&m2)?;
    w.flush()?;
    let est = st.read_msg3(&read_prefixed(&mut r)?)?;
    let (mut tx, mut rx) = est.schedule.frame_keys(est.role);
    let mut hasher = Sha256::new();
    let mut expected = 0u64;
    loop {
        let (header, pt) = read_frame(&mut r, &mut rx)?;
        if header.frame_type() != FrameType::Stream {
            continue;
        }
        let p = StreamPayload::decode(&pt)?;
        if p.offset != expected {
            bail!("stream offset {} where {} was expected", p.offset, expected);
        }
        expected += p.data.len() as u64;
        hasher.update(&p.data);
        if p.fin {
            break;
        }
    }
    let mut reply = Vec::new();
    StreamPayload {
        fin: true,
        offset: 0,
        data: Bytes::copy_from_slice(&hasher.finish()),
    }
    .encode(&mut reply)?;
    write_frame(&mut w, &mut tx, FrameType::Stream, 1, &mut reply)?;
    w.flush()?;
    Ok(est)
}

/// Runs the demo.
pub fn run(mib: u64, classic: bool) -> Result<()> {
    let server_key = SigningKey::generate(&mut rand_core::OsRng);
    let client_key = SigningKey::generate(&mut rand_core::OsRng);
    let server_pub = server_key.verifying_key();
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a loopback port")?;
    let addr = listener.local_addr()?;
    println!("Betanet demo — everything below runs on this machine over 127.0.0.1");
    println!();
    println!(
        "  responder   {}  {}",
        NodeId::from_ed25519(&server_pub).name(),
        addr
    );
    println!(
        "              peer id {}",
        PeerId::from_ed25519(&server_pub)
    );
    println!(
        "  initiator   {}",
        NodeId::from_ed25519(&client_key.verifying_key()).name()
    );
    let server = thread::spawn(move || serve(listener, server_key));

    let t0 = Instant::now();
    let sock = TcpStream::connect(addr)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut r = BufReader::with_capacity(256 << 10, sock.try_clone()?);
    let mut w = BufWriter::with_capacity(256 << 10, sock);
    let mut cfg = HandshakeConfig::new(client_key, now_unix());
    if classic {
        cfg.pq = PqMode::Classic;
    }
    let (st, m1) = Initiator::start(cfg, &server_pub, &mut rand_core::OsRng)?;
    w.write_all(&m1)?;
    w.flush()?;
    let (est, m3) = st.read_msg2(&read_prefixed(&mut r)?)?;
    w.write_all(&m3)?;
    w.flush()?;
    let hs = t0.elapsed();
    println!();
    println!(
        "  handshake   Noise XK{} in {:.2} ms, L2 {}",
        if est.post_quantum {
            " + ML-KEM-768"
        } else {
            " (classic)"
        },
        hs.as_secs_f64() * 1e3,
        est.selection.l2
    );
    println!(
        "              transcript {}",
        hex::encode(&est.handshake_hash[..8])
    );

    let (mut tx, mut rx) = est.schedule.frame_keys(est.role);
    let total = mib << 20;
    let chunk = vec![0x5au8; MAX_STREAM_DATA.min(16 << 10)];
    let mut sent = 0u64;
    let mut hasher = Sha256::new();
    let mut rekeys = 0u32;
    let mut plaintext = Vec::with_capacity(chunk.len() + 16);
    let t1 = Instant::now();
    loop {
        let n = chunk.len().min((total - sent) as usize);
        let data = chunk.get(..n).unwrap_or_default();
        hasher.update(data);
        plaintext.clear();
        let fin = sent + n as u64 == total;
        StreamPayload {
            fin,
            offset: sent,
            data: Bytes::copy_from_slice(data),
        }
        .encode(&mut plaintext)?;
        write_frame(&mut w, &mut tx, FrameType::Stream, 1, &mut plaintext)?;
        sent += n as u64;
        if tx.frames_under_key() >= REKEY_EVERY && !fin {
            write_frame(&mut w, &mut tx, FrameType::KeyUpdate, 0, &mut [])?;
            rekeys += 1;
        }
        if fin {
            break;
        }
    }
    w.flush()?;
    let (_, reply) = read_frame(&mut r, &mut rx)?;
    let elapsed = t1.elapsed();
    let digest = StreamPayload::decode(&reply)?;
    let ours = hasher.finish();
    let server_est = server
        .join()
        .map_err(|_| anyhow::anyhow!("responder thread panicked"))??;
    if digest.data.as_ref() != ours {
        bail!("the responder's SHA-256 differs from ours: data was corrupted");
    }
    println!(
        "  transfer    {} MiB in {:.0} ms = {:.0} MiB/s through HTX 1.2 frames, {} key updates",
        mib,
        elapsed.as_secs_f64() * 1e3,
        mib as f64 / elapsed.as_secs_f64().max(1e-9),
        rekeys
    );
    println!(
        "  integrity   SHA-256 {} matches on both ends",
        hex::encode(&ours[..8])
    );
    println!(
        "  identities  responder saw initiator {}",
        PeerId::from_ed25519(&server_est.peer_identity)
    );
    println!();
    println!("More roles (site server, gateway, mixnodes, proxy) join this demo as they land.");
    Ok(())
}
