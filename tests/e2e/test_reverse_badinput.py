"""Bad input on the reverse proxy's path ([http] servers): request
smuggling shapes answered 400 by the proxy before an upstream could read a
second request, hop-by-hop headers removed both ways, the head limit
(431), client_max_body_size on the bytes of a chunked body (413, the
upstream connection aborted), Expect: 100-continue answered by the proxy
itself and unknown expectations (417).

The upstream is a recording one: a Python socket server that notes every
request it reads whole (line, headers, body) and every connection that
ended in the middle of a request. After each case the proxy must still be
alive and serving."""

import select
import socket
import ssl
import threading

import pytest

from helpers import http1
from helpers.h2client import Client
from helpers.net import connect, free_port, recv_all, recv_exact, recv_head, serve_tcp, wait_until
from helpers.tunnel import wait_log
from test_reverse import _can_connect, gencert, get, start, wait_serving


class Recorder:
    """An HTTP/1.1 upstream recording what it reads. Paths: /hop answers
    with hop-by-hop headers, /always100 sends its own 100 Continue first,
    /foldresp answers with an obs-fold, /bighead with a 64 KiB header,
    /headte with a chunked body (none to HEAD),
    /short with 5 of the 10 bytes of its body then the close, /badchunk with
    a chunk not followed by CRLF,
    /connframe?NAME with "Connection: keep-alive, NAME" (NAME the field
    that frames its body), /status?NNN with status NNN; anything else
    answers 200 "got N"
    (N: body bytes); /hints?n=N sends N 103 Early Hints before it."""

    def __init__(self):
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(64)
        self.port = self.lst.getsockname()[1]
        self.lock = threading.Lock()
        self.requests = []  # (request line, {lower name: [values]}, body)
        self.cut = 0        # connections closed in the middle of a request
        self.closed = 0     # connections closed, in the middle of a request or not
        self.open = 0       # connections open now
        self.partial = False  # a request head read, its body not yet whole
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.lst.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def lines(self):
        with self.lock:
            return [r[0] for r in self.requests]

    def _serve(self, c):
        with self.lock:
            self.open += 1
        c.settimeout(30)
        buf = bytearray()
        try:
            while self._one(c, buf):
                pass
        except (OSError, EOFError, ValueError):
            with self.lock:
                self.cut += 1
        finally:
            c.close()
            with self.lock:
                self.open -= 1
                self.closed += 1
                self.partial = False

    def _read(self, c, buf, n=None, marker=None):
        while (marker is not None and marker not in buf) or (n is not None and len(buf) < n):
            d = c.recv(65536)
            if not d:
                raise EOFError
            buf += d
        if marker is not None:
            i = buf.index(marker) + len(marker)
        else:
            i = n
        out = bytes(buf[:i])
        del buf[:i]
        return out

    def _one(self, c, buf):
        """Serve one request; False at a clean EOF between requests."""
        if not buf:
            d = c.recv(65536)
            if not d:
                return False
            buf += d
        head = self._read(c, buf, marker=b"\r\n\r\n").decode("latin-1")
        line, *hl = head[:-4].split("\r\n")
        hd = {}
        for h in hl:
            k, _, v = h.partition(":")
            hd.setdefault(k.strip().lower(), []).append(v.strip())
        path = line.split(" ")[1]
        self.partial = True
        if path == "/always100":
            c.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = b""
        if "chunked" in ",".join(hd.get("transfer-encoding", [])).lower():
            while True:
                size = int(self._read(c, buf, marker=b"\r\n").split(b";")[0], 16)
                if size == 0:
                    while self._read(c, buf, marker=b"\r\n") != b"\r\n":
                        pass
                    break
                body += self._read(c, buf, n=size)
                self._read(c, buf, n=2)
        elif "content-length" in hd:
            body = self._read(c, buf, n=int(hd["content-length"][0]))
        with self.lock:
            self.requests.append((line, hd, body))
            self.partial = False
        if path.startswith("/hints?n="):
            # recorded first: the proxy may cut this connection at any 103
            c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
                      * int(path[9:]))
        extra = b""
        if path == "/hop":
            extra = (b"Connection: X-Listed-Resp\r\nX-Listed-Resp: 1\r\nKeep-Alive: timeout=5\r\n"
                     b"Proxy-Connection: keep-alive\r\nTE: trailers\r\nUpgrade: foo\r\n"
                     b"X-End: ok\r\n")
        elif path == "/foldresp":
            extra = b"X-F: a\r\n b\r\n"
        elif path == "/bighead":
            extra = b"X-Big: " + b"a" * (64 * 1024) + b"\r\n"
        elif path == "/headte":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      + (b"" if line.startswith("HEAD ") else b"2\r\nok\r\n0\r\n\r\n"))
            return True
        elif path == "/short":
            # a body shorter than its Content-Length, then the close
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort")
            return False
        elif path == "/badchunk":
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirstXX")
            return True
        elif path.startswith("/status?"):
            c.sendall(b"HTTP/1.1 %s Odd\r\nContent-Length: 3\r\n\r\nodd" % path[8:].encode())
            return True
        elif path.startswith("/connframe?"):
            # Connection naming the framing field, in its own spelling
            c.sendall(b"HTTP/1.1 200 OK\r\nConnection: keep-alive, %s\r\n" % path[11:].encode()
                      + (b"Transfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n0\r\n\r\n"
                         if "transfer" in path.lower() else b"Content-Length: 5\r\n\r\nfirst"))
            return True
        msg = b"got %d" % len(body)
        c.sendall(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(msg) + msg)
        return True

    def close(self):
        self.lst.close()


