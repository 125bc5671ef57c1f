"""The WebSocket bridges ([stream] ws2tcp, tcp2ws, tcp2wss) and `wmproxy
ws-proxy`: python3-websockets as the peer in both roles, a raw client for
every bad input (RFC 6455 close codes and HTTP answers), and a tcp2ws ->
ws2tcp chain carrying 100 MB intact."""

import asyncio
import base64
import hashlib
import os
import select
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BIN
from helpers.net import free_port, free_ports, wait_until
from helpers.stream import (PPBackend, config, echo_reply, exchange, rss_kb, server, v2_addrs,
                            wait_log_count, ws_close_code, ws_connect, ws_frame, ws_read,
                            ws_recv_data, ws_send, ws_status)
from helpers.origin import ws_read_frame
from helpers.tunnel import make_certs, wait_log

websockets = pytest.importorskip("websockets")


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


@pytest.fixture
def ws2tcp(wmproxy, tmp_path, echo):
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, bind_mode="ws2tcp",
                  proxy_url="tcp://127.0.0.1:%d" % echo.port, max_message="1m")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    return port, p


class WsEchoServer:
    """python3-websockets server in a thread: echoes binary messages; records
    request paths and Host headers."""

    def __init__(self, ssl_ctx=None):
        self.port = free_port()
        self.hosts = []
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.ssl = ssl_ctx
        threading.Thread(target=self.main, daemon=True).start()
        assert self.ready.wait(10)

    async def handler(self, ws, path=None):
        self.hosts.append(ws.request_headers.get("Host"))
        async for msg in ws:
            await ws.send(msg)

    def main(self):
        asyncio.set_event_loop(self.loop)

        async def serve():
            self.srv = await websockets.serve(self.handler, "127.0.0.1", self.port, ssl=self.ssl,
                                              max_size=None)
            self.ready.set()
            await self.srv.wait_closed()

        self.loop.run_until_complete(serve())

    def close(self):
        self.loop.call_soon_threadsafe(self.srv.close)


# ---- 3. ws2tcp with python3-websockets as the client ----

def test_ws2tcp_websockets_client(ws2tcp):
    port, p = ws2tcp

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/any/path" % port, max_size=None) as ws:
            await ws.send(b"hello")
            got = b""
            while len(got) < 5:
                got += await ws.recv()
            assert got == b"hello"
            # a fragmented message (three frames) arrives as its bytes
            await ws.send([b"frag-", b"men", b"ted"])
            got = b""
            while len(got) < 11:
                got += await ws.recv()
            assert got == b"frag-mented"
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 5)  # answered with a pong
            big = os.urandom(3 << 20)
            for i in range(0, len(big), 500000):
                await ws.send(big[i:i + 500000])
            got = b""
            while len(got) < len(big):
                got += await ws.recv()
            assert got == big
        # the close handshake completed both ways: websockets saw our echo of 1000
        assert ws.close_code == 1000
    run(go())
    wait_log_count(p, "access proto=ws2tcp", 1)
    assert wait_log(p, "code=101"), p.log()[-3000:]


# ---- tcp2ws with python3-websockets as the server ----

def test_tcp2ws_websockets_server(wmproxy, tmp_path):
    up = WsEchoServer()
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, bind_mode="tcp2ws",
                  proxy_url="ws://127.0.0.1:%d/chat" % up.port, domain="ws.example")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    data = os.urandom(2 << 20)
    s.sendall(data)
    got = b""
    while len(got) < len(data):
        b = s.recv(1 << 20)
        assert b
        got += b
    assert got == data
    s.close()
    assert "ws.example" in up.hosts
    wait_log_count(p, "access proto=tcp2ws", 1)
    up.close()


