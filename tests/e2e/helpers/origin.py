"""Test servers: an HTTP/1.1 origin with instrumented endpoints, a TCP echo
server with half-close semantics, a UDP echo server.

Origin endpoints (GET unless noted):
  /bytes/N[?seed=S]  N bytes of pattern(S) with Content-Length
  /chunked/N         N bytes of pattern(0), chunked, with a trailer
  /close/N           N bytes, no length: ends when the connection closes
  /headers           JSON: request line, headers as received, connection id
  /conn              the server-side connection id (one per TCP connection)
  /slow?ms=M         answers after M milliseconds
  POST /echo         echoes the body (Content-Length or chunked request)
  /ws                WebSocket (RFC 6455) echo after a 101 handshake
"""

import base64
import hashlib
import json
import socket
import socketserver
import threading
import time
import urllib.parse

_BLOCK = 1 << 16
_blocks = {}


def pattern_block(seed):
    b = _blocks.get(seed)
    if b is None:
        out = bytearray()
        i = 0
        while len(out) < _BLOCK:
            out += hashlib.sha256(b"%d:%d" % (seed, i)).digest()
            i += 1
        b = bytes(out[:_BLOCK])
        _blocks[seed] = b
    return b


def pattern(n, seed=0):
    blk = pattern_block(seed)
    full, rest = divmod(n, _BLOCK)
    return blk * full + blk[:rest]


def pattern_sha256(n, seed=0):
    h = hashlib.sha256()
    blk = pattern_block(seed)
    full, rest = divmod(n, _BLOCK)
    for _ in range(full):
        h.update(blk)
    h.update(blk[:rest])
    return h.hexdigest()


def send_pattern(wfile, n, seed=0):
    blk = pattern_block(seed)
    while n > 0:
        k = min(n, _BLOCK)
        wfile.write(blk[:k])
        n -= k


class _Conn:
    counter = 0
    lock = threading.Lock()

    @classmethod
    def next_id(cls):
        with cls.lock:
            cls.counter += 1
            return cls.counter