@pytest.fixture
def rec():
    r = Recorder()
    yield r
    r.close()


def serve(wmproxy, tmp_path, rec, limit="1k", top=""):
    """top: lines for the top of the config (before [http])."""
    port = free_port()
    p = start(wmproxy, tmp_path, top + """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
client_max_body_size = "%(l)s"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(u)d"
""" % {"p": port, "u": rec.port, "l": limit})
    wait_serving(port, path="/ready")
    return p, port


def still_serving(p, port, rec):
    assert p.alive()
    before = len(rec.lines())
    st, _, body = get(port, "/alive")
    assert (st, body) == (200, b"got 0")
    assert len(rec.lines()) == before + 1


def exchange(port, raw, timeout=10):
    s = connect(port, timeout=timeout)
    s.sendall(raw)
    data = recv_all(s)
    s.close()
    return data


SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a.test\r\n\r\n"

BAD = [
    ("two Content-Lengths",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 0\r\nContent-Length: %d\r\n\r\n"
     % len(SMUGGLED) + SMUGGLED, True),
    ("bare LF", b"GET /x HTTP/1.1\nHost: a.test\n\n" + SMUGGLED, True),
    # llhttp itself took these two bare LFs (the request line's, the empty line's)
    ("bare LF after the request line", b"GET /x HTTP/1.1\nHost: a.test\r\n\r\n" + SMUGGLED,
     True),
    ("bare LF as the empty line",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\n" % len(SMUGGLED)
     + SMUGGLED, True),
    ("NUL in a header value", b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-A: a\x00b\r\n\r\n" + SMUGGLED,
     True),
    ("chunk size overflow",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffffff\r\n" + SMUGGLED, False),
    # sizes past 2^63-1: a hop reading them as signed sees a negative length
    ("chunk size 2^64-1",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"ffffffffffffffff\r\nab\r\n0\r\n\r\n" + SMUGGLED, False),
    ("Content-Length 2^63",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 9223372036854775808\r\n\r\n"
     + SMUGGLED, True),
    ("chunk extensions over 4 KiB",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"2;" + b"e" * 5000 + b"\r\nab\r\n0\r\n\r\n" + SMUGGLED, False),
    ("obs-fold", b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-F: a\r\n b\r\n\r\n" + SMUGGLED, True),
    ("obs-fold with a tab",
     b"GET /x HTTP/1.1\r\nHost: a.test\r\nX-F:\r\n\tContent-Length: 5\r\n\r\n" + SMUGGLED, True),
    ("space before colon", b"GET /x HTTP/1.1\r\nHost : a.test\r\n\r\n" + SMUGGLED, True),
    # the trailer goes on raw: bounded as a head (16 KiB), it was not at all
    ("trailer section over 16 KiB",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\nX-T: " + b"a" * 40000 + b"\r\n\r\n" + SMUGGLED, False),
    # the trailer goes upstream raw: its folded lines could carry a request
    ("obs-fold in the trailer",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\nX-T: 1\r\n GET /smuggled HTTP/1.1\r\n Host: a.test\r\n\r\n", False),
    ("CL and TE",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED, True),
    ("chunked, identity",
     b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n"
     b"0\r\n\r\n" + SMUGGLED, True),
    ("no Host on HTTP/1.1", b"GET /x HTTP/1.1\r\nX-A: b\r\n\r\n" + SMUGGLED, True),
]


@pytest.mark.parametrize("raw,head_error", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_smuggling_shapes_answered_400(wmproxy, tmp_path, rec, raw, head_error):
    p, port = serve(wmproxy, tmp_path, rec)
    before, closed = rec.lines(), rec.closed
    data = exchange(port, raw)
    assert data.startswith(b"HTTP/1.1 400 "), data[:200]
    assert data.count(b"HTTP/1.1 ") == 1, data  # nothing answered the smuggled request
    if head_error:
        assert rec.lines() == before  # the upstream saw nothing of it
    else:
        # The head may have gone on before the body turned out bad: that
        # upstream connection is closed, its request incomplete.
        wait_until(lambda: rec.closed > closed, what="the upstream connection closed")
        assert rec.lines() == before
    assert not any("/smuggled" in ln for ln in rec.lines())
    still_serving(p, port, rec)


def test_malformed_host_400(wmproxy, tmp_path, rec):
    """A Host that is no uri-host[:port] (RFC 9110 7.2) is 400 and reaches
    no upstream, over HTTP/1 as over HTTP/2 (whose :authority check already
    refused some): a path, userinfo, a space, a bracket left open, a port
    that is not a number. They were forwarded (and went into {host})."""
    p, port = serve(wmproxy, tmp_path, rec)
    before = rec.lines()
    for host in (b"a.test/zz", b"evil@a.test", b"a.test b", b"[::1", b"a.test:8x", b"a\\b",
                 b"a.test?x"):
        data = exchange(port, b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 400 ") and b"malformed Host" in data, (host, data)
    assert rec.lines() == before
    for host in (b"a.test:8080", b"[::1]:80", b"127.0.0.1"):
        data = exchange(port, b"GET /x HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close"
                        b"\r\n\r\n")
        assert data.startswith(b"HTTP/1.1 200 "), (host, data)
    still_serving(p, port, rec)


def forwarded(port, rec, raw):
    """Send one raw request; its response, and the headers the upstream
    received for it (matched by its request line)."""
    s = connect(port)
    s.sendall(raw)
    r = http1.Reader(s).response()
    s.close()
    line = raw.split(b"\r\n", 1)[0].decode()
    return r, [q for q in rec.requests if q[0] == line][0][1]


def test_hop_by_hop_removed_both_ways(wmproxy, tmp_path, rec):
    p, port = serve(wmproxy, tmp_path, rec)
    r, hd = forwarded(port, rec, b"GET /hop HTTP/1.1\r\nHost: a.test\r\nConnection: X-Listed\r\n"
                      b"X-Listed: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nTrailer: X-T\r\n"
                      b"Upgrade: foo\r\nProxy-Connection: keep-alive\r\nX-Keep: yes\r\n\r\n")
    assert (r.status, r.body) == (200, b"got 0")
    for name in ("x-listed", "keep-alive", "te", "trailer", "upgrade", "proxy-connection"):
        assert name not in hd, (name, hd)
    assert "X-Listed" not in ",".join(hd.get("connection", []))
    assert hd["x-keep"] == ["yes"]
    for name in ("X-Listed-Resp", "Keep-Alive", "Proxy-Connection", "TE", "Upgrade"):
        assert r.header(name) is None, (name, r.headers)
    assert "x-listed-resp" not in (r.header("Connection") or "").lower()
    assert r.header("X-End") == "ok"
    still_serving(p, port, rec)


def test_content_length_goes_in_canonical_form(wmproxy, tmp_path, rec):
    """A Content-Length with leading zeros goes upstream without them: a
    hop reading "010" as octal (strtol base 0) or only so many digits would
    take a part of the body as the next request."""
    p, port = serve(wmproxy, tmp_path, rec)
    for sent, want in ((b"010", "10"), (b"0" * 30 + b"7", "7"), (b"00", "0"), (b"0", "0")):
        n = int(sent)
        r, hd = forwarded(port, rec, b"POST /cl%d HTTP/1.1\r\nHost: a.test\r\nContent-Length: %s"
                          b"\r\n\r\n" % (n, sent) + b"x" * n)
        assert (r.status, r.body) == (200, b"got %d" % n)
        assert hd["content-length"] == [want], (sent, hd)
    still_serving(p, port, rec)


def test_every_x_forwarded_for_field_kept_in_the_chain(wmproxy, tmp_path, rec):
    """A client's X-Forwarded-For split over several fields is one list
    (RFC 9110 5.3): all of it goes on, in order, then the client's address
    (nginx's $proxy_add_x_forwarded_for). Only the first field was kept."""
    p, port = serve(wmproxy, tmp_path, rec)
    r, hd = forwarded(port, rec, b"GET /xff HTTP/1.1\r\nHost: a.test\r\n"
                      b"X-Forwarded-For: 192.0.2.1\r\nX-Other: 1\r\n"
                      b"X-Forwarded-For: 192.0.2.2, 192.0.2.3\r\nX-Forwarded-For: \r\n"
                      b"Connection: close\r\n\r\n")
    assert (r.status, r.body) == (200, b"got 0")
    assert hd["x-forwarded-for"] == ["192.0.2.1, 192.0.2.2, 192.0.2.3, 127.0.0.1"]
    still_serving(p, port, rec)


def test_absolute_form_target_routes_by_its_authority(wmproxy, tmp_path, rec):
    """RFC 9112 3.2.2: a server takes the absolute-form (http://host/path)
    and uses its authority as the host, ignoring Host (nginx does): the
    server is chosen by it and the upstream gets origin-form with that Host.
    It was a 400 'malformed or unsafe request path'."""
    port = free_port()
    p = start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
up_name = "a.test"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(u)d"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
up_name = "b.test"
static_response = "b"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
up_name = "c.test"
static_response = "{host} {path}"
""" % {"p": port, "u": rec.port})
    wait_serving(port, path="/ready")

    def ask(target, host="b.test", version="1.1"):
        s = connect(port)
        s.sendall(("GET %s HTTP/%s\r\n%sConnection: close\r\n\r\n"
                   % (target, version, "Host: %s\r\n" % host if host else "")).encode())
        r = http1.Reader(s).response()
        s.close()
        return r

    r = ask("http://a.test/abs/x?q=1")
    assert (r.status, r.body) == (200, b"got 0")
    line, hd, _ = rec.requests[-1]
    assert line == "GET /abs/x?q=1 HTTP/1.1" and hd["host"] == ["a.test"], (line, hd)
    r = ask("HTTP://A.test:8080?q=2", version="1.0", host=None)
    assert (r.status, r.body) == (200, b"got 0")
    line, hd, _ = rec.requests[-1]
    assert line == "GET /?q=2 HTTP/1.0" and hd["host"] == ["A.test:8080"], (line, hd)
    # the authority chooses the server, whatever Host says
    r = ask("http://b.test/abs/y", host="a.test")
    assert (r.status, r.body) == (200, b"b")
    # and the variables read the target as nginx's $host and $uri do
    r = ask("http://c.test:81/vars/z?k=1#frag", host="a.test")
    assert (r.status, r.body) == (200, b"c.test:81 /vars/z?k=1"), r.body
    before = rec.lines()
    for bad in ("http://u@a.test/x", "ftp://a.test/x", "http:///x", "http://a.test/../x"):
        r = ask(bad, host="a.test")
        assert r.status == 400, (bad, r.status, r.body)
    assert rec.lines() == before
    still_serving(p, port, rec)


def test_obs_fold_in_a_response_502(wmproxy, tmp_path, rec):
    """RFC 9112 5.2: a proxy replaces an obs-fold or refuses the message:
    refused, as any malformed response."""
    p, port = serve(wmproxy, tmp_path, rec)
    st, hd, body = get(port, "/foldresp")
    assert st == 502 and "x-f" not in hd and b"got" not in body
    still_serving(p, port, rec)


def test_answers_cut_by_the_upstream_say_why(wmproxy, tmp_path, rec):
    """An answer the upstream cut short (closed before its body ended, a
    malformed body) keeps its status and the bytes that went out in its
    access line, and says why: the line looked like a complete 200."""
    p, port = serve(wmproxy, tmp_path, rec)
    for path, sent, why in (
            ("/short", b"short", "the target closed before the answer ended"),
            ("/badchunk", b"\r\n\r\n", "malformed response body from the target")):
        s = connect(port)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path.encode())
        data = recv_all(s)
        s.close()
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(sent), data
        tag = 'req="GET %s" code=200' % path
        wait_until(lambda: tag in p.log(), what="the access line of " + path)
        line = [ln for ln in p.log().splitlines() if tag in ln][0]
        assert line.endswith('why="%s"' % why), line
    still_serving(p, port, rec)


def test_interim_responses_bounded(wmproxy, tmp_path, rec):
    """Interim (1xx) heads pass on, up to 16 before the final one; beyond,
    the upstream is answering nothing (each one restarted
    proxy_read_timeout, and over HTTP/2, where they are not held back by
    the client's reading, an endless run grew memory by hundreds of MB a
    second): 502 and a warn line, over HTTP/1 and HTTP/2 alike."""
    p, port = serve(wmproxy, tmp_path, rec)
    s = connect(port)
    s.sendall(b"GET /hints?n=16 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    r = http1.Reader(s).response()
    s.close()
    assert (r.status, r.body) == (200, b"got 0")
    data = exchange(port, b"GET /hints?n=5000 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert b"HTTP/1.1 502 " in data and data.count(b" 103 ") <= 16, data[-300:]
    assert b"too many interim responses" in data
    assert wait_log(p, "sent more than 16 interim (1xx) responses")
    c = Client(port)
    try:
        r = c.response(c.request("/hints?n=16"))
        assert (r.status, bytes(r.data), len(r.informational)) == (200, b"got 0", 16)
        r = c.response(c.request("/hints?n=5000"))
        assert r.status == 502 and len(r.informational) <= 16, (r.status, len(r.informational))
    finally:
        c.close()
    still_serving(p, port, rec)


def test_no_transfer_encoding_to_an_http10_client(wmproxy, tmp_path, rec):
    """RFC 9112 6.1: no Transfer-Encoding in a response to an HTTP/1.0
    request. A chunked body already went decoded; the answer to HEAD (no
    body) kept the field."""
    p, port = serve(wmproxy, tmp_path, rec)
    s = connect(port)
    rd = http1.Reader(s)
    s.sendall(b"HEAD /headte HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
    r = rd.response(head_request=True)
    assert r.status == 200 and r.header("Transfer-Encoding") is None, r.headers
    s.sendall(b"GET /headte HTTP/1.0\r\nHost: a.test\r\nConnection: keep-alive\r\n\r\n")
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"\r\n\r\nok"), data
    assert b"transfer-encoding" not in data.lower(), data
    s = connect(port)
    s.sendall(b"HEAD /headte HTTP/1.1\r\nHost: a.test\r\n\r\n")
    r = http1.Reader(s).response(head_request=True)
    s.close()
    assert r.header("Transfer-Encoding") == "chunked", r.headers
    still_serving(p, port, rec)


@pytest.mark.parametrize("name", ["Content-Length", "transfer-encoding"])
def test_response_connection_naming_its_framing_502(wmproxy, tmp_path, rec, name):
    """A response whose Connection names Content-Length or
    Transfer-Encoding: that field went as hop-by-hop while the body was
    framed by it, so the client got a head without a length (or chunk
    framing as the body) on a kept connection, and read its next answer as
    part of this body. Now refused as any unframeable response: 502,
    logged."""
    p, port = serve(wmproxy, tmp_path, rec)
    s = connect(port)
    s.sendall(b"GET /connframe?%s HTTP/1.1\r\nHost: a.test\r\n\r\n"
              b"GET /next HTTP/1.1\r\nHost: a.test\r\n\r\n" % name.encode())
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 502 "), data[:300]
    assert b"first" not in data and b"got 0" not in data, data
    assert wait_log(p, "bad response from 127.0.0.1:%d: Connection names Content-Length or "
                    "Transfer-Encoding" % rec.port), p.log()[-2000:]
    still_serving(p, port, rec)


def test_response_status_below_100_502(wmproxy, tmp_path, rec):
    """A status under 100 is neither interim nor final (RFC 9110 15): it
    went to the client as the answer while the access log said code=0 and
    no status was counted. Now a malformed response: 502, logged. Statuses
    600-999 still pass (RFC 9110 lets them be used)."""
    p, port = serve(wmproxy, tmp_path, rec)
    for code in ("099", "000"):
        st, _, body = get(port, "/status?" + code)
        assert st == 502 and body != b"odd", (code, st, body)
    assert wait_log(p, "bad response from 127.0.0.1:%d: status code below 100" % rec.port), \
        p.log()[-2000:]
    st, _, body = get(port, "/status?999")
    assert (st, body) == (999, b"odd")
    still_serving(p, port, rec)


def test_no_interim_response_to_an_http10_client(wmproxy, tmp_path, rec):
    """RFC 9110 15.2: no 1xx goes to an HTTP/1.0 client, which knows none
    and takes the first head as the answer: the upstream's 103s were
    passed on to it. Now dropped; an HTTP/1.1 client still gets them."""
    p, port = serve(wmproxy, tmp_path, rec)
    data = exchange(port, b"GET /hints?n=2 HTTP/1.0\r\nHost: a.test\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ") and b" 103 " not in data, data[:300]
    assert data.endswith(b"got 0"), data[-100:]
    data = exchange(port, b"GET /hints?n=2 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    assert data.count(b"HTTP/1.1 103 ") == 2 and data.endswith(b"got 0"), data
    still_serving(p, port, rec)


def test_no_content_length_on_a_204(wmproxy, tmp_path, rec):
    """RFC 9110 8.6: no Content-Length on a 204 (nor a 1xx): an upstream's
    went on to the client, which may read that many bytes of the next
    answer as a body (nginx drops it). Dropped now; the bytes the upstream
    sent after its head do not reach the client."""
    p, port = serve(wmproxy, tmp_path, rec)
    s = connect(port)
    s.sendall(b"GET /status?204 HTTP/1.1\r\nHost: a.test\r\n\r\n"
              b"GET /next HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    s.close()
    first, _, rest = data.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 204 ") and b"content-length" not in first.lower(), data
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b"got 0"), data
    still_serving(p, port, rec)


def test_no_content_length_on_a_204_over_h2(wmproxy, tmp_path, rec):
    """The same over HTTP/2, where a content-length on a 204 (or a 1xx) is
    a malformed response to the client: curl reset the stream
    (PROTOCOL_ERROR) and lost the answer. Dropped from the HEADERS now."""
    import subprocess
    p, port = serve(wmproxy, tmp_path, rec)
    r = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                        "-H", "Host: a.test", "http://127.0.0.1:%d/status?204" % port],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("HTTP/2 204") and "content-length" not in r.stdout.lower(), r.stdout
    still_serving(p, port, rec)


def test_response_head_over_the_limit_502_and_logged(wmproxy, tmp_path, rec):
    """A response head over the 16 KiB limit is a 502 at once, and the log
    says why at the default level (it was a debug line: an operator saw
    code=502 and nothing more)."""
    p, port = serve(wmproxy, tmp_path, rec)
    st, hd, body = get(port, "/bighead")
    assert st == 502 and "x-big" not in hd and b"malformed response" in body, (st, body)
    assert wait_log(p, "bad response from 127.0.0.1:%d: head too large" % rec.port), \
        p.log()[-2000:]
    still_serving(p, port, rec)


def test_head_over_the_limit_431(wmproxy, tmp_path, rec):
    p, port = serve(wmproxy, tmp_path, rec)
    before = rec.lines()
    big = b"X-Big: " + b"a" * (20 * 1024) + b"\r\n"
    data = exchange(port, b"GET /big HTTP/1.1\r\nHost: a.test\r\n" + big + b"\r\n")
    assert data.startswith(b"HTTP/1.1 431 "), data[:200]
    assert rec.lines() == before
    still_serving(p, port, rec)


def chunked(body, size):
    out = b""
    for i in range(0, len(body), size):
        part = body[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def test_chunk_extensions_within_the_bound_pass(wmproxy, tmp_path, rec):
    """Chunk extensions (ignored by HTTP, allowed by RFC 9112 7.1.1) go
    through while a chunk-size line's extensions stay within 4 KiB."""
    p, port = serve(wmproxy, tmp_path, rec)
    data = exchange(port, b"POST /x HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n"
                          b"Connection: close\r\n\r\n2;" + b"e" * 3000 + b";a=b\r\nab\r\n"
                          b"1;last\r\nc\r\n0\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"got 3"), data[:200]
    still_serving(p, port, rec)


def test_chunked_body_over_client_max_body_size_413(wmproxy, tmp_path, rec):
    p, port = serve(wmproxy, tmp_path, rec)
    head = b"POST /up HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n"
    # within the limit (chunk framing does not count): forwarded whole
    data = exchange(port, head.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
                    + chunked(b"y" * 1000, 10))
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"got 1000"), data[:200]
    # over it: 413, and the upstream never reads a whole request
    before, closed = rec.lines(), rec.closed
    data = exchange(port, head + chunked(b"x" * 2048, 512))
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    wait_until(lambda: rec.closed > closed, what="the upstream connection aborted")
    assert rec.lines() == before
    assert wait_log(p, "request body over client_max_body_size")
    # the same, the client sending the body piece by piece after the head
    before, cut = rec.lines(), rec.cut
    s = connect(port)
    s.sendall(head + b"200\r\n" + b"z" * 512 + b"\r\n")
    # the upstream reads the head and the first chunk, waits for the rest
    wait_until(lambda: rec.partial, what="the request's start upstream")
    try:
        s.sendall(chunked(b"z" * 1024, 512))
    except OSError:
        pass  # the proxy may close first
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    wait_until(lambda: rec.cut > cut, what="the upstream connection aborted")
    assert rec.lines() == before
    # Content-Length over the limit: 413 at once, nothing upstream
    st, _, _ = get(port, "/up", method="POST", body=b"x" * 2000)
    assert st == 413 and rec.lines() == before
    still_serving(p, port, rec)


def test_413_reaches_a_client_that_keeps_sending(wmproxy, tmp_path, rec):
    """Content-Length over the limit, the client sending its 8 MiB body
    without waiting: the proxy answers 413, half-closes and reads what keeps
    coming (lingering close), so the client reads the 413 instead of a reset."""
    p, port = serve(wmproxy, tmp_path, rec)
    body = b"b" * (8 << 20)
    for _ in range(3):
        s = connect(port)
        s.sendall(b"POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n" % len(body))
        sent = []

        def push(sock=s):
            try:
                sock.sendall(body)
                sent.append(True)
            except OSError:
                sent.append(False)

        t = threading.Thread(target=push)
        t.start()
        data = recv_all(s)  # raises on a reset
        t.join(30)
        assert not t.is_alive()
        s.close()
        assert data.startswith(b"HTTP/1.1 413 "), data[:200]
        assert sent == [True], "the proxy stopped reading before the body ended"
    still_serving(p, port, rec)


def test_lingering_close_keeps_its_reason(wmproxy, tmp_path, rec):
    """A connection that ends after a lingering close (413 answered, the
    body still coming, the client closes once it has the answer) is logged
    with why it was closed, not with a bare "closed"."""
    p, port = serve(wmproxy, tmp_path, rec, top='default_level = "debug"\n')
    s = connect(port)
    s.sendall(b"POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: 1000000\r\n\r\n" +
              b"b" * 200000)
    assert recv_head(s).startswith(b"HTTP/1.1 413 ")
    s.close()
    assert wait_log(p, "end=http-error"), p.log()[-3000:]
    assert "end=closed" not in p.log(), p.log()[-3000:]


def test_413_over_tls_reaches_a_client_that_keeps_sending(wmproxy, tmp_path, rec):
    """The same over TLS: after the 413 and close_notify the TLS layer
    half-closes and drops what the client still sends until it closes, so
    the 413 is read, and the whole 8 MiB body goes out without a reset."""
    d = gencert(tmp_path / "c", "a.test")
    port = free_port()
    p = start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_ssl = "127.0.0.1:%(p)d"
cert = "%(d)s/server.crt"
key = "%(d)s/server.key"
client_max_body_size = "1k"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(u)d"
""" % {"p": port, "u": rec.port, "d": d})
    ctx = ssl.create_default_context(cafile=d + "/ca.crt")
    ctx.set_alpn_protocols(["http/1.1"])
    wait_until(lambda: _can_connect(port), what="TLS port")
    body = b"b" * (8 << 20)
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="a.test")
        s.sendall(b"POST /big HTTP/1.1\r\nHost: a.test\r\nContent-Length: %d\r\n\r\n" % len(body))
        got, eof, off = b"", False, 0
        while off < len(body):  # one thread: an SSL object is not shared across threads
            s.sendall(body[off:off + 65536])  # raises on a reset
            off += 65536
            while not eof and (s.pending() or select.select([s], [], [], 0)[0]):
                try:
                    chunk = s.recv(65536)
                except ssl.SSLWantReadError:
                    break
                got += chunk
                eof = not chunk
        while not eof:
            chunk = s.recv(65536)
            got += chunk
            eof = not chunk
        s.close()
        assert got.startswith(b"HTTP/1.1 413 "), got[:200]
    assert p.alive()


def test_expect_100_continue_answered_by_the_proxy(wmproxy, tmp_path, rec):
    p, port = serve(wmproxy, tmp_path, rec)
    for path in ("/e", "/always100"):  # the second upstream sends its own 100
        s = connect(port)
        s.sendall(b"POST %s HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
                  b"Content-Length: 5\r\n\r\n" % path.encode())
        assert recv_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"  # before any body byte
        s.sendall(b"hello")
        head = recv_head(s)
        assert head.startswith(b"HTTP/1.1 200 "), head
        assert recv_exact(s, 5) == b"got 5"
        s.close()
        _, hd, body = [q for q in rec.requests if q[0].startswith("POST %s " % path)][-1]
        assert body == b"hello" and "expect" not in hd, hd
    # over client_max_body_size: the 413 comes alone, no 100
    data = exchange(port, b"POST /e HTTP/1.1\r\nHost: a.test\r\nExpect: 100-continue\r\n"
                          b"Content-Length: 5000\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    # an HTTP/1.0 client gets no 1xx, and the upstream no Expect
    data = exchange(port, b"POST /e10 HTTP/1.0\r\nHost: a.test\r\nExpect: 100-continue\r\n"
                          b"Content-Length: 2\r\n\r\nhi")
    assert data.startswith(b"HTTP/1.1 200 ") and b" 100 " not in data, data[:200]
    _, hd, _ = [q for q in rec.requests if q[0].startswith("POST /e10 ")][-1]
    assert "expect" not in hd
    still_serving(p, port, rec)


def test_unknown_expectation_417(wmproxy, tmp_path, rec):
    p, port = serve(wmproxy, tmp_path, rec)
    before = rec.lines()
    data = exchange(port, b"POST /e HTTP/1.1\r\nHost: a.test\r\nExpect: foo\r\n"
                          b"Content-Length: 2\r\n\r\nhi")
    assert data.startswith(b"HTTP/1.1 417 "), data[:200]
    assert rec.lines() == before
    still_serving(p, port, rec)


def test_h2_body_without_length_over_client_max_body_size_413(wmproxy, tmp_path, rec):
    """An HTTP/2 request body without content-length reaches the engine
    chunked: the limit counts its bytes as for HTTP/1.1."""
    from helpers import h2client as H
    p, port = serve(wmproxy, tmp_path, rec)
    c = H.Client(port)
    st, _, body = c.get("/h2small", method="POST", body=b"s" * 500)
    assert (st, body) == (200, b"got 500")
    before, closed = rec.lines(), rec.closed
    st, _, _ = c.get("/h2big", method="POST", body=b"b" * 4096)
    assert st == 413
    c.close()
    wait_until(lambda: rec.closed > closed, what="the upstream connection aborted")
    assert rec.lines() == before
    still_serving(p, port, rec)


def test_answer_before_the_body_ends_says_connection_close(wmproxy, tmp_path):
    """An upstream that answers an upload before its body ended (a 401 at
    once): the connection ends after that answer, and its head says
    "Connection: close" so the client does not send its next request on
    it (it used to say nothing)."""
    def early(c):
        c.settimeout(20)
        try:
            recv_head(c)
            c.sendall(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nnope")
            while c.recv(65536):
                pass
        except OSError:
            pass
        finally:
            c.close()
    up = serve_tcp(early)
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://127.0.0.1:%d"
""" % (port, up.getsockname()[1]))
    wait_until(lambda: _can_connect(port), what="the proxy listening")  # no request yet
    s = connect(port)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 5000000\r\n\r\n" + b"u" * 1000)
    head = recv_head(s)
    assert head.startswith(b"HTTP/1.1 401 "), head
    assert b"\r\nConnection: close\r\n" in head, head
    assert recv_exact(s, 4) == b"nope"
    s.close()
    # a body that ended before the answer: the connection stays
    s = connect(port)
    s.sendall(b"POST /up HTTP/1.1\r\nHost: a.test\r\nContent-Length: 10\r\n\r\n" + b"x" * 10)
    head = recv_head(s)
    assert head.startswith(b"HTTP/1.1 401 ") and b"Connection: close" not in head, head
    s.close()
    up.close()
