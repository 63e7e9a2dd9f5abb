//! Codec micro-benchmarks: 1.2 frame header decode, STREAM payload encode/decode at 1 KiB and
//! 16 KiB, the streaming frame decoder, and QUIC varints.

// Benchmarks run on fixed, known-good inputs: a failure is a bug worth a panic.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;

use betanet_wire::frame::{FrameDecoder, FrameHeader, FrameType, Payload, StreamPayload, TAG_LEN};
use betanet_wire::ticket_header::BnTicket;
use betanet_wire::{bar, varint};
use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn header(c: &mut Criterion) {
    let hdr = FrameHeader::for_plaintext(FrameType::Stream, 7, 0, 1024)
        .unwrap()
        .encode();
    c.bench_function("frame_header_decode", |b| {
        b.iter(|| FrameHeader::decode(black_box(&hdr)).unwrap())
    });
}

fn stream(c: &mut Criterion) {
    let mut g = c.benchmark_group("stream_payload");
    for size in [1024usize, 16 * 1024] {
        let p = StreamPayload {
            fin: false,
            offset: 123_456,
            data: Bytes::from(vec![0x5a; size]),
        };
        let enc = Payload::Stream(p.clone()).to_vec().unwrap();
        let shared = Bytes::from(enc.clone());
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function(format!("encode_{size}"), |b| {
            let mut out = Vec::with_capacity(size + 16);
            b.iter(|| {
                out.clear();
                black_box(&p).encode(&mut out).unwrap();
                black_box(out.len())
            })
        });
        g.bench_function(format!("decode_copy_{size}"), |b| {
            b.iter(|| StreamPayload::decode(black_box(&enc)).unwrap())
        });
        g.bench_function(format!("decode_zero_copy_{size}"), |b| {
            b.iter(|| StreamPayload::decode_bytes(black_box(&shared)).unwrap())
        });
    }
    g.finish();
}

fn decoder(c: &mut Criterion) {
    // 16 frames of 16 KiB body fed in 4 KiB chunks.
    let mut wire = Vec::new();
    for _ in 0..16 {
        let hdr = FrameHeader::for_plaintext(FrameType::Stream, 1, 0, 16 * 1024).unwrap();
        wire.extend_from_slice(&hdr.encode());
        wire.extend(std::iter::repeat_n(0u8, 16 * 1024 + TAG_LEN));
    }
    let mut g = c.benchmark_group("frame_decoder");
    g.throughput(Throughput::Bytes(wire.len() as u64));
    g.bench_function("split_16x16KiB_4KiB_chunks", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::new();
            let mut n = 0;
            for chunk in wire.chunks(4096) {
                d.feed(chunk);
                while let Some(f) = d.next_frame().unwrap() {
                    n += f.body.len();
                }
            }
            black_box(n)
        })
    });
    g.finish();
}

fn varints(c: &mut Criterion) {
    let values = [37u64, 15_293, 494_878_333, 151_288_809_941_952_652];
    let encoded: Vec<Vec<u8>> = values.iter().map(|v| varint::encode(*v).unwrap()).collect();
    c.bench_function("varint_encode_x4", |b| {
        b.iter(|| {
            let mut buf = [0u8; 8];
            let mut n = 0;
            for v in &values {
                n += varint::encode_into(black_box(*v), &mut buf).unwrap();
            }
            black_box(n)
        })
    });
    c.bench_function("varint_decode_strict_x4", |b| {
        b.iter(|| {
            let mut s = 0u64;
            for e in &encoded {
                s = s.wrapping_add(varint::decode_strict(black_box(e)).unwrap().0);
            }
            black_box(s)
        })
    });
}

fn app(c: &mut Criterion) {
    let req = bar::Request {
        method: bar::Method::Put,
        uri: "/objects/42".into(),
        headers: vec![
            (
                "content-type".into(),
                bar::HeaderValue::Text("application/octet-stream".into()),
            ),
            ("x-tag".into(), bar::HeaderValue::Bytes(vec![7; 16])),
        ],
        body: vec![0xab; 1024],
    };
    let enc = req.encode().unwrap();
    c.bench_function("bar_request_encode_1KiB", |b| {
        b.iter(|| black_box(&req).encode().unwrap())
    });
    c.bench_function("bar_request_decode_1KiB", |b| {
        b.iter(|| bar::Request::decode(black_box(&enc)).unwrap())
    });
    let t = BnTicket {
        tok: [0x5c; 120],
        ctx: Some("r12".into()),
    };
    let v = t.to_header_value().unwrap();
    c.bench_function("bn_ticket_parse", |b| {
        b.iter(|| BnTicket::parse(black_box(v.as_bytes())).unwrap())
    });
}

criterion_group!(benches, header, stream, decoder, varints, app);
criterion_main!(benches);
