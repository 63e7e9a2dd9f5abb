"""netaio client driven against a betanet-msg server. Prints one JSON object per step.

usage: interop_client.py PORT MODE   (MODE: plain | hmac | cipher)
"""
import asyncio, json, logging, sys
from netaio import TCPClient, MessageType, Message, Body, HMACAuthPlugin, Sha256StreamCipherPlugin

logging.disable(logging.CRITICAL)
port, mode = int(sys.argv[1]), sys.argv[2]

def plugins(secret="test"):
    a = HMACAuthPlugin({"secret": secret}) if mode in ("hmac", "cipher") else None
    c = Sha256StreamCipherPlugin({"key": "test"}) if mode == "cipher" else None
    return a, c

def out(**kw):
    print(json.dumps(kw), flush=True)

async def main():
    a, c = plugins()
    client = TCPClient("127.0.0.1", port, auth_plugin=a, cipher_plugin=c)
    await client.connect()
    r = await client.request(b'echo', content=b'hello', timeout=5)
    out(step="request", type=int(r.header.message_type), uri=r.body.uri.decode(), content=r.body.content.decode())
    r = await client.create(b'thing', b'x', timeout=5)
    out(step="create", type=int(r.header.message_type), uri=r.body.uri.decode(), content=r.body.content.decode())
    # subscribe / notify
    got = asyncio.Event(); notes = []
    @client.on((MessageType.NOTIFY_URI, b'news'))
    def on_note(msg, writer):
        notes.append(msg.body.content.decode()); got.set()
    confirmed = asyncio.Event()
    @client.on((MessageType.CONFIRM_SUBSCRIBE, b'news'))
    def on_conf(msg, writer):
        confirmed.set()
    await client.start_receive_loop()
    await client.send(Message.prepare(Body.prepare(b'', uri=b'news'), MessageType.SUBSCRIBE_URI))
    await asyncio.wait_for(confirmed.wait(), 5)
    await client.send(Message.prepare(Body.prepare(b'n1', uri=b'news'), MessageType.PUBLISH_URI))
    await asyncio.wait_for(got.wait(), 5)
    out(step="notify", content=notes[0])
    await client.stop_all_receive_loops()
    # auth failure: wrong secret (netaio itself reports this as a timeout)
    if a is not None:
        wa, wc = plugins("wrong")
        bad = TCPClient("127.0.0.1", port, auth_plugin=wa, cipher_plugin=wc)
        await bad.connect()
        try:
            await bad.request(b'echo', content=b'evil', timeout=0.7)
            out(step="bad_auth", result="answered")
        except TimeoutError:
            out(step="bad_auth", result="timeout")
        await bad.close()
        # the good client still works afterwards
        r = await client.request(b'echo', content=b'again', timeout=5)
        out(step="after_bad", content=r.body.content.decode())
    await client.close()
    out(step="done")

asyncio.run(main())
