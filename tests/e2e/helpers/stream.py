"""[stream] test helpers: configs, peers (TCP/TLS/UDP echo, a PROXY header
reader), bounded transfers."""

import hashlib
import os
import socket
import ssl
import threading

from helpers.net import wait_until
from helpers.origin import ws_frame  # noqa: F401 (tests import it from here too)


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def config(tmp_path, body, name="stream.toml", control=None, workers=2, top=""):
    """top: more top-level lines (before [stream])."""
    top = (('control = "127.0.0.1:%d"\n' % control) if control else "disable_control = true\n") + top
    return write(tmp_path / name, top + "workers = %d\n[stream]\n" % workers + body)


def server(**kv):
    """One [[stream.server]] block."""
    out = ["[[stream.server]]"]
    for k, v in kv.items():
        if isinstance(v, bool):
            v = "true" if v else "false"
        elif isinstance(v, int):
            v = str(v)
        else:
            v = '"%s"' % v
        out.append("%s = %s" % (k, v))
    return "\n".join(out) + "\n"


def exchange(port, data, host="127.0.0.1", wrap=None, timeout=20):
    """Send data, half-close, read until EOF (a writer thread, so neither
    side blocks the other). Returns the bytes received."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    if wrap:
        s = wrap(s)
    err = []

    def w():
        try:
            view = memoryview(data)
            for i in range(0, len(data), 1 << 20):
                s.sendall(view[i:i + (1 << 20)])
            if isinstance(s, ssl.SSLSocket):
                pass  # TLS: the echo answers the digest when the test says so
            else:
                s.shutdown(socket.SHUT_WR)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=w, daemon=True)
    t.start()
    got = bytearray()
    while True:
        try:
            b = s.recv(1 << 20)
        except (socket.timeout, ConnectionResetError):
            break
        if not b:
            break
        got += b
    t.join(timeout)
    s.close()
    return bytes(got)


def echo_reply(data):
    """What helpers.origin's echo answers to data then EOF."""
    return data + hashlib.sha256(data).hexdigest().encode()


class ThreadedServer:
    """A TCP server on 127.0.0.1 (port: self.port) serving each connection
    with self.one(sock) in a thread of its own; close() stops accepting."""

    def __init__(self):
        self.s = socket.socket()
        self.s.bind(("127.0.0.1", 0))
        self.s.listen(16)
        self.port = self.s.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.s.accept()
            except OSError:
                return
            threading.Thread(target=self.one, args=(c,), daemon=True).start()

    def one(self, c):
        raise NotImplementedError

    def close(self):
        self.s.close()


class PPBackend(ThreadedServer):
    """TCP server that reads a PROXY header (v1 line or v2 block), records
    it, then echoes."""

    def __init__(self):
        self.headers = []
        super().__init__()

    def one(self, c):
        c.settimeout(10)
        try:
            first = c.recv(16, socket.MSG_WAITALL)
            if first.startswith(b"PROXY "):
                rest = b""
                while not (first + rest).endswith(b"\r\n"):
                    rest += c.recv(1)
                self.headers.append(("v1", (first + rest).decode()))
            elif first[:12] == b"\r\n\r\n\x00\r\nQUIT\n":
                n = int.from_bytes(first[14:16], "big")
                body = c.recv(n, socket.MSG_WAITALL) if n else b""
                self.headers.append(("v2", first + body))
            else:
                self.headers.append(("none", first))
                c.sendall(first)
            while True:
                b = c.recv(65536)
                if not b:
                    break
                c.sendall(b)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        c.close()


def v2_addrs(block):
    """(src ip, src port) of a v2 TCP4/TCP6 header."""
    fam = block[13]
    body = block[16:]
    if fam == 0x11:
        return socket.inet_ntop(socket.AF_INET, body[0:4]), int.from_bytes(body[8:10], "big")
    if fam == 0x21:
        return socket.inet_ntop(socket.AF_INET6, body[0:16]), int.from_bytes(body[32:34], "big")
    return None, None