def _tcp2ws_raw_server(wmproxy, tmp_path):
    """A tcp2ws bridge to a raw WebSocket server socket: (proxy, TCP client,
    the server's accepted socket after its 101, the listener)."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, bind_mode="tcp2ws",
                  proxy_url="ws://127.0.0.1:%d/" % ls.getsockname()[1])
    # no port probe: its connection would be the first to reach ls
    p = wmproxy(["run", "-c", config(tmp_path, body)])
    assert wait_log(p, "listening on 127.0.0.1:%d" % port), p.log()
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"x")  # the bridge dials the WebSocket side
    ls.settimeout(10)
    up, _ = ls.accept()
    up.settimeout(10)
    head = b""
    while b"\r\n\r\n" not in head:
        d = up.recv(4096)
        assert d, head
        head += d
    key = [ln.split(b":", 1)[1].strip() for ln in head.split(b"\r\n")
           if ln.lower().startswith(b"sec-websocket-key:")][0]
    accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                              .digest())
    up.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
    return p, c, up, ls


def test_tcp2ws_ping_flood_from_a_peer_that_does_not_read(wmproxy, tmp_path):
    """A WebSocket upstream that sends pings as fast as it can and never
    reads: our pongs wait in its output, so we stop reading it (its sends
    block) instead of queueing a pong per ping without bound (1 GiB in 6 s
    before)."""
    p, c, up, ls = _tcp2ws_raw_server(wmproxy, tmp_path)
    rss0 = rss_kb(p.p.pid)
    ping = b"\x89\x7d" + b"p" * 125  # unmasked, from the server side
    pings = ping * 512
    up.setblocking(False)
    sent, blocked = 0, False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sent < (1 << 30):
        try:
            off = sent % len(pings)  # a partial send goes on where it stopped
            sent += up.send(pings[off:])
        except BlockingIOError:
            if not select.select([], [up], [], 1.5)[1]:
                blocked = True
                break
    assert "broke the protocol" not in p.log(), p.log()[-2000:]
    assert blocked, "the bridge kept reading pings: %d bytes" % sent
    assert rss_kb(p.p.pid) - rss0 < 32 * 1024
    c.close()
    up.close()
    ls.close()


def test_tcp2ws_data_after_the_servers_close_is_dropped(wmproxy, tmp_path):
    """A server that sends data frames after its close frame: the TCP client
    has had its EOF (half-close), the late bytes are dropped, and what the
    client still answers goes out before our echo of the server's code.
    Before, the late bytes were written after the write shutdown: the
    write failed, the client's answer was lost and we closed with 1001."""
    p, c, up, ls = _tcp2ws_raw_server(wmproxy, tmp_path)
    f = up.makefile("rb")
    assert ws_read_frame(f) == (2, b"x")
    up.sendall(ws_frame(8, (1000).to_bytes(2, "big"), mask=False) +
               ws_frame(2, b"late" * 1000, mask=False))
    assert c.recv(100) == b""  # the server's close is the client's EOF
    c.sendall(b"answer")
    c.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        op, data = ws_read_frame(f)
        assert op is not None, got
        if op == 8:
            assert data[:2] == (1000).to_bytes(2, "big"), data  # our echo
            break
        assert op in (0, 2), op
        got += data
    assert got == b"answer"
    wait_log_count(p, "end=closed", 1)
    c.close()
    up.close()
    ls.close()


def test_tcp2wss_websockets_tls_server(wmproxy, tmp_path):
    certs = make_certs(str(tmp_path / "certs"))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["srv.pem"], certs["srv.key"])
    up = WsEchoServer(ctx)
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, bind_mode="tcp2wss",
                  proxy_url="wss://127.0.0.1:%d/" % up.port, domain="a.test")
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"secure bytes")
    got = b""
    while len(got) < 12:
        got += s.recv(100)
    assert got == b"secure bytes"
    s.close()
    up.close()


def test_tcp2ws_sends_the_proxy_header(wmproxy, tmp_path):
    """proxy_protocol on tcp2ws: the header goes first on the connection,
    before the upgrade request (it was never sent)."""
    back = PPBackend()  # records the header, then echoes: the upgrade then fails
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, bind_mode="tcp2ws",
                  proxy_url="ws://127.0.0.1:%d/" % back.port, proxy_protocol="v2")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        me = s.getsockname()[1]
        s.sendall(b"x")
        assert s.recv(10) == b""
    wait_until(lambda: ("127.0.0.1", me) in [v2_addrs(h) for k, h in back.headers if k == "v2"],
               what="the v2 header naming the client")
    wait_log_count(p, "end=upstream-handshake-failed", 1)
    back.close()


# ---- bad input: RFC 6455 close codes, HTTP answers; never a crash ----

