#!/usr/bin/env python3
"""A TCP proxy that adds network latency, for ci/bench.py (the test containers sit on
loopback, where round trips are free; real data centres are 50-100 ms away).

Each `--map LISTEN:TARGET` accepts on 127.0.0.1:LISTEN and connects to 127.0.0.1:TARGET.
Every chunk is passed on half the round-trip time after it arrived, in each direction,
in order: a command the engine waits for costs one added RTT, and commands sent
together cost it once.  Standard library only.

usage: latency_proxy.py --rtt-ms 100 --map 40022:32768 --map 40023:32769
Prints "ready" once every port listens; runs until killed.
"""
import argparse
import asyncio
import time


async def pipe(reader, writer, delay):
    """Copies reader to writer, each chunk `delay` seconds late; EOF passed on.  A reset
    connection ends the copy like an EOF (no task is left pending)."""
    queue = asyncio.Queue()

    async def receive():
        try:
            while True:
                data = await reader.read(65536)
                await queue.put((time.monotonic() + delay, data))
                if not data:
                    return
        except (ConnectionError, OSError):
            await queue.put((time.monotonic(), b""))

    async def send():
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            return

    await asyncio.gather(receive(), send())


async def handle(client_r, client_w, target, delay):
    try:
        server_r, server_w = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        client_w.close()
        return
    try:
        await asyncio.gather(pipe(client_r, server_w, delay), pipe(server_r, client_w, delay))
    finally:
        for w in (client_w, server_w):
            w.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rtt-ms", type=float, required=True)
    ap.add_argument("--map", action="append", required=True, help="LISTEN:TARGET")
    args = ap.parse_args()
    delay = args.rtt_ms / 2000.0
    servers = []
    for m in args.map:
        listen, target = (int(x) for x in m.split(":"))
        servers.append(await asyncio.start_server(
            lambda r, w, t=target: handle(r, w, t, delay), "127.0.0.1", listen))
    print("ready", flush=True)
    await asyncio.gather(*(s.serve_forever() for s in servers))


if __name__ == "__main__":
    asyncio.run(main())
