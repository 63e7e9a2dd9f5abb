"""netaio server for betanet-msg's client interop test. Prints "PORT <n>" when listening.

usage: interop_server.py MODE [PORT]   (MODE: plain | hmac | cipher | x25519; PORT default 0)
x25519: peer management on; handler (REQUEST_URI, b'box') has an inner X25519CipherPlugin
(seed 0x01 * 32) and echoes the decrypted content.
"""
import asyncio, logging, sys
from netaio import TCPServer, MessageType, Message, Body, HMACAuthPlugin, Sha256StreamCipherPlugin

logging.disable(logging.CRITICAL)
mode = sys.argv[1]
a = HMACAuthPlugin({"secret": "test"}) if mode in ("hmac", "cipher") else None
c = Sha256StreamCipherPlugin({"key": "test"}) if mode == "cipher" else None
kw = {}
if mode == "x25519":
    from netaio import DefaultPeerPlugin, Peer
    from netaio.asymmetric import X25519CipherPlugin
    x = X25519CipherPlugin({"seed": bytes([1]) * 32})
    kw = dict(
        local_peer=Peer(addrs=set(), id=bytes([1]) * 16,
                        data=DefaultPeerPlugin().encode_data({"pubkey": bytes(x.pubk)})),
        peer_plugin=DefaultPeerPlugin(),
    )
port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
server = TCPServer(port=port, interface="127.0.0.1", auth_plugin=a, cipher_plugin=c, **kw)
if mode == "x25519":
    @server.on((MessageType.REQUEST_URI, b'box'), cipher_plugin=x)
    async def box(msg, writer):
        return Message.prepare(Body.prepare(b'netaio saw: ' + msg.body.content, uri=b'box'), MessageType.RESPOND_URI)

@server.on((MessageType.REQUEST_URI, b'echo'))
async def echo(msg, writer):
    return Message.prepare(Body.prepare(msg.body.content, uri=b'echo'), MessageType.RESPOND_URI)

@server.on(MessageType.CREATE_URI)
async def create(msg, writer):
    return Message.prepare(Body.prepare(b'Resource saved.', uri=msg.body.uri), MessageType.OK)

@server.on(MessageType.SUBSCRIBE_URI)
async def sub(msg, writer):
    server.subscribe(msg.body.uri, writer)
    return Message.prepare(Body.prepare(b'', uri=msg.body.uri), MessageType.CONFIRM_SUBSCRIBE)

@server.on(MessageType.PUBLISH_URI)
async def pub(msg, writer):
    await server.notify(msg.body.uri, Message.prepare(Body.prepare(msg.body.content, uri=msg.body.uri), MessageType.NOTIFY_URI))

async def main():
    task = asyncio.create_task(server.start())
    for _ in range(200):
        if getattr(server, "server", None) is not None:
            break
        await asyncio.sleep(0.01)
    if mode == "x25519":
        await server.manage_peers_automatically()
    print("PORT", server.server.sockets[0].getsockname()[1], flush=True)
    # exit when stdin closes (the Rust test ends)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    task.cancel()

asyncio.run(main())