@pytest.mark.parametrize("frame,code", [
    (ws_frame(2, b"unmasked", mask=False), 1002),          # 5.1: clients must mask
    (ws_frame(2, b"", length=1 << 63), 1002),              # 5.2: the 64-bit length's MSB
    (ws_frame(9, b"p" * 126), 1002),                       # 5.5: control frame over 125 bytes
    (ws_frame(9, b"ping", fin=False), 1002),               # 5.5: fragmented control frame
    (ws_frame(8, (999).to_bytes(2, "big")), 1002),         # 7.4: a bad close code
    (ws_frame(8, (1005).to_bytes(2, "big")), 1002),        # 7.4.1: never on the wire
    (ws_frame(8, b"\x03"), 1002),                          # 5.5.1: one-byte close body
    (ws_frame(8, b"\x03\xe8\xff\xfe"), 1007),              # close reason not UTF-8
    (ws_frame(2, b"x", rsv=0x40), 1002),                   # 5.2: RSV1 without extension
    (ws_frame(3, b"x"), 1002),                             # reserved opcode
    (ws_frame(0, b"x"), 1002),                             # continuation outside a message
    (ws_frame(2, b"a", fin=False) + ws_frame(2, b"b"), 1002),  # 5.4: data inside a message
    (ws_frame(1, b"text"), 1003),                          # text: the bridge carries bytes
    (ws_frame(2, b"", length=2 << 20), 1009),              # over max_message (1m)
    (ws_frame(2, b"a" * 700000, fin=False) + ws_frame(0, b"b" * 700000), 1009),
    (ws_frame(2, b"z" * (3 << 20)), 1009),  # refused at its header; 3 MiB still follow
], ids=["unmasked", "len-msb", "big-control", "frag-control", "close-999", "close-1005",
        "close-1-byte", "close-not-utf8", "rsv1", "opcode-3", "lone-continuation",
        "data-in-message", "text", "over-limit", "over-limit-fragmented",
        "over-limit-payload-follows"])
def test_ws2tcp_bad_frames(ws2tcp, frame, code):
    port, p = ws2tcp
    s = ws_connect(port)
    s.sendall(frame)
    assert ws_close_code(s) == code
    s.close()
    assert p.alive()


@pytest.mark.parametrize("headers,method,status", [
    ({"Sec-WebSocket-Key": None}, "GET", "400"),
    ({"Sec-WebSocket-Key": "short"}, "GET", "400"),
    ({"Sec-WebSocket-Version": "8"}, "GET", "426"),
    ({"Upgrade": None}, "GET", "426"),
    ({"Connection": "keep-alive"}, "GET", "426"),
    ({"Host": None}, "GET", "400"),
    ({}, "POST", "405"),
])
def test_ws2tcp_bad_handshakes(ws2tcp, headers, method, status):
    port, p = ws2tcp
    assert ws_status(port, headers, method).split()[1] == status
    # the access line's end= is one token (the reason is on the line before)
    wait_log_count(p, "code=%s in=0 out=0 ms=" % status, 1)
    line = [ln for ln in p.log().splitlines() if "code=%s in=0" % status in ln][-1]
    assert line.endswith(" end=bad-handshake"), line


def test_ws2tcp_garbage_and_huge_head(ws2tcp):
    port, p = ws2tcp
    assert ws_status(port, raw=b"\x16\x03\x01 not http\r\n\r\n").split()[1] == "400"
    assert ws_status(port, raw=b"GET / HTTP/1.1\r\nX: " + b"a" * 40000 + b"\r\n\r\n").split()[1] \
        in ("431", "400")
    assert p.alive()


def test_ws_close_from_client_and_ping_answered_raw(ws2tcp):
    port, p = ws2tcp
    s = ws_connect(port)
    ws_send(s, 9, b"hi")
    fin, op, payload = ws_read(s)
    assert (op, payload) == (10, b"hi")
    ws_send(s, 2, b"data")
    assert ws_recv_data(s, 4) == b"data"
    ws_send(s, 8, (1000).to_bytes(2, "big") + b"bye")
    assert ws_close_code(s) == 1000  # echoed
    s.settimeout(5)
    assert s.recv(10) == b""        # then the server closes the TCP connection
    s.close()


# ---- `wmproxy ws-proxy`: a chain tcp2ws -> ws2tcp carrying 100 MB ----

def test_ws_proxy_help():
    r = subprocess.run([BIN, "ws-proxy", "--help"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and "--mode" in r.stdout and "ws2tcp" in r.stdout
    r = subprocess.run([BIN, "ws-proxy", "-t", "127.0.0.1:1"], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 2 and "--mode" in r.stderr
    r = subprocess.run([BIN, "ws-proxy", "-t", "127.0.0.1:1", "--mode", "udp"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2


def test_ws_proxy_chain_100mb(wmproxy, tmp_path, echo):
    a, b = free_ports(2)
    log = tmp_path / "ws-access.log"
    wmproxy(["ws-proxy", "--mode", "ws2tcp", "-f", "127.0.0.1:%d" % b,
             "-t", "127.0.0.1:%d" % echo.port, "--workers", "2", "--access-log", str(log)], port=b)
    wmproxy(["ws-proxy", "--mode", "tcp2ws", "-f", "127.0.0.1:%d" % a,
             "-t", "127.0.0.1:%d" % b, "--workers", "2"], port=a)
    data = os.urandom(100 << 20)
    got = exchange(a, data, timeout=120)
    assert len(got) == len(data) + 64
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(echo_reply(data)).hexdigest()
    wait_until(lambda: log.exists() and "proto=ws2tcp" in log.read_text(), what="access log")
