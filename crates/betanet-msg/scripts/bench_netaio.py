"""Time netaio itself on loopback (same shape as benches/msg.rs): sequential request/response
round trips per second, plain, with HMAC, and with HMAC + SHA-256 stream cipher; and pipelined
one-way messages per second. Prints one JSON object.

usage: bench_netaio.py [N]
       bench_netaio.py --rounds   (interactive, for interleaved comparisons: keeps one warm
                                   server+client per profile; reads lines "rt <profile> <n>"
                                   with profile plain|hmac|hmac_cipher, answers each with the
                                   round trips per second of <n> sequential requests; "quit")
"""
import asyncio, json, logging, sys, time
from netaio import TCPServer, TCPClient, MessageType, Message, Body, HMACAuthPlugin, Sha256StreamCipherPlugin

logging.disable(logging.CRITICAL)
N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 2000

async def run(auth, cipher, port):
    server = TCPServer(port=port, interface="127.0.0.1", auth_plugin=auth, cipher_plugin=cipher)
    count = [0]
    done = asyncio.Event()
    @server.on((MessageType.REQUEST_URI, b'echo'))
    async def echo(msg, writer):
        return Message.prepare(Body.prepare(msg.body.content, uri=b'echo'), MessageType.RESPOND_URI)
    @server.on((MessageType.PUBLISH_URI, b'sink'))
    async def sink(msg, writer):
        count[0] += 1
        if count[0] >= N:
            done.set()
    task = asyncio.create_task(server.start())
    for _ in range(200):
        if getattr(server, "server", None) is not None:
            break
        await asyncio.sleep(0.01)
    port = server.server.sockets[0].getsockname()[1]
    client = TCPClient("127.0.0.1", port, auth_plugin=auth, cipher_plugin=cipher)
    await client.connect()
    await client.start_receive_loop()
    for _ in range(50):
        await client.request(b'echo', content=b'x' * 32)
    t = time.perf_counter()
    for _ in range(N):
        await client.request(b'echo', content=b'x' * 32)
    rt = N / (time.perf_counter() - t)
    msg = Message.prepare(Body.prepare(b'x' * 32, uri=b'sink'), MessageType.PUBLISH_URI)
    t = time.perf_counter()
    for _ in range(N):
        await client.send(msg.copy())
    await asyncio.wait_for(done.wait(), 60)
    pl = N / (time.perf_counter() - t)
    await client.close()
    task.cancel()
    return rt, pl

async def rounds():
    setups = {}
    async def setup(profile):
        auth = None if profile == "plain" else HMACAuthPlugin({"secret": "test"})
        cipher = Sha256StreamCipherPlugin({"key": "test"}) if profile == "hmac_cipher" else None
        server = TCPServer(port=0, interface="127.0.0.1", auth_plugin=auth, cipher_plugin=cipher)
        @server.on((MessageType.REQUEST_URI, b'echo'))
        async def echo(msg, writer):
            return Message.prepare(Body.prepare(msg.body.content, uri=b'echo'), MessageType.RESPOND_URI)
        task = asyncio.create_task(server.start())
        for _ in range(200):
            if getattr(server, "server", None) is not None:
                break
            await asyncio.sleep(0.01)
        port = server.server.sockets[0].getsockname()[1]
        client = TCPClient("127.0.0.1", port, auth_plugin=auth, cipher_plugin=cipher)
        await client.connect()
        await client.start_receive_loop()
        for _ in range(50):
            await client.request(b'echo', content=b'x' * 32)
        return server, task, client
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        _, profile, n = parts
        n = int(n)
        if profile not in setups:
            setups[profile] = await setup(profile)
        client = setups[profile][2]
        t = time.perf_counter()
        for _ in range(n):
            await client.request(b'echo', content=b'x' * 32)
        print(round(n / (time.perf_counter() - t), 1), flush=True)
    for server, task, client in setups.values():
        await client.close()
        task.cancel()

async def main():
    res = {}
    res["plain_rt_per_s"], res["plain_pipelined_msgs_per_s"] = await run(None, None, 0)
    res["hmac_rt_per_s"], res["hmac_pipelined_msgs_per_s"] = await run(HMACAuthPlugin({"secret": "test"}), None, 0)
    res["hmac_cipher_rt_per_s"], res["hmac_cipher_pipelined_msgs_per_s"] = await run(
        HMACAuthPlugin({"secret": "test"}), Sha256StreamCipherPlugin({"key": "test"}), 0)
    print(json.dumps({k: round(v) for k, v in res.items()}))

asyncio.run(rounds() if sys.argv[1:2] == ["--rounds"] else main())
