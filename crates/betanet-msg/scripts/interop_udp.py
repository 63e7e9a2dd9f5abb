"""netaio UDPNode for betanet-msg's UDP interop test.

usage: interop_udp.py RUST_PORT MODE   (MODE: plain | hmac)
Binds 127.0.0.1:0, prints "PORT <n>", answers REQUEST_URI with RESPOND_URI (echo), sends one
REQUEST_URI (uri b'py', content b'from netaio') to the Rust node, prints the reply as JSON,
then waits for stdin to close.
"""
import asyncio, json, logging, sys
from netaio import UDPNode, MessageType, Message, Body, HMACAuthPlugin

logging.disable(logging.CRITICAL)
rust_port, mode = int(sys.argv[1]), sys.argv[2]
a = HMACAuthPlugin({"secret": "test"}) if mode == "hmac" else None
node = UDPNode(port=0, interface="127.0.0.1", auth_plugin=a)
got = asyncio.Event(); reply = []

@node.on(MessageType.REQUEST_URI)
def echo(msg, addr):
    return Message.prepare(Body.prepare(msg.body.content, uri=msg.body.uri), MessageType.RESPOND_URI)

@node.on(MessageType.RESPOND_URI)
def on_reply(msg, addr):
    reply.append(msg); got.set()

async def main():
    await node.start()
    print("PORT", node.transport.get_extra_info("sockname")[1], flush=True)
    node.send(Message.prepare(Body.prepare(b'from netaio', uri=b'py'), MessageType.REQUEST_URI), ("127.0.0.1", rust_port))
    await asyncio.wait_for(got.wait(), 10)
    r = reply[0]
    print(json.dumps({"type": int(r.header.message_type), "uri": r.body.uri.decode(), "content": r.body.content.decode()}), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)

asyncio.run(main())
