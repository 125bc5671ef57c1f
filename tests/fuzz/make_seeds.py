#!/usr/bin/env python3
"""Write the seed inputs of tests/fuzz/fuzz_tun_mux.c (wmtun/1 conversations,
docs/tunnel.md) into tests/fuzz/corpus/tun_mux/. Byte 0 is the harness's scene
byte: bit 0 our role (0 server, 1 client), bit 1 credentials, bit 2 EOF after
the bytes, bits 3-5 piece size."""
import os
import struct

DATA, OPEN, OPEN_RESULT, RST, WINDOW_UPDATE, PING, GOAWAY = range(7)
HELLO, CHALLENGE, AUTH, AUTH_RESULT, REGISTER, REGISTER_RESULT = range(0x10, 0x16)


def frame(typ, sid=0, payload=b"", flags=0):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, flags]) + struct.pack(">I", sid) + payload


def s(b):
    return struct.pack(">H", len(b)) + b


def mapping(name, mode, domain=b"", port=0, bind=b"", group=b"", rules=()):
    out = s(name) + bytes([mode]) + s(domain) + struct.pack(">H", port) + s(bind) + s(group)
    out += struct.pack(">H", len(rules))
    for req, op, k, v in rules:
        out += bytes([req, ord(op)]) + s(k) + s(v)
    return out


def open_mapping(name, peer=b"203.0.113.9:5000"):
    return bytes([2]) + s(name) + s(peer)


def code(c, reason, wide=True):
    return (struct.pack(">I", c) if wide else bytes([c])) + reason


PREFACE = b"WMTUN/1\n"
hello = frame(HELLO, 0, bytes([2]) + struct.pack(">I", 65536) + s(b"fuzz-peer"))
auth = frame(AUTH, 0, bytes(range(32)) + s(b"") + bytes(32))
register = frame(REGISTER, 0, struct.pack(">H", 3)
                 + mapping(b"web", 1, b"*.example.com", rules=[(1, "+", b"X-A", b"1"), (0, "-", b"Server", b"")])
                 + mapping(b"ssh", 3, port=2222, bind=b"127.0.0.1")
                 + mapping(b"px", 4, group=b"g1"))
# streams from a client peer: odd ids
streams = (frame(OPEN, 1, open_mapping(b"web")) + frame(DATA, 1, b"GET / HTTP/1.1\r\n\r\n")
           + frame(OPEN, 3, open_mapping(b"ssh")) + frame(DATA, 3, b"x" * 3000, flags=1)
           + frame(OPEN, 5, bytes([1]) + s(b"10.0.0.1:1")) + frame(RST, 5, code(1, b"cancel"))
           + frame(OPEN, 7, open_mapping(b"none")) + frame(WINDOW_UPDATE, 1, struct.pack(">I", 4096))
           + frame(PING, 0, bytes(8)) + frame(PING, 0, bytes(8), flags=1)
           + frame(OPEN_RESULT, 2, code(0, b"", wide=False)) + frame(DATA, 2, b"answer")
           + frame(WINDOW_UPDATE, 2, struct.pack(">I", 100)) + frame(OPEN_RESULT, 4, code(2, b"no route", wide=False))
           + frame(DATA, 1, b"", flags=1))
server_side = PREFACE + hello + auth + register + streams
goaway = frame(GOAWAY, 0, code(7, b"bye"))

# the peer is a server talking to our client: even ids
challenge = frame(CHALLENGE, 0, bytes(range(32, 64)) + bytes([0]) + struct.pack(">I", 65536))
auth_result = frame(AUTH_RESULT, 0, bytes([1]) + bytes(32) + s(b""))
reg_result = frame(REGISTER_RESULT, 0, struct.pack(">H", 0))
client_streams = (frame(OPEN, 2, open_mapping(b"web")) + frame(DATA, 2, b"hi")
                  + frame(OPEN, 4, open_mapping(b"ssh")) + frame(DATA, 4, b"y" * 5000, flags=1)
                  + frame(OPEN, 6, open_mapping(b"x")) + frame(OPEN, 8, open_mapping(b"y"))
                  + frame(OPEN_RESULT, 1, code(0, b"", wide=False)) + frame(DATA, 1, b"z" * 100, flags=1)
                  + frame(OPEN_RESULT, 3, code(1, b"refused", wide=False))
                  + frame(WINDOW_UPDATE, 1, struct.pack(">I", 8192)) + frame(RST, 2, code(2, b"gone")))
client_side = challenge + auth_result + reg_result + client_streams

seeds = {
    "server-full": bytes([0x00]) + server_side,
    "server-full-eof": bytes([0x04 | 0x38]) + server_side,
    "server-goaway": bytes([0x08]) + server_side + goaway,
    "server-creds": bytes([0x02]) + PREFACE + hello + auth + register,
    "server-bad-version": bytes([0x00]) + b"WMTUN/2\n" + hello,
    "server-tls-hello": bytes([0x00]) + b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
    "client-full": bytes([0x01]) + client_side,
    "client-full-eof": bytes([0x05 | 0x10]) + client_side,
    "client-creds": bytes([0x03]) + challenge + frame(AUTH_RESULT, 0, bytes([0]) + bytes(32) + s(b"wrong")),
}
out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus", "tun_mux")
os.makedirs(out, exist_ok=True)
for name, b in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(b)
print(f"{len(seeds)} seeds in {out}")
