"""netaio server for betanet-msg's client interop test. Prints "PORT <n>" when listening.

usage: interop_server.py MODE   (MODE: plain | hmac | cipher)
"""
import asyncio, logging, sys
from netaio import TCPServer, MessageType, Message, Body, HMACAuthPlugin, Sha256StreamCipherPlugin

logging.disable(logging.CRITICAL)
mode = sys.argv[1]
a = HMACAuthPlugin({"secret": "test"}) if mode in ("hmac", "cipher") else None
c = Sha256StreamCipherPlugin({"key": "test"}) if mode == "cipher" else None
server = TCPServer(port=0, interface="127.0.0.1", auth_plugin=a, cipher_plugin=c)

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
    print("PORT", server.server.sockets[0].getsockname()[1], flush=True)
    # exit when stdin closes (the Rust test ends)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)
    task.cancel()

asyncio.run(main())