class OriginHandler(socketserver.StreamRequestHandler):
    timeout = 30
    wbufsize = 1 << 16

    def setup(self):
        super().setup()
        self.conn_id = _Conn.next_id()
        self.server.stats["connections"] += 1

    def readline(self):
        ln = self.rfile.readline(65537)
        if not ln:
            raise EOFError()
        return ln

    def handle(self):
        try:
            while self.one_request():
                pass
        except (EOFError, ConnectionError, socket.timeout, OSError):
            pass

    def one_request(self):
        line = self.readline()
        if line in (b"\r\n", b"\n"):
            line = self.readline()
        reqline = line.decode("latin-1").rstrip("\r\n")
        parts = reqline.split(" ")
        if len(parts) != 3:
            self.reply(400, b"bad request line\n", close=True)
            return False
        method, target, version = parts
        headers = []
        while True:
            ln = self.readline().decode("latin-1").rstrip("\r\n")
            if not ln:
                break
            k, v = ln.split(":", 1)
            headers.append((k.strip(), v.strip()))
        self.server.stats["requests"] += 1
        self.server.stats["last_headers"] = headers
        self.server.stats["last_reqline"] = reqline

        def hdr(name):
            for k, v in headers:
                if k.lower() == name:
                    return v
            return None

        body = b""
        te = hdr("transfer-encoding")
        cl = hdr("content-length")
        if te and "chunked" in te.lower():
            body = self.read_chunked()
        elif cl is not None:
            body = self.rfile.read(int(cl))
        conn_hdr = (hdr("connection") or "").lower()
        close = "close" in conn_hdr or version == "HTTP/1.0"
        url = urllib.parse.urlsplit(target)
        path = url.path
        q = urllib.parse.parse_qs(url.query)

        if path.startswith("/bytes/"):
            n = int(path[7:])
            seed = int(q.get("seed", ["0"])[0])
            self.head(200, [("Content-Length", str(n)), ("Content-Type", "application/octet-stream")], close)
            if method != "HEAD":
                send_pattern(self.wfile, n, seed)
        elif path.startswith("/chunked/"):
            n = int(path[9:])
            self.head(200, [("Transfer-Encoding", "chunked"), ("Trailer", "X-Sum")], close)
            data = pattern(n)
            step = 7919
            for i in range(0, n, step):
                c = data[i:i + step]
                self.wfile.write(b"%x\r\n" % len(c) + c + b"\r\n")
            self.wfile.write(b"0\r\nX-Sum: " + hashlib.sha256(data).hexdigest().encode() + b"\r\n\r\n")
        elif path.startswith("/close/"):
            n = int(path[7:])
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
            send_pattern(self.wfile, n)
            self.wfile.flush()
            return False
        elif path == "/headers":
            doc = {"reqline": reqline, "headers": headers, "conn": self.conn_id}
            self.reply(200, json.dumps(doc).encode(), close, ctype="application/json")
        elif path == "/conn":
            self.reply(200, str(self.conn_id).encode(), close)
        elif path == "/slow":
            time.sleep(int(q.get("ms", ["1000"])[0]) / 1000.0)  # deliberate: slow on request
            self.reply(200, b"slow\n", close)
        elif path == "/echo":
            self.reply(200, body, close, extra=[("X-Body-Sha256", hashlib.sha256(body).hexdigest())])
        elif path == "/ws" and (hdr("upgrade") or "").lower() == "websocket":
            self.websocket(hdr("sec-websocket-key") or "")
            return False
        elif path == "/hop":
            # answers with hop-by-hop headers that the proxy must drop
            self.head(200, [("Content-Length", "2"), ("Keep-Alive", "timeout=5"),
                            ("Connection", "X-Secret"), ("X-Secret", "1"),
                            ("Proxy-Connection", "keep-alive"), ("X-Kept", "yes")], close)
            self.wfile.write(b"ok")
        else:
            self.reply(404, b"not found\n", close)
        self.wfile.flush()
        return not close

    def read_chunked(self):
        out = bytearray()
        while True:
            size = int(self.readline().split(b";")[0], 16)
            if size == 0:
                while self.readline() not in (b"\r\n", b"\n"):
                    pass
                return bytes(out)
            out += self.rfile.read(size)
            self.readline()

    def head(self, status, headers, close):
        out = "HTTP/1.1 %d %s\r\n" % (status, {200: "OK", 400: "Bad Request", 404: "Not Found", 101: "Switching Protocols"}.get(status, "X"))
        for k, v in headers:
            out += "%s: %s\r\n" % (k, v)
        if close:
            out += "Connection: close\r\n"
        self.wfile.write(out.encode("latin-1") + b"\r\n")

    def reply(self, status, body, close, ctype="text/plain", extra=()):
        self.head(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))] + list(extra), close)
        self.wfile.write(body)

    def websocket(self, key):
        acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.head(101, [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", acc)], False)
        self.wfile.flush()
        while True:
            op, payload = ws_read_frame(self.rfile)
            if op is None or op == 8:
                self.wfile.write(ws_frame(8, b"", mask=False))
                self.wfile.flush()
                return
            self.wfile.write(ws_frame(op, payload, mask=False))
            self.wfile.flush()


def ws_frame(op, payload, mask=True, fin=True, rsv=0, length=None):
    """One WebSocket frame; length overrides the announced payload length
    (for frames that lie about it)."""
    n = len(payload) if length is None else length
    hdr = bytearray([(0x80 if fin else 0) | rsv | op])
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr.append(mbit | n)
    elif n < 65536:
        hdr.append(mbit | 126)
        hdr += n.to_bytes(2, "big")
    else:
        hdr.append(mbit | 127)
        hdr += n.to_bytes(8, "big")
    if mask:
        key = b"\x11\x22\x33\x44"
        hdr += key
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(hdr) + payload


def ws_read_frame(f):
    """Read one frame from a file-like (read(n)) object: (opcode, payload)."""
    h = f.read(2)
    if len(h) < 2:
        return None, b""
    op = h[0] & 0x0F
    masked = h[1] & 0x80
    n = h[1] & 0x7F
    if n == 126:
        n = int.from_bytes(f.read(2), "big")
    elif n == 127:
        n = int.from_bytes(f.read(8), "big")
    key = f.read(4) if masked else None
    data = f.read(n)
    if key:
        data = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    return op, data


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 512

    def handle_error(self, request, client_address):
        pass  # clients that vanish mid-response are part of the tests


def start(host):
    cls = type("S", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    srv = cls((host, 0), OriginHandler)
    srv.stats = {"connections": 0, "requests": 0}
    srv.port = srv.server_address[1]
    srv.host = host
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.stop = lambda: (srv.shutdown(), srv.server_close())
    return srv


class EchoHandler(socketserver.BaseRequestHandler):
    """Echo every byte; on EOF from the client, send the sha256 (hex) of all
    bytes received, then close."""

    def handle(self):
        s = self.request
        s.settimeout(60)
        h = hashlib.sha256()
        try:
            while True:
                b = s.recv(65536)
                if not b:
                    break
                h.update(b)
                s.sendall(b)
            s.sendall(h.hexdigest().encode())
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def start_echo(host):
    cls = type("E", (_Server,), {"address_family": socket.AF_INET6 if ":" in host else socket.AF_INET})
    srv = cls((host, 0), EchoHandler)
    srv.port = srv.server_address[1]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.stop = lambda: (srv.shutdown(), srv.server_close())
    return srv


def start_udp_echo(host):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(65535)
            except socket.timeout:
                continue
            except OSError:
                return
            s.sendto(b"echo:" + data, addr)

    t = threading.Thread(target=loop, daemon=True)
    t.start()

    class U:
        port = s.getsockname()[1]

        def close(self):
            stop.set()
            t.join(2)
            s.close()

    return U()
