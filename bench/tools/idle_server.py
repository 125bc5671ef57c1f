"""Idle TCP server for the RSS sections: accepts connections and holds them
open without ever sending; reads and discards input, closes on EOF.

usage: idle_server.py --port PORT [--host 127.0.0.1] [--stats-file PATH]

--stats-file: every 0.2 s (when something changed) PATH is rewritten with
"OPEN BYTES": connections currently open and bytes received in total, so a
caller can check that a write on each tunnel has arrived.
"""
import argparse
import asyncio
import os
import resource

STATS = {"open": 0, "bytes": 0}


async def handle(reader, writer):
    STATS["open"] += 1
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            STATS["bytes"] += len(data)
    except (ConnectionError, OSError):
        pass
    finally:
        STATS["open"] -= 1
        writer.close()


async def write_stats(path):
    last = None
    while True:
        cur = (STATS["open"], STATS["bytes"])
        if cur != last:
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write("%d %d\n" % cur)
            os.replace(tmp, path)
            last = cur
        await asyncio.sleep(0.2)


async def main(host, port, stats_file):
    server = await asyncio.start_server(handle, host, port, backlog=4096,
                                        reuse_address=True)
    if stats_file:
        asyncio.ensure_future(write_stats(stats_file))
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--stats-file", default=None)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        asyncio.run(main(a.host, a.port, a.stats_file))
    except KeyboardInterrupt:
        pass
