#!/usr/bin/env python3
"""Independent implementation of the SPEC §4.2 access-ticket formula (Python `cryptography`).

Prints the vectors in `ticket_v1.txt`; `tests/vectors.rs` checks the Rust code against that
file and, when python3 with `cryptography` is available, that this script still prints it.

    salt         = SHA-256("betanet-ticket-v1" || ticketKeyID8 || u64be(hour))
    accessTicket = HKDF-SHA256(IKM = X25519(cliPriv, ticketPub), salt, info = "", 32)
    payload      = 0x01 || cliPub32 || ticketKeyID8 || nonce32 || accessTicket32 || pad
"""
import base64
import hashlib
import struct

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

RAW = serialization.Encoding.Raw
PUB = serialization.PublicFormat.Raw


def vector(ticket_priv, cli_priv, key_id, nonce, pad, hour):
    tp = X25519PrivateKey.from_private_bytes(ticket_priv)
    cp = X25519PrivateKey.from_private_bytes(cli_priv)
    ticket_pub = tp.public_key().public_bytes(RAW, PUB)
    cli_pub = cp.public_key().public_bytes(RAW, PUB)
    shared = cp.exchange(tp.public_key())
    assert shared == tp.exchange(cp.public_key())
    salt = hashlib.sha256(b"betanet-ticket-v1" + key_id + struct.pack(">Q", hour)).digest()
    at = HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=b"").derive(shared)
    payload = b"\x01" + cli_pub + key_id + nonce + at + pad
    b64 = base64.urlsafe_b64encode(payload).rstrip(b"=").decode()
    return [
        ("ticket_priv", ticket_priv.hex()),
        ("ticket_pub", ticket_pub.hex()),
        ("ticket_key_id", key_id.hex()),
        ("cli_priv", cli_priv.hex()),
        ("cli_pub", cli_pub.hex()),
        ("nonce", nonce.hex()),
        ("pad", pad.hex()),
        ("hour", str(hour)),
        ("salt", salt.hex()),
        ("access_ticket", at.hex()),
        ("payload", payload.hex()),
        ("payload_b64", b64),
    ]


def main():
    vs = [
        vector(bytes([0x11] * 32), bytes([0x22] * 32), bytes(range(8)), bytes([0x33] * 32),
               bytes(range(0x40, 0x40 + 24)), 493827),
        vector(hashlib.sha256(b"ticket key 2").digest(), hashlib.sha256(b"client 2").digest(),
               bytes.fromhex("f0e1d2c3b4a59687"), hashlib.sha256(b"nonce 2").digest(),
               hashlib.sha512(b"pad 2").digest(), 0),
    ]
    out = []
    for v in vs:
        out.extend(f"{k}={val}" for k, val in v)
        out.append("")
    print("\n".join(out), end="")


if __name__ == "__main__":
    main()
