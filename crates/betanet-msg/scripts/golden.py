"""Print golden vectors (hex) produced by real netaio 0.0.9 for betanet-msg's tests.

Run with the venv from netaio-venv.sh: target/netaio-venv/bin/python scripts/golden.py
"""
import netaio, netaio.cipher, netaio.crypto
from netaio import Body, Message, MessageType, HMACAuthPlugin, Sha256StreamCipherPlugin, AuthFields, Peer, DefaultPeerPlugin
from nacl.public import Box, PrivateKey, PublicKey
from nacl.signing import SigningKey

def out(name, b):
    print(f"{name} {b.hex()}")

# 1. plain frame
m = Message.prepare(Body.prepare(b'hello', uri=b'echo'), MessageType.REQUEST_URI)
out("plain_request", m.encode())
# 2. HMAC with fixed nonce and ts
auth = HMACAuthPlugin({"secret": "test"})
m = Message.prepare(Body.prepare(b'hello', uri=b'echo'), MessageType.REQUEST_URI,
                    AuthFields({"nonce": bytes(range(16)), "ts": (1700000000).to_bytes(4, 'big')}))
auth.make(m.auth_data, m.body)
out("hmac_request", m.encode())
# 3. stream cipher, encrypt_uri=False, fixed iv
netaio.crypto.urandom = lambda n: bytes([0xAA]) * n
c = Sha256StreamCipherPlugin({"key": "test", "encrypt_uri": False})
m = Message.prepare(Body.prepare(b'secret content that is longer than thirty-two bytes', uri=b'echo'), MessageType.REQUEST_URI)
out("cipher_inner", c.encrypt(m).encode())
# 4. stream cipher, encrypt_uri=True, fixed iv and split point 3
netaio.cipher.randint = lambda a, b: 3
c = Sha256StreamCipherPlugin({"key": "test"})
m = Message.prepare(Body.prepare(b'hello', uri=b'echo'), MessageType.REQUEST_URI)
e = c.encrypt(m)
out("cipher_outer", e.encode())
# 5. outer cipher then HMAC (node order), fixed everything
a = HMACAuthPlugin({"secret": "test"})
e.auth_data.fields["nonce"] = bytes(16)
e.auth_data.fields["ts"] = (1700000001).to_bytes(4, 'big')
a.make(e.auth_data, e.body)
out("cipher_hmac", e.encode())
# 6. X25519: keys from seeds, box with fixed nonce
sa = SigningKey(bytes([1]) * 32); sb = SigningKey(bytes([2]) * 32)
ka = sa.to_curve25519_private_key(); kb = sb.to_curve25519_private_key()
out("x25519_pub_a", bytes(ka.public_key))
out("x25519_pub_b", bytes(kb.public_key))
out("x25519_box_a_to_b", bytes(Box(ka, kb.public_key).encrypt(b'hello bob', bytes([7]) * 24)))
# 7. peer pack
p = Peer(addrs=set(), id=b'\x01' * 16, data=DefaultPeerPlugin().encode_data({"pubkey": bytes(ka.public_key)}))
out("peer_packed", DefaultPeerPlugin().pack(p))
# 8. error messages
out("auth_error", auth.error().encode())
out("not_found", netaio.common.make_not_found_msg().encode())
out("invalid", netaio.common.make_error_msg("invalid message").encode())
