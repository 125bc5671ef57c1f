#!/usr/bin/env python3
"""Write the seed inputs of tests/fuzz/fuzz_h2.c into tests/fuzz/corpus/h2/.
Layout (see the target): byte 0 and byte 1 set the scene, a 16-bit length L,
L bytes from the client, then the upstream's bytes (answer kind 2).
Needs python3-hpack (a dependency of python3-h2)."""
import os
import struct

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(t, flags, sid, payload=b""):
    hd = struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid)
    return hd + payload


def settings(*pairs):
    return frame(4, 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def req(enc, sid, hdrs, flags=0x5):
    return frame(1, flags, sid, enc.encode(hdrs))


def base(path="/", method="GET", auth="a.test", scheme="http"):
    return [(":method", method), (":scheme", scheme), (":authority", auth), (":path", path)]


def seed(client, c0=0x01, c1=0, up=b""):
    """c0 bit 0: the harness sends the preface; client bytes then start
    with SETTINGS."""
    return bytes([c0, c1]) + struct.pack(">H", len(client)) + client + up


E = hpack.Encoder
S0 = settings()
ACK = frame(4, 1, 0)
def post(path="/p", extra=()):
    return req(E(), 1, base(path, "POST") + list(extra), 0x4)


def wu(sid, n):
    return frame(8, 0, sid, struct.pack(">I", n))


GET = [(":method", "GET"), (":scheme", "http")]
WS = [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"),
      (":authority", "a.test"), (":path", "/ws"), ("sec-websocket-version", "13")]
seeds = {
    "get-static": req(E(), 1, base("/static") + [("user-agent", "x")]),
    "get-proxied": req(E(), 1, base("/p?q=1")),
    "get-rules": req(E(), 1, base("/rules")),
    "get-files": req(E(), 1, base("/files/a.txt")),
    "get-files-range": req(E(), 1, base("/files/sub/b.css") + [("range", "bytes=2-9")]),
    "get-files-dir": req(E(), 1, base("/files/sub/")),
    "get-files-404": req(E(), 1, base("/files/none")),
    "limited": b"".join(req(E(), 1 + 2 * i, base("/limited")) for i in range(6)),
    "other-server": req(E(), 1, base("/", auth="b.test")),
    "cookies-host": req(E(), 1, base() + [("cookie", "a=1"), ("cookie", "b=2"),
                                          ("host", "x.test")]),
    "host-only": req(E(), 1, GET + [(":path", "/"), ("host", "a.test")]),
    "post-chunked": post() + frame(0, 0, 1, b"abc") + frame(0, 1, 1, b"d"),
    "post-length": post(extra=[("content-length", "3")]) + frame(0, 1, 1, b"abc"),
    "post-too-big": post() + frame(0, 0, 1, b"x" * 9000) + frame(0, 1, 1),
    "post-trailers": post() + frame(0, 0, 1, b"abc") + req(E(), 1, [("x-trailer", "1")], 0x5),
    "websocket": req(E(), 1, WS, 0x4) + frame(0, 0, 1, b"\x81\x82abcd\x09\x0b"),
    "connect": req(E(), 1, [(":method", "CONNECT"), (":authority", "a.test:443")], 0x4),
    "conn-specific": req(E(), 1, base() + [("connection", "close"),
                                           ("transfer-encoding", "chunked")]),
    "keep-alive-field": req(E(), 1, base() + [("keep-alive", "5"), ("upgrade", "x")]),
    "te-trailers": req(E(), 1, base("/p") + [("te", "trailers")]) +
                   req(E(), 3, base("/q") + [("te", "gzip")]),
    "bad-pseudo": req(E(), 1, base() + [(":status", "200")]) +
                  req(E(), 3, [(":method", "GET"), ("x", "1"), (":path", "/")]) +
                  req(E(), 5, GET + [(":path", "")]) +
                  req(E(), 7, base() + [(":path", "/again")]),
    "upper-name": req(E(), 1, base() + [("X-Upper", "1")]),
    "crlf-value": req(E(), 1, base() + [("x", "a\r\nb: c")]),
    "big-header": req(E(), 1, base("/static") + [("x-big", "v" * 20000)]),
    "continuation": frame(1, 0x1, 1, E().encode(base()[:2])) +
                    frame(9, 0x0, 1, E().encode(base()[2:3])) +
                    frame(9, 0x4, 1, E().encode(base()[3:])),
    "continuation-flood": frame(1, 0x1, 1, E().encode(base()[:2])) +
                          b"".join(frame(9, 0, 1, E().encode([("x-%d" % i, "v")]))
                                   for i in range(20)),
    "rst-burst": (lambda e: b"".join(req(e, 1 + 2 * i, base("/p")) +
                                     frame(3, 0, 1 + 2 * i, b"\0\0\0\x08")
                                     for i in range(40)))(E()),
    "ping": b"".join(frame(6, 0, 0, struct.pack(">Q", i)) for i in range(5)) +
            req(E(), 1, base("/static")),
    "window-update": settings((4, 10)) + req(E(), 1, base("/files/sub/b.css")) + wu(1, 100) +
                     wu(0, 1000),
    "window-zero": settings((4, 0)) + req(E(), 1, base("/p")) + wu(1, 0),
    "settings-many": settings((1, 0), (2, 0), (3, 100), (5, 16384), (6, 100), (8, 1)) + ACK,
    "priority": frame(2, 0, 1, struct.pack(">IB", 0, 16)) + req(E(), 1, base("/static")),
    "many-streams": (lambda e: b"".join(req(e, 1 + 2 * i, base("/p%d" % i))
                                        for i in range(20)))(E()),
    "goaway-client": req(E(), 1, base("/p")) + frame(7, 0, 0, struct.pack(">II", 1, 0)),
    "skipped-stream": req(E(), 5, base("/p")) + req(E(), 3, base("/q")),
    "empty-data": post() + b"".join(frame(0, 0, 1) for _ in range(30)),
}
# Files are overwritten, not removed first: inputs the fuzzer found stay.
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
os.makedirs(out, exist_ok=True)
n = 0
for name, b in seeds.items():
    client = S0 + b
    # Content-Length answers; chunked ones, 9-byte pieces and a reload; close-delimited
    # answers, an upstream that closes, a client that reads late and half-closes
    for suffix, c0, c1 in (("", 0x01, 0), ("-pieces-chunked", 0x01 | 2 | 0x10, 1),
                           ("-close-slowclient", 0x01 | 6 | 0x80 | 0x40 | 8, 2)):
        with open(os.path.join(out, name + suffix), "wb") as f:
            f.write(seed(client, c0, c1))
        n += 1
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
extra = {
    # HTTP/1 on the same port, and the Upgrade: h2c handshake
    "h1-get": (b"GET /p HTTP/1.1\r\nHost: a.test\r\n\r\n"
               b"GET /static HTTP/1.1\r\nHost: b.test\r\n\r\n", b""),
    "h1-upgrade-h2c": (b"GET /p HTTP/1.1\r\nHost: a.test\r\n" + H2C +
                       b"HTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n" + PREFACE + S0 +
                       req(E(), 3, base("/static")), b""),
    "h1-upgrade-b": (b"GET / HTTP/1.1\r\nHost: b.test\r\n" + H2C +
                     b"HTTP2-Settings: \r\n\r\n", b""),
    "own-preface": (PREFACE + S0 + req(E(), 1, base("/static")), b""),
    # the upstream's own bytes (kind 2)
    "upstream-raw": (PREFACE + S0 + req(E(), 1, base("/p")) + req(E(), 3, base("/rules")),
                     b"HTTP/1.1 200 OK\r\nConnection: x-secret\r\nX-Secret: 1\r\n"
                     b"Content-Length: 2\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nok"),
    "upstream-bad": (PREFACE + S0 + req(E(), 1, base("/p")),
                     b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    "upstream-1xx": (PREFACE + S0 + req(E(), 1, base("/p")),
                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
                     b"HTTP/1.1 204 No Content\r\n\r\n"),
}
for name, (client, up) in extra.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(seed(client, 0x04 if up else 0x00, 0, up))
    n += 1
print(f"{n} seeds in {out}")
