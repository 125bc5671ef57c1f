"""Idle TCP server for the RSS section: accepts connections and holds them
open without ever sending; reads and discards input, closes on EOF.

usage: idle_server.py --port PORT [--host 127.0.0.1]
"""
import argparse
import asyncio
import resource


async def handle(reader, writer):
    try:
        while await reader.read(65536):
            pass
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(host, port):
    server = await asyncio.start_server(handle, host, port, backlog=4096,
                                        reuse_address=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    try:
        asyncio.run(main(a.host, a.port))
    except KeyboardInterrupt:
        pass
