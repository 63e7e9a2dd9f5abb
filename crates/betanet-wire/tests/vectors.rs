//! `testdata/frames_v12.txt`: decode, re-encode, compare bytes; and the listed rejections.

#![allow(clippy::unwrap_used)] // test crate

use betanet_wire::frame::{FrameHeader, FrameType, Payload};

fn hex_field(s: &str) -> Vec<u8> {
    if s == "-" {
        Vec::new()
    } else {
        hex::decode(s).unwrap()
    }
}

fn ty(s: &str) -> FrameType {
    FrameType::from_u8(u8::from_str_radix(s.trim_start_matches("0x"), 16).unwrap()).unwrap()
}

#[test]
fn frames_v12() {
    let text = include_str!("../testdata/frames_v12.txt");
    let (mut ok, mut bad) = (0, 0);
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f[0] {
            "ok" => {
                let (t, sid, aad) = (
                    ty(f[1]),
                    f[2].parse::<u32>().unwrap(),
                    f[3].parse::<u16>().unwrap(),
                );
                let pt = hex_field(f[4]);
                let hdr_bytes = hex_field(&format!("{}{}", f[5], f[6]));
                let p = Payload::decode(t, &pt).unwrap();
                assert_eq!(p.to_vec().unwrap(), pt, "{line}");
                let hdr = p.header(sid, aad).unwrap();
                assert_eq!(hdr.encode().to_vec(), hdr_bytes, "{line}");
                assert_eq!(FrameHeader::decode(&hdr_bytes).unwrap(), hdr, "{line}");
                ok += 1;
            }
            "bad-header" => {
                let e = FrameHeader::decode(&hex_field(&format!("{}{}", f[1], f[2]))).unwrap_err();
                assert_eq!(
                    e.close_code().to_u16(),
                    f[3].parse::<u16>().unwrap(),
                    "{line}"
                );
                bad += 1;
            }
            "bad-payload" => {
                let e = Payload::decode(ty(f[1]), &hex_field(f[2])).unwrap_err();
                assert_eq!(
                    e.close_code().to_u16(),
                    f[3].parse::<u16>().unwrap(),
                    "{line}"
                );
                bad += 1;
            }
            other => panic!("unknown vector kind {other}"),
        }
    }
    assert_eq!((ok, bad), (10, 11));
}
