#!/usr/bin/env python3
"""Write the seed inputs of tests/fuzz/fuzz_h2.c (HTTP/2 client frames after
the preface) into tests/fuzz/corpus/h2/. Byte 0: bit 0 TLS, bits 1-6 piece
size (x64 bytes + 1). Needs python3-hpack (a dependency of python3-h2)."""
import os
import struct

import hpack


def frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + struct.pack(">I", sid) + payload


def req(enc, sid, hdrs, flags=0x5):
    return frame(1, flags, sid, enc.encode(hdrs))


def base(path="/", method="GET", auth="a.test"):
    return [(":method", method), (":scheme", "https"), (":authority", auth), (":path", path)]


enc = hpack.Encoder()
settings = frame(4, 0, 0)
seeds = {
    "get": req(enc, 1, base() + [("user-agent", "x")]),
    "cookies-host": req(enc, 1, base() + [("cookie", "a=1"), ("cookie", "b=2"), ("host", "b.test")]),
    "post-chunked": req(enc, 1, base("/p", "POST"), 0x4) + frame(0, 0, 1, b"abc") + frame(0, 1, 1, b"d"),
    "post-length": req(enc, 1, base("/p", "POST") + [("content-length", "3")], 0x4) + frame(0, 1, 1, b"abc"),
    "websocket": req(enc, 1, [(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "https"),
                              (":authority", "a.test"), (":path", "/ws"),
                              ("sec-websocket-version", "13")], 0x4),
    "connect": req(enc, 1, [(":method", "CONNECT"), (":authority", "a.test:443")], 0x4),
    "conn-specific": req(enc, 1, base() + [("connection", "close"), ("transfer-encoding", "chunked")]),
    "host-only": req(enc, 1, [(":method", "GET"), (":scheme", "http"), (":path", "/"), ("host", "h")]),
    "continuation": frame(1, 0x1, 1, hpack.Encoder().encode(base()[:2])) +
                    frame(9, 0x4, 1, hpack.Encoder().encode(base()[2:])),
    "crlf-value": req(hpack.Encoder(), 1, base() + [("x", "a\r\nb: c")]),
    "two-streams": req(enc, 1, base("/a")) + req(enc, 3, base("/b") + [("te", "trailers")]),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "h2")
os.makedirs(out, exist_ok=True)
for name, b in seeds.items():
    for ctl, suffix in ((0x01, ""), (0x00 | (1 << 1), "-pieces")):
        with open(os.path.join(out, name + suffix), "wb") as f:
            f.write(bytes([ctl]) + settings + b)
print(f"{2 * len(seeds)} seeds in {out}")