class TLSEcho(ThreadedServer):
    """A TLS echo server (cert/key) on 127.0.0.1; records each SNI seen."""

    def __init__(self, cert, key):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sni = []
        self.ctx.sni_callback = lambda so, name, ctx: self.sni.append(name)
        super().__init__()

    def one(self, c):
        try:
            c.settimeout(10)
            t = self.ctx.wrap_socket(c, server_side=True)
            while True:
                b = t.recv(65536)
                if not b:
                    break
                t.sendall(b)
            t.close()
        except (OSError, ssl.SSLError):
            c.close()


def udp_echo(host):
    """UDP echo on host (any size); returns (port, stop)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((host, 0))
    s.settimeout(0.2)
    stop = threading.Event()
    seen = set()

    def loop():
        while not stop.is_set():
            try:
                data, addr = s.recvfrom(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            seen.add(addr)
            try:
                s.sendto(data, addr)
            except OSError:
                pass
        s.close()

    threading.Thread(target=loop, daemon=True).start()
    return s.getsockname()[1], stop, seen


def status_listener(cport, addr):
    from helpers.control import api
    st, _, body = api(cport, "GET", "/status")
    assert st == 200
    for l in body.get("listeners", []):
        if l.get("addr") == addr:
            return l
    return None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_log_count(proc, text, n, timeout=10):
    return wait_until(lambda: proc.log().count(text) >= n, timeout, what="%d x %r in the log" % (n, text))


__all__ = ["write", "config", "server", "exchange", "echo_reply", "PPBackend", "v2_addrs",
           "TLSEcho", "udp_echo", "status_listener", "rss_kb", "wait_log_count", "os"]


# ---- a raw WebSocket client, to send what a library never would ----

def ws_connect(port, path="/", headers=None, host="127.0.0.1"):
    """Upgrade a new connection; returns the socket after a 101, or raises
    with the answer's status line."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    h = {"Host": "a.test", "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": key, "Sec-WebSocket-Version": "13"}
    h.update(headers or {})
    s = socket.create_connection((host, port), timeout=10)
    req = "GET %s HTTP/1.1\r\n" % path + "".join("%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None)
    s.sendall(req.encode() + b"\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            break
        head += b
    status = head.split(b"\r\n", 1)[0].decode()
    if " 101 " not in status + " ":
        s.close()
        raise ConnectionError(status)
    acc = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                        .encode()).digest())
    assert b"Sec-WebSocket-Accept: " + acc in head
    return s


def ws_status(port, headers=None, method="GET", raw=None):
    """The status line the server answers to an upgrade request."""
    if raw is None:
        import base64
        h = {"Host": "a.test", "Upgrade": "websocket", "Connection": "Upgrade",
             "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
             "Sec-WebSocket-Version": "13"}
        h.update(headers or {})
        raw = ("%s / HTTP/1.1\r\n" % method + "".join(
            "%s: %s\r\n" % kv for kv in h.items() if kv[1] is not None) + "\r\n").encode()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(raw)
    data = b""
    while b"\r\n" not in data:
        b = s.recv(4096)
        if not b:
            break
        data += b
    s.close()
    return data.split(b"\r\n", 1)[0].decode()


def ws_send(s, op, payload, **kw):
    s.sendall(ws_frame(op, payload, **kw))


def ws_read(s):
    """One frame from the server (unmasked): (fin, op, payload), or (None, None, b"") at EOF."""
    def exact(n):
        out = b""
        while len(out) < n:
            b = s.recv(n - len(out))
            if not b:
                raise EOFError
            out += b
        return out
    try:
        h = exact(2)
        assert not h[1] & 0x80, "a server frame must not be masked"
        n = h[1] & 0x7F
        if n == 126:
            n = int.from_bytes(exact(2), "big")
        elif n == 127:
            n = int.from_bytes(exact(8), "big")
        return bool(h[0] & 0x80), h[0] & 0x0F, exact(n)
    except (EOFError, ConnectionResetError):
        return None, None, b""


def ws_recv_data(s, n):
    """n payload bytes of binary frames (pongs skipped)."""
    out = b""
    while len(out) < n:
        fin, op, p = ws_read(s)
        assert op is not None, "closed after %d bytes" % len(out)
        if op in (0, 2):
            out += p
    return out


def ws_close_code(s):
    """Read until a close frame: its code (None without one)."""
    while True:
        fin, op, p = ws_read(s)
        if op is None:
            return None
        if op == 8:
            return int.from_bytes(p[:2], "big") if len(p) >= 2 else 1005
