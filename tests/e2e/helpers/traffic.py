"""Proxied requests with credentials, each verified against the origin's
pattern: HTTP proxy GETs (fresh and keep-alive), CONNECT and SOCKS5 tunnels,
and long downloads hashed on the fly."""

import base64
import hashlib
import socket

from . import socks
from .http1 import Reader, request
from .net import connect, recv_exact
from .origin import pattern


def basic(user, password):
    return "Basic " + base64.b64encode(("%s:%s" % (user, password)).encode()).decode()


def _auth(user, password):
    return [("Proxy-Authorization", basic(user, password))] if user is not None else []


def http_get(pport, oport, path, user=None, password=None, timeout=15):
    """GET through the HTTP proxy on a fresh connection. Returns the Response."""
    s = connect(pport, timeout=timeout)
    try:
        h = [("Host", "127.0.0.1:%d" % oport), ("Connection", "close")] + _auth(user, password)
        s.sendall(request("GET", "http://127.0.0.1:%d%s" % (oport, path), h))
        return Reader(s).response()
    finally:
        s.close()


def keepalive_gets(pport, oport, paths, user=None, password=None, timeout=15):
    """Several GETs, one after the other, on one proxy connection."""
    s = connect(pport, timeout=timeout)
    try:
        rd = Reader(s)
        out = []
        for p in paths:
            h = [("Host", "127.0.0.1:%d" % oport)] + _auth(user, password)
            s.sendall(request("GET", "http://127.0.0.1:%d%s" % (oport, p), h))
            out.append(rd.response())
        return out
    finally:
        s.close()


def connect_tunnel(pport, host, port, user=None, password=None, timeout=15):
    """CONNECT host:port. Returns (sock, reader, status); the caller closes."""
    s = connect(pport, timeout=timeout)
    h = [("Host", "%s:%d" % (host, port))] + _auth(user, password)
    s.sendall(request("CONNECT", "%s:%d" % (host, port), h))
    rd = Reader(s)
    r = rd.response(head_request=True)
    return s, rd, r.status


def socks_tunnel(pport, host, port, user, password, timeout=15):
    """SOCKS5 CONNECT with username/password; raises unless granted."""
    s, rep, bound = socks.handshake(pport, host, port, user, password)
    s.settimeout(timeout)
    if rep != 0:
        s.close()
        raise AssertionError("SOCKS5 refused: rep=%r %r" % (rep, bound))
    return s


def tunnel_get(s, rd, oport, path, close=False):
    """An origin-form GET over an open tunnel (to the origin)."""
    h = [("Host", "127.0.0.1:%d" % oport)] + ([("Connection", "close")] if close else [])
    s.sendall(request("GET", path, h))
    return rd.response()


def check_bytes(resp, n, seed):
    """The response is /bytes/n?seed=seed, intact."""
    if resp.status != 200:
        raise AssertionError("status %d: %r" % (resp.status, resp.body[:200]))
    if resp.body != pattern(n, seed):
        raise AssertionError("body of /bytes/%d?seed=%d differs (%d bytes)"
                             % (n, seed, len(resp.body)))


def download(s, oport, n, seed, progress=None, bufsize=1 << 18):
    """GET /bytes/n?seed=seed over the tunnel s; hash the body as it arrives.
    progress: a list whose [0] gets the byte count. Returns the hex digest."""
    s.sendall(request("GET", "/bytes/%d?seed=%d" % (n, seed),
                      [("Host", "127.0.0.1:%d" % oport), ("Connection", "close")]))
    head = bytearray()
    while b"\r\n\r\n" not in head:
        b = s.recv(65536)
        if not b:
            raise EOFError("EOF in the response head")
        head += b
    i = head.index(b"\r\n\r\n") + 4
    lines = bytes(head[:i]).decode("latin-1").split("\r\n")
    if " 200 " not in lines[0] + " ":
        raise AssertionError("download: %r" % lines[0])
    h = hashlib.sha256()
    got = bytes(head[i:])
    h.update(got)
    count = len(got)
    buf = bytearray(bufsize)
    mv = memoryview(buf)
    while count < n:
        k = s.recv_into(mv, min(bufsize, n - count))
        if k == 0:
            raise EOFError("EOF after %d of %d bytes" % (count, n))
        h.update(mv[:k])
        count += k
        if progress is not None:
            progress[0] = count
    return h.hexdigest()


def socks_offer_noauth(pport):
    """Greeting offering only NO AUTH; returns the 2-byte method reply."""
    s = connect(pport)
    try:
        s.sendall(b"\x05\x01\x00")
        return recv_exact(s, 2)
    finally:
        s.close()


def socks4_connect(pport, oport):
    """A SOCKS4 CONNECT to the origin; returns the 2 first reply bytes."""
    s = connect(pport)
    try:
        s.sendall(b"\x04\x01" + oport.to_bytes(2, "big") + socket.inet_aton("127.0.0.1") + b"u\x00")
        return recv_exact(s, 2)
    except (EOFError, ConnectionError) as e:
        return repr(e).encode()
    finally:
        s.close()
