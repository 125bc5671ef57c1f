"""A tiny HTTP/1.1 client over a raw socket: enough to check exact bytes,
keep-alive and pipelining."""

from .net import recv_exact


class Response:
    def __init__(self, version, status, reason, headers, body):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (name, value)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def all(self, name):
        return [v for k, v in self.headers if k.lower() == name.lower()]


class Reader:
    def __init__(self, sock):
        self.s = sock
        self.buf = bytearray()

    def _fill(self):
        b = self.s.recv(65536)
        if not b:
            raise EOFError("connection closed")
        self.buf += b

    def line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        i = self.buf.index(b"\r\n")
        ln = bytes(self.buf[:i])
        del self.buf[: i + 2]
        return ln

    def exact(self, n):
        while len(self.buf) < n:
            self._fill()
        b = bytes(self.buf[:n])
        del self.buf[:n]
        return b

    def rest(self):
        try:
            while True:
                self._fill()
        except EOFError:
            pass
        b = bytes(self.buf)
        self.buf.clear()
        return b

    def response(self, head_request=False):
        while True:
            status_line = self.line().decode("latin-1")
            version, status, *reason = status_line.split(" ", 2)
            headers = []
            while True:
                ln = self.line()
                if not ln:
                    break
                k, v = ln.decode("latin-1").split(":", 1)
                headers.append((k.strip(), v.strip()))
            status = int(status)
            r = Response(version, status, reason[0] if reason else "", headers, b"")
            if 100 <= status < 200 and status != 101:
                continue
            break
        if head_request or status in (204, 304) or status == 101:
            return r
        te = r.header("Transfer-Encoding")
        cl = r.header("Content-Length")
        if te and "chunked" in te.lower():
            body = bytearray()
            while True:
                size = int(self.line().split(b";")[0], 16)
                if size == 0:
                    while self.line():
                        pass
                    break
                body += self.exact(size)
                self.line()
            r.body = bytes(body)
        elif cl is not None:
            r.body = self.exact(int(cl))
        else:
            r.body = self.rest()
        return r


def request(method, url, headers=None, body=b"", version="HTTP/1.1"):
    h = list(headers or [])
    if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in h):
        h.append(("Content-Length", str(len(body))))
    out = "%s %s %s\r\n" % (method, url, version)
    for k, v in h:
        out += "%s: %s\r\n" % (k, v)
    return out.encode("latin-1") + b"\r\n" + body
