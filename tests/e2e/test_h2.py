"""HTTP/2 on the public HTTP ports (h2/h2.h): ALPN h2 and h2c, streams in
parallel through the one HTTP/1 engine and its keep-alive pool, flow control
tied to back-pressure, WebSocket over HTTP/2 (RFC 8441), limits and floods,
GOAWAY on reload and stop, and the tunnel's public HTTP(S) mappings.
Clients: curl --http2 / --http2-prior-knowledge, nghttp, python3-h2."""

import datetime
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

import pytest

from conftest import BIN
from helpers import h2client as H
from helpers import origin as origin_mod
from helpers.control import api, rss_kb
from helpers.net import (free_port, full_listener, read_slowly, recv_all, recv_head,
                          wait_until)
from helpers.tunnel import wait_log
from test_metrics import metrics, sample
from test_tunnel import Nodes

h2 = pytest.importorskip("h2")

ENHANCE_YOUR_CALM = 0xb
PROTOCOL_ERROR = 0x1
REFUSED_STREAM = 0x7


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("h2cert") / "ca")
    r = subprocess.run([BIN, "gen-cert", "--ca-dir", d, "server", "a.test", "off.test"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return d


def start(wmproxy, tmp_path, body, cport=None, name="h2.toml"):
    top = 'control = "127.0.0.1:%d"\n' % cport if cport else "disable_control = true\n"
    path = tmp_path / name
    path.write_text(top + "workers = 2\n" + body)
    return wmproxy(["run", "-c", str(path)])


def serve(wmproxy, tmp_path, cert, origin, extra_server="", cport=None, extra_loc=""):
    """Plain port p, TLS port s, locations: /static, /ws (is_ws), / (proxy)."""
    p, s = free_port(), free_port()
    proc = start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
bind_ssl = "127.0.0.1:%(s)d"
up_name = "a.test"
cert = "%(d)s/server.crt"
key = "%(d)s/server.key"
%(extra)s
[[http.server.location]]
rule = "/static"
static_response = "static {method} {host}"
[[http.server.location]]
rule = "/ws"
is_ws = true
proxy_url = "ws://127.0.0.1:%(o)d"
%(loc)s
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(o)d"
headers = ["proxy X-Via-Rule yes"]
""" % {"p": p, "s": s, "d": cert, "o": origin.port, "extra": extra_server, "loc": extra_loc},
        cport=cport)
    wait_until(lambda: curl("http://127.0.0.1:%d/static" % p).returncode == 0,
               what="wmproxy serving")
    return proc, p, s


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20", "-k"] + list(args),
                          capture_output=True, timeout=30)


def version_of(*args):
    r = curl("-o", "/dev/null", "-w", "%{http_version} %{http_code}", *args)
    assert r.returncode == 0, r.stderr
    return r.stdout.decode()


# ---- 1. ALPN h2 on bind_ssl, h2c on plain ports, http2 = false ----

def test_alpn_h2c_and_http2_off(wmproxy, tmp_path, cert, origin):
    proc, p, s = serve(wmproxy, tmp_path, cert, origin)
    assert version_of("--http2", "https://127.0.0.1:%d/static" % s) == "2 200"
    assert version_of("--http1.1", "https://127.0.0.1:%d/static" % s) == "1.1 200"
    assert version_of("--http2-prior-knowledge", "http://127.0.0.1:%d/static" % p) == "2 200"
    # "Upgrade: h2c" on the plain port: curl --http2 asks for it
    r = curl("-v", "--http2", "http://127.0.0.1:%d/static" % p)
    assert b"101 Switching Protocols" in r.stderr and r.stdout.startswith(b"static GET "), r.stderr
    assert version_of("--http1.1", "http://127.0.0.1:%d/static" % p) == "1.1 200"
    r = subprocess.run(["nghttp", "-v", "https://127.0.0.1:%d/static" % s],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and b"static GET" in r.stdout, r.stderr
    assert b"The negotiated protocol: h2" in r.stdout
    r = subprocess.run(["nghttp", "-u", "http://127.0.0.1:%d/static" % p],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith(b"static GET "), r.stderr
    # python3-h2: prior knowledge, and the Upgrade handshake (initiate_upgrade_connection)
    assert H.Client(p).get("/static")[:1] == (200,)
    st, body = upgrade_get(p, "/static")
    assert st == 200 and body.startswith(b"static GET "), (st, body)
    st, body = upgrade_get(p, "/bytes/70000")  # proxied, larger than a window
    assert st == 200 and body == origin_mod.pattern(70000)
    assert wait_log(proc, "proto=reverse-h2"), proc.log()[-2000:]

    # http2 = false: only HTTP/1.1 (ALPN, prior knowledge and Upgrade)
    (tmp_path / "off").mkdir()
    proc2, p2, s2 = serve(wmproxy, tmp_path / "off", cert, origin, extra_server="http2 = false")
    assert version_of("--http2", "https://127.0.0.1:%d/static" % s2) == "1.1 200"
    assert version_of("--http2", "http://127.0.0.1:%d/static" % p2) == "1.1 200"
    r = curl("--http2-prior-knowledge", "http://127.0.0.1:%d/static" % p2)
    assert r.returncode != 0
    st, body = upgrade_get(p2, "/static")
    assert st == 200 and body.startswith(b"static GET "), "no upgrade: HTTP/1.1 answers"


HTTP_1_1_REQUIRED = 0xd


def test_http2_off_on_a_shared_address(wmproxy, tmp_path, cert, origin):
    """Two servers on one plain and one TLS address, the second with
    http2 = false. Prior knowledge (decided by the first server) and a TLS
    connection whose SNI chose the first server still carry requests for
    the second: those streams are reset with HTTP_1_1_REQUIRED, which asks
    the client to send them again over HTTP/1.1; the connection goes on."""
    p, s = free_port(), free_port()
    block = """[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
bind_ssl = "127.0.0.1:%(s)d"
up_name = "%(name)s.test"
cert = "%(d)s/server.crt"
key = "%(d)s/server.key"
static_response = "%(name)s {host}"
"""
    proc = start(wmproxy, tmp_path, "[http]\n" + "".join(
        block % {"p": p, "s": s, "d": cert, "name": name} + extra
        for name, extra in (("a", ""), ("off", "http2 = false\n"))))
    wait_until(lambda: curl("http://127.0.0.1:%d/" % p).returncode == 0, what="wmproxy serving")
    for tls, port in ((False, p), (True, s)):
        c = H.Client(port, tls=tls)
        st = c.response(c.request("/", authority="off.test"))
        assert st.reset == HTTP_1_1_REQUIRED and st.status is None, (tls, st.reset, st.status)
        assert c.get("/", authority="a.test") == (200, c.streams[3].headers, b"a a.test"), tls
        for _ in range(5):  # refusals are not client resets: no flood verdict
            assert c.response(c.request("/", authority="off.test")).reset == HTTP_1_1_REQUIRED
        assert c.get("/", authority="a.test")[0] == 200 and c.goaway is None
        c.close()
    assert wait_log(proc, "its server has HTTP/2 off: HTTP_1_1_REQUIRED"), proc.log()[-2000:]
    # curl answers the reset by sending the request again over HTTP/1.1
    r = curl("--http2-prior-knowledge", "-H", "Host: off.test", "-w", " %{http_version}",
             "http://127.0.0.1:%d/" % p)
    assert r.returncode == 0 and r.stdout == b"off off.test 1.1", (r.stdout, r.stderr)
    r = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-w", " %{http_version}",
             "http://127.0.0.1:%d/" % p)
    assert r.stdout == b"a a.test 2", r.stdout
    # TLS: the SNI picks the server, ALPN follows it
    r = curl("--http2", "--resolve", "off.test:%d:127.0.0.1" % s, "-w", " %{http_version}",
             "https://off.test:%d/" % s)
    assert r.stdout == b"off off.test:%d 1.1" % s, (r.stdout, r.stderr)


def upgrade_get(port, path):
    """python3-h2's Upgrade path: GET with "Upgrade: h2c" and the
    HTTP2-Settings initiate_upgrade_connection() made; after the 101 the
    answer comes on stream 1. Returns (status, body); a server that does not
    upgrade answers in HTTP/1.1, returned as is."""
    s = H.open_socket(port)
    c = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8"))
    settings = c.initiate_upgrade_connection()
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\n"
              b"Upgrade: h2c\r\nHTTP2-Settings: %s\r\n\r\n" % (path.encode(), settings))
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        assert d, buf
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101 "):
        s.close()
        return int(head.split()[1]), rest
    s.sendall(c.data_to_send())
    status, data, ended = None, bytearray(), False
    while not ended:
        for ev in c.receive_data(rest):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                status = int(dict(ev.headers)[":status"])
            elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1:
                data += ev.data
                c.acknowledge_received_data(ev.flow_controlled_length, 1)
            elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                ended = ended or ev.stream_id == 1
        s.sendall(c.data_to_send())
        if not ended:
            rest = s.recv(65536)
            assert rest, "closed before the answer ended"
    s.close()
    return status, bytes(data)


def test_h2_request_translation(wmproxy, tmp_path, cert, origin):
    """:authority wins over Host, cookie crumbs are joined, header rules and
    routing are the HTTP/1 ones, the upstream sees HTTP/1.1."""
    _, p, s = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(s, tls=True)
    st, hd, body = c.get("/headers", headers=[("cookie", "a=1"), ("cookie", "b=2"),
                                               ("host", "ignored.test"), ("x-one", "1")])
    assert st == 200
    doc = json.loads(body)
    h = {k.lower(): v for k, v in doc["headers"]}
    assert doc["reqline"].endswith("HTTP/1.1")
    assert h["host"] == "a.test" and h["cookie"] == "a=1; b=2" and h["x-one"] == "1"
    assert h["x-via-rule"] == "yes"
    assert "connection" not in hd and "transfer-encoding" not in hd
    # a POST body without a length goes chunked; an echo comes back whole
    sid = c.request("/echo", method="POST", body=b"x" * 100000)
    st = c.response(sid)
    assert st.status == 200 and bytes(st.data) == b"x" * 100000
    # bad requests: connection-specific headers are refused (stream error)
    sid = c.request("/headers", headers=[("x-ok", "1")])
    assert c.response(sid).status == 200
    c.close()
    r = curl("--http2-prior-knowledge", "-H", "Transfer-Encoding: chunked",
             "http://127.0.0.1:%d/static" % p)
    assert r.returncode == 0  # curl drops it itself for HTTP/2


def test_refused_head_request_has_no_body(wmproxy, tmp_path, cert, origin):
    """A HEAD the translation refuses (431, 400) is answered with HEADERS
    and END_STREAM, no DATA: a body made nghttp2 (curl -I) and python3-h2
    reset the stream as malformed, so the client never saw the status."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    many = []
    for i in range(300):
        many += ["-H", "x-h%d: v" % i]
    for extra in ([], ["-I"]):
        r = curl("-i", "--http2-prior-knowledge", *(extra + many + ["http://127.0.0.1:%d/x" % p]))
        assert r.returncode == 0 and r.stdout.startswith(b"HTTP/2 431 "), (extra, r.stdout, r.stderr)
    c = H.Client(p)
    st = c.response(c.request("/x", method="HEAD", authority="user@a.test"))
    assert st.status == 400 and st.ended and st.reset is None and not st.data
    assert st.headers.get("date", "").endswith(" GMT"), st.headers  # as over HTTP/1
    st = c.response(c.request("/x", method="HEAD", headers=[("x-h%d" % i, "v") for i in range(300)]))
    assert st.status == 431 and st.ended and st.reset is None and not st.data
    assert c.get("/static")[0] == 200  # the connection goes on
    c.close()
    # each refused request has its access line, as over HTTP/1 (it had only
    # an "h2: stream N answered" line)
    wait_until(lambda: proc.log().count('req="HEAD /x" code=431 ') == 2, what="access lines")
    log = proc.log()
    assert 'req="HEAD /x" code=400 in=0 out=0 ms=0 why="malformed request"' in log, log[-3000:]
    assert log.count('req="GET /x" code=431 ') == 1 and log.count('req="HEAD /x" code=431 ') == 2


def test_refused_requests_log_and_count_as_http2_requests(wmproxy, tmp_path, cert, origin):
    """A request the HTTP/2 translation refuses (431 here) is one of the
    HTTP/2 requests: its access line names the same proto as every other
    stream's (it said the connection's, "http"), and it is counted in
    wmproxy_http_requests_total with them (it was not counted at all)."""
    cport = free_port()
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, cport=cport)
    c = H.Client(p)
    st = c.response(c.request("/x", headers=[("x-h%d" % i, "v") for i in range(300)]))
    assert st.status == 431
    assert c.get("/static")[0] == 200
    c.close()
    wait_until(lambda: 'req="GET /x" code=431 ' in proc.log(), what="the refusal's access line")
    line = [ln for ln in proc.log().splitlines() if 'req="GET /x" code=431 ' in ln][0]
    assert " access proto=reverse-h2 " in line, line
    m = metrics(cport)
    assert sample(m, "wmproxy_http_requests_total", proto="reverse-h2", code="4xx") == 1, m
    assert sample(m, "wmproxy_http_requests_total", proto="reverse-h2", code="2xx") == 1, m


def test_connect_refusals_say_why(wmproxy, tmp_path, cert, origin):
    """A plain CONNECT (405) and an extended CONNECT of an unknown protocol
    (501) were both answered "malformed request": the text now says what is
    refused."""
    _, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    sid = c.c.get_next_available_stream_id()
    c.c.send_headers(sid, [(":method", "CONNECT"), (":authority", "a.test:443")], end_stream=True)
    c.streams[sid] = H.Stream()
    c.flush()
    st = c.response(sid)
    assert st.status == 405 and bytes(st.data).startswith(b"CONNECT is not served here"), st.data
    st = c.response(c.request("/ws", method="CONNECT", extra_pseudo=[(":protocol", "nope")]))
    assert st.status == 501 and b"protocol not supported" in bytes(st.data), st.data
    st = c.response(c.request("/x", authority="u@a.test"))
    assert st.status == 400 and bytes(st.data) == b"malformed request\n"
    c.close()


def test_malformed_request_reset_is_logged(wmproxy, tmp_path, cert, origin):
    """nghttp2 resets a malformed request itself (RFC 9113 8.1.1): a
    connection-specific field, DATA longer or shorter than content-length.
    The reset (PROTOCOL_ERROR) got no log line at all; now one info line
    says why, and nothing reaches the upstream."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    before = origin.stats["requests"]
    post = [("content-length", "10")]
    cases = [
        (H.headers_block("/headers", extra=[("te", "gzip")]), 5, b"", "Invalid HTTP header field"),
        (H.headers_block("/echo", method="POST", extra=post), 4, H.frame(0, 1, 1, b"12345"),
         "DATA against its content-length"),
        (H.headers_block("/echo", method="POST", extra=post), 4, H.frame(0, 1, 1, b"x" * 20),
         "DATA against its content-length"),
    ]
    for n, (block, flags, more, why) in enumerate(cases):
        s = H.raw_open(p)
        s.sendall(H.frame(1, flags, 1, block) + more)
        frames = []
        deadline = time.monotonic() + 10
        while not any(t == 3 for t, _, _, _ in frames) and time.monotonic() < deadline:
            frames += H.read_frames(s, timeout=1, until_goaway=False)
        s.close()
        rst = [pl for t, _, sid, pl in frames if t == 3 and sid == 1]
        assert rst and struct.unpack(">I", rst[0])[0] == PROTOCOL_ERROR, frames
        assert not any(t == 1 and sid == 1 for t, _, sid, _ in frames), frames
        assert wait_log(proc, "stream 1: " + why, count=2 if n == 2 else 1), proc.log()[-2000:]
    assert wait_log(proc, "RST_STREAM PROTOCOL_ERROR", count=3), proc.log()[-2000:]
    assert origin.stats["requests"] == before


def test_plain_port_skips_an_empty_line_before_an_http1_request(wmproxy, tmp_path, cert,
                                                                   origin):
    """RFC 9112 2.2: an empty line before the request line is skipped. On a
    plain port that also takes HTTP/2 it was taken for HTTP/2 (anything but
    an HTTP/1 request line is), and the client got a GOAWAY."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    s = socket.create_connection(("127.0.0.1", p), timeout=10)
    s.sendall(b"\r\nGET /static HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
    got = recv_all(s)
    s.close()
    assert got.startswith(b"HTTP/1.1 200 "), got[:200]
    assert got.endswith(b"static GET a.test"), got[-200:]


def test_answers_cut_short_say_why_in_their_access_line(wmproxy, tmp_path, cert, origin):
    """A stream the client resets during its answer, and an HTTP/1 client
    that closes during its answer, each have an access line that says why
    the answer stopped (it looked like a complete 200 with fewer bytes); a
    finished answer's line has no why."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    sid = c.request("/bytes/50000000")
    c.wait(lambda: c.streams[sid].status == 200 and len(c.streams[sid].data) > 100000,
           what="the first bytes")
    c.c.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
    c.flush()
    st, _, body = c.get("/bytes/1000")
    assert st == 200 and len(body) == 1000
    wait_until(lambda: 'req="GET /bytes/50000000" code=200' in proc.log(), what="the cut line")
    cut = [ln for ln in proc.log().splitlines() if 'req="GET /bytes/50000000"' in ln][0]
    assert cut.endswith('why="stream reset by the client"'), cut
    done = [ln for ln in proc.log().splitlines() if 'req="GET /bytes/1000"' in ln][0]
    assert "why=" not in done, done
    s = socket.create_connection(("127.0.0.1", p), timeout=10)
    s.sendall(b"GET /bytes/40000000?h1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
    assert len(s.recv(65536)) > 0
    s.close()
    wait_until(lambda: 'req="GET /bytes/40000000?h1"' in proc.log(), what="the HTTP/1 line")
    cut = [ln for ln in proc.log().splitlines() if 'req="GET /bytes/40000000?h1"' in ln][0]
    assert re.search(r'code=200 .*why="(the client closed before the answer ended|'
                     r'client connection error before the answer ended)"$', cut), cut
    c.close()


def test_answers_handed_over_parsed_log_as_http1(wmproxy, tmp_path, cert, origin):
    """The engine hands an HTTP/2 stream its answer parsed (no HTTP/1 bytes
    in between): hop-by-hop fields still go, response header rules still
    apply (they take the bytes path), chunked bodies arrive unframed, and
    the access log counts exactly what an HTTP/1.1 client's line counts."""
    logs = tmp_path / "logs"
    os.makedirs(str(logs))
    p, q = free_port(), free_port()
    start(wmproxy, tmp_path, """
[http]
access_log = "access main"
[http.log_names]
access = "%(d)s/access.log"
[http.log_format]
main = "{url} st={status} up={up_status} bytes={bytes_sent} body={body_bytes_sent}"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://127.0.0.1:%(o)d"
[[http.server]]
bind_addr = "127.0.0.1:%(q)d"
proxy_url = "http://127.0.0.1:%(o)d"
headers = ["+ X-Resp-Rule yes", "- x-kept"]
""" % {"d": logs, "p": p, "q": q, "o": origin.port})
    wait_until(lambda: curl("http://127.0.0.1:%d/conn" % p).returncode == 0,
               what="wmproxy serving")
    c = H.Client(p)
    st, hd, body = c.get("/hop")
    assert st == 200 and body == b"ok" and hd.get("x-kept") == "yes"
    for k in ("keep-alive", "connection", "x-secret", "proxy-connection"):
        assert k not in hd, hd
    st, hd, body = c.get("/chunked/50000")
    assert st == 200 and body == origin_mod.pattern(50000) and "transfer-encoding" not in hd
    st, hd, body = c.get("/bytes/3000?h2")
    assert st == 200 and body == origin_mod.pattern(3000) and hd["content-length"] == "3000"
    sid = c.request("/bytes/3000?head", method="HEAD")
    assert c.response(sid).status == 200 and not c.response(sid).data
    assert c.get("/nothing")[0] == 404
    c.close()
    c = H.Client(q)
    st, hd, body = c.get("/hop")
    assert st == 200 and body == b"ok" and hd.get("x-resp-rule") == "yes" and "x-kept" not in hd
    c.close()
    for path in ("/hop", "/chunked/50000", "/bytes/3000?h1", "/nothing"):
        assert curl("http://127.0.0.1:%d%s" % (p, path)).returncode == 0

    def lines():
        try:
            return open(str(logs / "access.log")).read().splitlines()
        except OSError:
            return []
    wait_until(lambda: len(lines()) >= 10, what="access lines")
    got = {}
    for ln in lines():
        uri, rest = ln.split(" ", 1)
        got.setdefault(uri.split("?")[0] + ("?head" if uri.endswith("?head") else ""), []).append(rest)
    for uri in ("/hop", "/chunked/50000", "/bytes/3000", "/nothing"):
        h2line, h1line = got[uri][0], got[uri][-1]
        assert h2line == h1line, (uri, got[uri])
    assert got["/hop"][0].startswith("st=200 up=200 ") and got["/nothing"][0].startswith("st=404 up=404")
    assert got["/bytes/3000"][0].endswith(" body=3000")
    assert got["/bytes/3000?head"][0].startswith("st=200 up=200 ") and \
        got["/bytes/3000?head"][0].endswith(" body=0")


# ---- 2. parallel streams, the upstream keep-alive pool, flow control ----

def test_parallel_streams_share_the_pool(wmproxy, tmp_path, cert, origin):
    _, p, s = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    t0 = time.monotonic()
    sids = [c.request("/slow?ms=800") for _ in range(20)]
    for sid in sids:
        assert c.response(sid, timeout=20).status == 200
    assert time.monotonic() - t0 < 6, "20 streams of 0.8 s ran in parallel"
    # then sequential requests reuse the upstream connections the pool kept
    ids = set()
    for _ in range(10):
        st, _, body = c.get("/conn")
        assert st == 200
        ids.add(body)
    assert len(ids) <= 2, ids
    c.close()
    r = subprocess.run(["nghttp", "-n", "-s", "https://127.0.0.1:%d/bytes/1000" % s] +
                       ["https://127.0.0.1:%d/bytes/%d" % (s, 1000 + i) for i in range(1, 10)],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout.count(b"/bytes/") >= 10, r.stdout
    # curl: 100 transfers multiplexed on one connection, 50 at a time (TLS,
    # and h2c after the Upgrade); the upstream sees them as HTTP/1.1 over the
    # keep-alive pool (the connections of finished streams carry later ones)
    for mode, base in (("--http2", "https://127.0.0.1:%d" % s),
                       ("--http2", "http://127.0.0.1:%d" % p)):
        out = tmp_path / base.split(":")[0]
        out.mkdir()
        args = [mode, "--parallel", "--parallel-max", "50",
                "-w", "%{http_version} %{http_code} %{num_connects}\n"]
        for i in range(100):
            args += ["-o", str(out / str(i)), base + "/headers?i=%d" % i]
        r = curl(*args)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.decode().split()
        assert lines[0::3] == ["2"] * 100 and lines[1::3] == ["200"] * 100, r.stdout
        assert sum(int(n) for n in lines[2::3]) == 1, "one connection for all of them"
        docs = [json.loads((out / str(i)).read_text()) for i in range(100)]
        assert all(d["reqline"].endswith(" HTTP/1.1") for d in docs)
        assert len({d["conn"] for d in docs}) < 100, "upstream connections reused"
    # curl --http2-prior-knowledge: Debian 12's curl 7.88.1 cannot reuse a
    # prior-knowledge connection (curl/curl#10634, fixed in 8.0), so one
    # transfer per curl, 30 curls at once
    procs = [subprocess.Popen(["curl", "-sS", "--max-time", "20", "--http2-prior-knowledge",
                               "-o", "/dev/null", "-w", "%{http_version} %{http_code}",
                               "http://127.0.0.1:%d/slow?ms=300&i=%d" % (p, i)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for i in range(30)]
    for pr in procs:
        o, e = pr.communicate(timeout=30)
        assert pr.returncode == 0 and o == b"2 200", e


def test_waiting_engines_expire_and_are_replaced(wmproxy, tmp_path, cert, origin):
    """A finished stream leaves its engine waiting for the next one (keep-alive);
    when that engine's keep-alive timeout ends it, the next stream starts a new one."""
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_server='client_ka_timeout = "1s"')
    c = H.Client(p)
    slow = c.request("/slow?ms=2500")  # keeps the connection busy (no idle GOAWAY)
    for path in ("/headers", "/static"):
        assert c.get(path)[0] == 200
    assert c.response(slow).status == 200  # by now the waiting engines timed out
    for path in ("/headers", "/static", "/bytes/5000"):
        st, _, body = c.get(path)
        assert st == 200, path
    assert body == origin_mod.pattern(5000)
    c.close()


def test_a_short_idle_limit_is_kept_with_waiting_engines(wmproxy, tmp_path, cert, origin):
    """client_ka_timeout shorter than the time finished streams' engines wait
    for the next stream (500 ms): the idle connection still ends at its own
    limit, with GOAWAY, not when the engines go. It used to end at 500 ms."""
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_server='client_ka_timeout = "100ms"')
    c = H.Client(p)
    assert c.get("/headers")[0] == 200  # its engine now waits for the next stream
    t0 = time.monotonic()
    end = t0 + 10
    while not c.closed and time.monotonic() < end:
        c.pump()
    took = time.monotonic() - t0
    assert c.closed and c.goaway is not None and c.goaway.error_code == 0
    assert took < 0.4, "closed after %.3f s, not at the 100 ms idle limit" % took
    c.s.close()


def test_streams_are_not_counted_as_client_connections(wmproxy, tmp_path, cert, origin):
    """wmproxy_connections_total counts client connections: an HTTP/2
    connection is one, however many streams (and engines behind them) it
    carried; the engines are not (each one counted as an ended "http"
    client connection, with the result of its last answer, and the ones a
    keep-alive timeout ended as timed out)."""
    cport = free_port()
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, cport=cport)

    def open_conns():
        code, _, doc = api(cport, "GET", "/status")
        assert code == 200, doc
        return doc["connections"]

    wait_until(lambda: open_conns() == 0, what="the readiness curl's connection closed")
    before = sample(metrics(cport), "wmproxy_connections_total", proto="http")
    c = H.Client(p)
    sids = [c.request("/slow?ms=300&i=%d" % i) for i in range(5)]  # five engines at once
    sids.append(c.request("/close/10"))
    for sid in sids:
        assert c.response(sid).status == 200
    c.close()
    wait_until(lambda: open_conns() == 0, what="the connection and its engines gone")
    m = metrics(cport)
    assert sample(m, "wmproxy_connections_total", proto="http") == before + 1, m
    assert sample(m, "wmproxy_connections_timed_out_total", proto="http") == 0, m


def test_waiting_engines_outlive_a_gap_between_bursts(wmproxy, tmp_path, cert, origin):
    """A client whose streams all finished and which sends its next burst at
    once (h2load, a browser loading a page) gets the waiting engines: the
    access lines of the second burst carry engine ids of the first."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    ids = []
    for burst in range(2):
        sids = [c.request("/headers?b=%d&i=%d" % (burst, i)) for i in range(6)]
        for sid in sids:
            assert c.response(sid).status == 200
        # the connection has no stream now; the next burst follows at once
    assert wait_log(proc, 'req="GET /headers?b=1', count=6)
    for burst in range(2):
        ids.append({ln.split(" c=")[1].split()[0] for ln in proc.log().splitlines()
                    if ' access ' in ln and 'req="GET /headers?b=%d&' % burst in ln})
    assert ids[0] and ids[1], ids  # (a burst may reuse its own engines too)
    assert ids[0] & ids[1], "the second burst started new engines: %s" % ids
    c.close()


def slow_upstream(body_len):
    """An upstream that answers one request with body_len bytes as fast as
    the proxy takes them; .sent counts what the kernel accepted."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    class U:
        port = ls.getsockname()[1]
        sent = 0
        done = threading.Event()

    def run():
        c, _ = ls.accept()
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % body_len)
        c.settimeout(3)
        chunk = b"z" * 65536
        try:
            while U.sent < body_len:
                U.sent += c.send(chunk[:min(65536, body_len - U.sent)])
        except OSError:
            pass
        U.done.set()
        c.close()
        ls.close()

    threading.Thread(target=run, daemon=True).start()
    return U


def test_slow_client_stops_its_upstream_not_the_connection(wmproxy, tmp_path, cert, origin):
    total = 256 << 20
    up = slow_upstream(total)
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/big"
proxy_url = "http://127.0.0.1:%d"
""" % up.port)
    c = H.Client(p)
    big = c.request("/big")
    c.hold.add(big)  # never reopen this stream's window
    c.wait(lambda: c.streams[big].status == 200, what="head of /big")
    # the connection still serves other streams
    for _ in range(3):
        assert c.get("/static")[0] == 200
    assert up.done.wait(15), "the upstream blocked once the proxy stopped reading"
    assert up.sent < 64 << 20, "read only what the buffers hold, not the whole body"
    assert len(c.streams[big].data) <= 70000  # one stream window
    c.close()


def test_a_held_stream_resumes_with_its_whole_body(wmproxy, tmp_path, cert, origin):
    """An answer handed over parsed stops its upstream while the client
    holds the stream's window, and goes on, complete, once it opens it
    (Content-Length and chunked bodies)."""
    _, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    n = 3 << 20
    for path in ("/bytes/%d" % n, "/chunked/%d" % n):
        sid = c.request(path)
        st = c.streams[sid]
        c.hold.add(sid)
        c.wait(lambda: len(st.data) >= 60000, what="a window of " + path)
        for _ in range(4):
            c.pump(0.1)  # the proxy is stopped by the window now
        assert len(st.data) <= 65535 and not st.ended
        c.hold.discard(sid)
        c.c.increment_flow_control_window(len(st.data), stream_id=sid)
        c.flush()
        c.response(sid, timeout=30)
        assert st.ended and st.reset is None and bytes(st.data) == origin_mod.pattern(n), path
    c.close()


def test_client_write_timeout_cuts_a_stream_that_is_not_read(wmproxy, tmp_path, cert, origin):
    """client_write_timeout holds for an HTTP/2 stream whose answer the
    engine hands over parsed: no window from the client for that long ends
    that stream's request (reset, access line saying why), not the
    connection."""
    up = slow_upstream(64 << 20)
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/big"
proxy_url = "http://127.0.0.1:%d"
client_write_timeout = "1s"
""" % up.port)
    c = H.Client(p)
    big = c.request("/big")
    c.hold.add(big)
    c.wait(lambda: c.streams[big].status == 200, what="head of /big")
    t0 = time.time()
    c.wait(lambda: c.streams[big].reset is not None, timeout=15, what="/big reset")
    assert 0.8 < time.time() - t0 < 10
    assert c.get("/static")[0] == 200  # the connection goes on
    wait_until(lambda: 'req="GET /big"' in proc.log(), what="the access line of /big")
    line = [ln for ln in proc.log().splitlines() if 'req="GET /big"' in ln][0]
    assert line.endswith('why="the client did not read the answer in time"'), line
    c.close()


def _unread_h2_client(port, paths):
    """A TLS HTTP/2 client with every window wide open and a small socket
    receive buffer, that asked for paths: the proxy's writes soon wait on
    its socket."""
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    raw.settimeout(10)
    raw.connect(("127.0.0.1", port))
    ctx = H.ssl.SSLContext(H.ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = H.ssl.CERT_NONE
    ctx.set_alpn_protocols(["h2"])
    c = H.Client(port, tls=True, sock=ctx.wrap_socket(raw, server_hostname="a.test"))
    c.c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
    c.c.increment_flow_control_window(2 ** 31 - 1 - 65535)
    for path in paths:
        c.request(path)
    c.flush()
    return c


def trickling_upstream(seconds, stop):
    """An upstream that answers with a chunked body of 2 bytes every 0.5 s
    for that long (a server-sent event stream), or until stop is set."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)

    def run():
        c, _ = ls.accept()
        c.recv(65536)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for _ in range(int(seconds * 2)):
                c.sendall(b"2\r\nok\r\n")
                if stop.wait(0.5):  # the stream's pace; the test is over
                    break
        except OSError:
            pass
        c.close()
        ls.close()

    threading.Thread(target=run, daemon=True).start()
    return ls.getsockname()[1]


def test_ended_session_lingers_once_whatever_its_engines_still_write(wmproxy, tmp_path, cert,
                                                                    origin):
    """A connection whose session is over (a protocol error: GOAWAY) half-
    closes and lingers at most 5 s (README). Each write of an engine whose
    stream was still open (its upstream sends on) started the close again,
    the linger with it: with an upstream that sends every few seconds the
    connection, its engine and its upstream connection stayed for as long
    as the upstream sent."""
    stop = threading.Event()
    up = trickling_upstream(40, stop)
    proc, p, _ = serve(lambda a, **kw: wmproxy(a + ["-v"], **kw), tmp_path, cert, origin,
                       extra_loc="""
[[http.server.location]]
rule = "/events"
proxy_url = "http://127.0.0.1:%d"
""" % up)
    c = H.Client(p)
    sid = c.request("/events")
    c.wait(lambda: c.streams[sid].status == 200 and len(c.streams[sid].data) >= 4,
           what="the stream's first events")
    cid = c.s.getsockname()[1]
    c.s.sendall(H.frame(0, 0, 0, b"xx"))  # DATA on stream 0: GOAWAY PROTOCOL_ERROR
    t0 = time.monotonic()
    # the client reads what comes and keeps its socket open
    c.s.settimeout(0.2)

    def conn_closed():
        try:
            c.s.recv(65536)
        except (socket.timeout, OSError):
            pass
        return re.search(r"close client=127\.0\.0\.1:%d end=" % cid, proc.log())

    try:
        wait_until(conn_closed, timeout=15, what="the connection closed after its linger")
        assert time.monotonic() - t0 < 10, proc.log()[-3000:]
    finally:
        stop.set()
    c.s.close()


def test_send_timeout_counts_from_the_last_bytes_taken(wmproxy, tmp_path, cert, origin):
    """A client that reads for a while and then stops is cut the send
    timeout after it stopped (a quarter of it late at most): it was cut up
    to twice the timeout after, when bytes had moved early in the period."""
    proc, _, s = serve(wmproxy, tmp_path, cert, origin, extra_server='client_write_timeout = "4s"')
    c = _unread_h2_client(s, ["/bytes/400000000"])
    read_slowly(c.s, 1.2, 65536, 0.001)
    stopped = time.time()
    assert wait_log(proc, "took none of the", timeout=20), proc.log()[-3000:]
    line = [ln for ln in proc.log().splitlines() if "took none of the" in ln][0]
    cut = datetime.datetime.fromisoformat(line.split()[0]).timestamp()
    assert 3.9 <= cut - stopped <= 5.6, (cut - stopped, line)
    c.s.close()


def test_send_timeout_spares_a_slow_steady_reader(wmproxy, tmp_path, cert, origin):
    """A client that reads slowly but all the time is not cut by the send
    timeout: its reads free our socket's send queue, which wakes no write
    until a third of the (megabytes large) buffer is free, so no frame left
    our output for longer than the timeout and the reading client was cut
    as one that took nothing."""
    proc, _, s = serve(wmproxy, tmp_path, cert, origin, extra_server='client_write_timeout = "2s"')
    c = _unread_h2_client(s, ["/bytes/400000000"])
    got, eof = read_slowly(c.s, 6, 16384, 0.05)
    assert not eof, got
    assert "took none of the" not in proc.log(), proc.log()[-3000:]
    c.s.close()


def test_connection_cut_when_the_client_reads_nothing(wmproxy, tmp_path, cert, origin):
    """A client whose socket takes no byte while our frames wait is cut
    after the send timeout (the largest client_write_timeout of the
    address, nginx's send_timeout): the connection goes, not only its
    streams (it used to stay until the keep-alive timeout). A client that
    reads on is not cut: what is timed is the wait for progress, not the
    transfer."""
    proc, _, s = serve(wmproxy, tmp_path, cert, origin, extra_server='client_write_timeout = "2s"')
    slow = _unread_h2_client(s, ["/bytes/400000000"])
    sent = time.time()
    dead = _unread_h2_client(s, ["/bytes/40000000", "/bytes/30000000"])
    # the other one reads on, for longer than 2 s (paced: the download must
    # outlast the 5 s, which an unpaced reader drains in 1.5)
    got, _ = read_slowly(slow.s, 5, 65536, 0.001)
    assert wait_log(proc, "took none of the", timeout=20), proc.log()[-3000:]
    assert proc.log().count("took none of the") == 1, proc.log()[-3000:]
    # its socket was full at once: cut 2 s after that, a quarter late at most
    # (it used to wait for a second full period once bytes had moved: 4 s)
    line = [ln for ln in proc.log().splitlines() if "took none of the" in ln][0]
    cut = datetime.datetime.fromisoformat(line.split()[0]).timestamp()
    assert 1.9 <= cut - sent <= 3.4, (cut - sent, line)
    assert got > 1000000
    assert "127.0.0.1:%d took none" % slow.s.getsockname()[1] not in proc.log()
    slow.s.settimeout(0.5)
    assert len(slow.s.recv(8192)) > 0  # still served
    dead.s.close()
    slow.s.close()
    assert proc.alive()


def test_stream_reset_while_its_upstream_connects_is_logged(wmproxy, tmp_path, cert, origin):
    """A stream reset (or its connection closed) while its upstream is
    still connecting writes its access line, as one reset later does (it
    wrote none)."""
    lst, fillers = full_listener()  # a connect to it hangs
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/hang"
proxy_url = "http://127.0.0.1:%d"
proxy_connect_timeout = "30s"
""" % lst.getsockname()[1])
    try:
        c = H.Client(p)
        sid = c.request("/hang/one")
        c.sync()
        c.c.reset_stream(sid)
        c.flush()
        sid2 = c.request("/hang/two")
        c.sync()
        c.close()  # the connection goes with the stream
        for path in ("/hang/one", "/hang/two"):
            assert wait_log(proc, 'req="GET %s" code=0' % path), proc.log()[-2000:]
    finally:
        for f in fillers:
            f.close()
        lst.close()


def test_slow_upstream_stops_its_stream_window(wmproxy, tmp_path, cert, origin):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    held = []
    threading.Thread(target=lambda: held.append(ls.accept()), daemon=True).start()
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/sink"
proxy_url = "http://127.0.0.1:%d"
""" % ls.getsockname()[1])
    c = H.Client(p)
    c.c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 20})
    sid = c.request("/sink", method="POST", headers=[("content-length", str(1 << 30))],
                    end=False)
    sent = 0
    chunk = b"u" * (1 << 20)
    deadline = time.monotonic() + 20
    stalled_since = None
    while time.monotonic() < deadline and sent < (1 << 30):
        n = c.send(sid, chunk)
        sent += n
        if n == 0:
            stalled_since = stalled_since or time.monotonic()
            if time.monotonic() - stalled_since > 1.5:
                break
            c.pump(0.2)
        else:
            stalled_since = None
    assert stalled_since is not None, "the stream's window closed"
    assert sent < 256 << 20
    # other streams of the connection go on
    assert c.get("/static")[0] == 200
    c.close()
    ls.close()



def _one_worker_for_rss(wmproxy, tmp_path, port, up_port, extra=""):
    """One worker proxying port to 127.0.0.1:up_port (extra: more location
    keys), with ASan's quarantine off so that RSS shows what is held."""
    conf = tmp_path / "rss.toml"
    conf.write_text("""disable_control = true
workers = 1
[http]
[[http.server]]
bind_addr = "127.0.0.1:%d"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%d"
%s""" % (port, up_port, extra))
    return wmproxy(["run", "-c", str(conf)], port=port,
                   env={"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66:"
                                        "quarantine_size_mb=0"})

def test_uploads_to_a_stalled_upstream_hold_bounded_memory(wmproxy, tmp_path, cert, origin):
    """One connection, 64 streams uploading to an upstream that never reads:
    what the proxy holds for them is bounded by the connection's window
    plus a small queue per stream (it was a whole stream window plus the
    HTTP/1 body queue, ~780 KiB, per stream). ASan's quarantine is off so
    RSS follows the live heap."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)
    held = []

    def accept():
        while True:
            try:
                held.append(ls.accept()[0])
            except OSError:
                return
    threading.Thread(target=accept, daemon=True).start()
    p = free_port()
    proc = _one_worker_for_rss(wmproxy, tmp_path, p, ls.getsockname()[1])
    c = H.Client(p)
    c.sync()
    base = rss_kb(proc.p.pid)
    sids = [c.request("/up%d" % i, method="POST", headers=[("content-length", str(1 << 30))],
                      end=False) for i in range(64)]
    chunk = b"u" * (256 << 10)
    deadline = time.monotonic() + 40
    quiet = None
    while time.monotonic() < deadline:
        sent = sum(c.send(sid, chunk) for sid in sids)
        c.pump(0.05)
        if sent:
            quiet = None
        elif quiet is None:
            quiet = time.monotonic()
        elif time.monotonic() - quiet > 2:
            break
    assert quiet is not None, "the uploads never stalled"
    grown = rss_kb(proc.p.pid) - base
    assert grown < 20 * 1024, "%d KiB held for 64 stalled uploads" % grown  # 55 MiB before
    c.close()
    ls.close()
    for h in held:
        h.close()


def test_unread_answers_through_header_rules_hold_bounded_memory(wmproxy, tmp_path, origin):
    """64 streams of one connection download 64 MiB each through a location
    with a response header rule (the answer comes back to the stream as
    HTTP/1 bytes, not parsed), and the client never opens their windows:
    each stream holds its answer buffer and a small queue, as a stream
    whose answer is handed over parsed. The engine queued 256 KiB more per
    stream towards the stream (~610 KiB each under ASan, ~300 now). The
    connection's other streams, and other connections, are served."""
    p = free_port()
    proc = _one_worker_for_rss(wmproxy, tmp_path, p, origin.port, 'headers = ["+ X-Resp yes"]\n')
    c = H.Client(p)
    assert c.get("/bytes/100")[0] == 200
    base = rss_kb(proc.p.pid)
    c.c.increment_flow_control_window(2 ** 31 - 1 - 65535)  # the connection's only
    sids = [c.request("/bytes/%d" % (64 << 20)) for _ in range(64)]
    c.hold.update(sids)
    c.wait(lambda: all(len(c.streams[s].data) == 65535 for s in sids), timeout=30,
           what="every stream's window")
    samples = []

    def settled():  # the upstreams are stopped: RSS no longer grows
        c.pump(0.1)
        samples.append(rss_kb(proc.p.pid))
        return len(samples) > 5 and samples[-1] <= samples[-5]
    wait_until(settled, timeout=30, what="RSS settled")
    grown = samples[-1] - base
    assert grown < 64 * 420, "%d KiB held for 64 unread answers" % grown
    assert all(not c.streams[s].ended for s in sids)
    st, hd, body = c.get("/bytes/1000")
    assert st == 200 and hd.get("x-resp") == "yes" and body == origin_mod.pattern(1000)
    c2 = H.Client(p)
    assert c2.get("/bytes/100000")[2] == origin_mod.pattern(100000)
    c2.close()
    c.close()


def test_upload_answered_after_its_window_filled_is_not_stuck(wmproxy, tmp_path, cert, origin):
    """An upstream that answers a POST without reading its body, after the
    stream's window has filled: the answer goes out, and the request bytes
    the engine had not taken are dropped, their window reopened, so the
    rest of the upload is read and dropped up to 1 MiB, then RST_STREAM
    NO_ERROR (README). They were never given back: the client's window
    stayed shut (the stream open until the idle timeout, forever while
    other streams were busy), and the connection's window short by as
    much."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.bind(("127.0.0.1", 0))
    ls.listen(4)
    go = threading.Event()
    held = []

    def run():
        c, _ = ls.accept()
        held.append(c)
        c.recv(1000)
        go.wait(30)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    threading.Thread(target=run, daemon=True).start()
    _, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/up"
proxy_url = "http://127.0.0.1:%d"
""" % ls.getsockname()[1])
    try:
        c = H.Client(p)
        n = 64 << 20
        sid = c.request("/up", method="POST", headers=[("content-length", str(n))], end=False)
        st = c.streams[sid]
        chunk = b"u" * 65536
        sent = 0
        quiet = None
        deadline = time.monotonic() + 30
        while st.reset is None and time.monotonic() < deadline:
            k = c.send(sid, chunk)
            sent += k
            c.pump(0.05)
            if k:
                quiet = None
            elif quiet is None:
                quiet = time.monotonic()
            elif time.monotonic() - quiet > 1 and not go.is_set():
                go.set()  # stalled: the upstream answers now
                c.wait(lambda: st.ended, what="the answer")
                quiet = None
            elif time.monotonic() - quiet > 3:
                break
        assert go.is_set() and st.status == 200 and bytes(st.data) == b"ok"
        assert st.reset == 0, "window %d, %d bytes sent" % (c.c.local_flow_control_window(sid),
                                                            sent)
        assert c.get("/static")[0] == 200
        c.close()
    finally:
        go.set()
        for h in held:
            h.close()
        ls.close()


def test_our_own_resets_are_not_a_rapid_reset_flood(wmproxy, tmp_path, cert, origin):
    """Streams we reset ourselves (INTERNAL_ERROR: an upstream that cut its
    answer short) are not the client's resets: 450 of them within the flood
    window used to end the client's connection with GOAWAY
    ENHANCE_YOUR_CALM and a "rapid reset flood" warning against it."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(128)

    def run():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            try:
                c.recv(65536)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789")
            except OSError:
                pass
            c.close()
    threading.Thread(target=run, daemon=True).start()
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/cut"
proxy_url = "http://127.0.0.1:%d"
""" % ls.getsockname()[1])
    try:
        c = H.Client(p)
        sids = []
        for i in range(450):
            if len(sids) - sum(c.streams[s].reset is not None or c.streams[s].ended
                               for s in sids) >= 100:
                c.wait(lambda: sum(c.streams[s].reset is None and not c.streams[s].ended
                                   for s in sids) < 100, what="streams to end")
            sids.append(c.request("/cut/%d" % i))
        c.wait(lambda: all(c.streams[s].reset is not None or c.streams[s].ended for s in sids),
               timeout=30, what="every stream")
        assert all(c.streams[s].reset == 2 for s in sids)  # INTERNAL_ERROR: cut short
        assert c.goaway is None and c.get("/static")[0] == 200
        assert "rapid reset" not in proc.log()
        c.close()
    finally:
        ls.close()


def test_engine_error_answers_count_their_bytes(wmproxy, tmp_path, cert, origin):
    """An error the engine answers a stream with (408: the request body did
    not come in time) is logged with the bytes of its answer, as over
    HTTP/1: it was out=0 (written on the stream's pair, whose bytes move on
    before they were measured)."""
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/slowbody"
proxy_url = "http://127.0.0.1:%d"
client_read_timeout = "1s"
""" % origin.port)
    c = H.Client(p)
    sid = c.request("/slowbody", method="POST", headers=[("content-length", "1000")], end=False)
    c.send(sid, b"x" * 10)
    st = c.response(sid, timeout=15)
    assert st.status == 408 and st.data.startswith(b"408 "), (st.status, bytes(st.data))
    assert wait_log(proc, 'req="POST /slowbody" code=408'), proc.log()[-2000:]
    m = re.search(r'req="POST /slowbody" code=408 in=\d+ out=(\d+)', proc.log())
    assert m and int(m.group(1)) > len(st.data), proc.log()[-2000:]
    c.close()


FLOW_CONTROL_ERROR = 0x3


def _settings_taken(port):
    """A raw connection that has read the server's SETTINGS and acknowledged
    them (our stream window, 256 KiB, is in force)."""
    s = H.raw_open(port)
    s.settimeout(0.5)
    buf = b""
    deadline = time.monotonic() + 10
    while not any(t == 4 and not f & 1 for t, f, _, _ in _frames_of(buf)):
        assert time.monotonic() < deadline, "no SETTINGS from the server"
        try:
            buf += s.recv(65536)
        except socket.timeout:
            pass
    s.sendall(H.frame(4, 1, 0))
    return s


def _frames_of(buf):
    out = []
    while len(buf) >= 9:
        n = struct.unpack(">I", b"\0" + buf[:3])[0]
        if len(buf) < 9 + n:
            break
        out.append((buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7fffffff, buf[9:9 + n]))
        buf = buf[9 + n:]
    return out


@pytest.mark.parametrize("what", ["stream", "connection", "settings"])
def test_flow_control_violations_say_what_they_are(wmproxy, tmp_path, cert, origin, what):
    """A client that sends DATA past a stream's window gets that stream reset
    (FLOW_CONTROL_ERROR) with a line that says so (it said "DATA against its
    content-length"); past the connection's window, GOAWAY FLOW_CONTROL_ERROR
    and a line (there was none); a SETTINGS_INITIAL_WINDOW_SIZE that takes an
    open stream's window over 2^31-1 is a connection error (RFC 9113 6.9.2:
    nghttp2 only reset the stream, and the line blamed its content-length).
    The upstream never answers the connect: no request byte is taken."""
    lst, fillers = full_listener()
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, extra_loc="""
[[http.server.location]]
rule = "/hang"
proxy_url = "http://127.0.0.1:%d"
proxy_connect_timeout = "30s"
""" % lst.getsockname()[1])
    post = [("content-length", str(1 << 30))]
    try:
        s = _settings_taken(p)
        s.settimeout(5)
        out = b""
        if what == "stream":  # 320 KiB on one stream
            out = H.frame(1, 4, 1, H.headers_block("/hang", method="POST", extra=post))
            out += b"".join(H.frame(0, 0, 1, b"x" * 16384) for _ in range(20))
            want = "stream 1: DATA past the stream's flow-control window: " \
                   "RST_STREAM FLOW_CONTROL_ERROR"
        elif what == "connection":  # 20 streams of 240 KiB: 4.7 MiB
            for i in range(20):
                sid = 1 + 2 * i
                out += H.frame(1, 4, sid, H.headers_block("/hang", method="POST", extra=post))
                out += b"".join(H.frame(0, 0, sid, b"x" * 16384) for _ in range(15))
            want = "DATA past the connection's flow-control window: GOAWAY FLOW_CONTROL_ERROR"
        else:  # the stream's send window at 2^31-1, then the initial window raised
            out = H.frame(1, 5, 1, H.headers_block("/hang"))
            out += H.frame(8, 0, 1, struct.pack(">I", 2 ** 31 - 1 - 65535))
            out += H.frame(4, 0, 0, struct.pack(">HI", 4, 1 << 20))
            want = "SETTINGS_INITIAL_WINDOW_SIZE takes a stream's window over 2^31-1: " \
                   "GOAWAY FLOW_CONTROL_ERROR"
        try:
            s.sendall(out)
        except OSError:
            pass  # the connection went while we sent
        frames = H.read_frames(s, timeout=5, until_goaway=what != "stream")
        if what == "stream":
            assert (3, 0, 1, struct.pack(">I", FLOW_CONTROL_ERROR)) in frames, frames
            assert H.goaway_of(frames) is None
        else:
            ga = H.goaway_of(frames)
            assert ga is not None and ga[1] == FLOW_CONTROL_ERROR, frames[-3:]
        assert wait_log(proc, want), proc.log()[-2000:]
        assert "content-length" not in proc.log()
        s.close()
        assert version_of("--http2-prior-knowledge", "http://127.0.0.1:%d/static" % p) == "2 200"
    finally:
        for f in fillers:
            f.close()
        lst.close()


# ---- 3. WebSocket over HTTP/2 (RFC 8441) ----

def test_websocket_extended_connect(wmproxy, tmp_path, cert, origin):
    """python3-h2 only: curl and nghttp (Debian 12) cannot send an extended
    CONNECT (RFC 8441; nghttp has no :protocol option, curl no WebSocket over
    HTTP/2), so the other clients are not part of this item."""
    _, p, s = serve(wmproxy, tmp_path, cert, origin)
    for port, tls in ((s, True), (p, False)):
        c = H.Client(port, tls=tls)
        c.wait(lambda: c.c.remote_settings.enable_connect_protocol == 1, what="settings")
        sid = c.request("/ws", method="CONNECT", end=False,
                        extra_pseudo=[(":protocol", "websocket")],
                        headers=[("sec-websocket-version", "13")])
        c.wait(lambda: c.streams[sid].status is not None, what="ws answer")
        assert c.streams[sid].status == 200
        c.send(sid, origin_mod.ws_frame(1, b"hello over h2"))
        c.wait(lambda: len(c.streams[sid].data) >= 2 + 13, what="echo")
        assert bytes(c.streams[sid].data) == origin_mod.ws_frame(1, b"hello over h2", mask=False)
        c.close()


def test_websocket_not_accepted_is_not_a_2xx(wmproxy, tmp_path, cert, origin):
    """An extended CONNECT answered with a page instead of the upgrade (a
    static answer, a proxied 200) must not reach the client as 2xx, which
    would tell it the WebSocket is open (RFC 8441 5): it gets 502."""
    _, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    c.wait(lambda: c.c.remote_settings.enable_connect_protocol == 1, what="settings")
    for path in ("/static", "/headers"):
        sid = c.request(path, method="CONNECT", end=False,
                        extra_pseudo=[(":protocol", "websocket")],
                        headers=[("sec-websocket-version", "13")])
        c.wait(lambda: c.streams[sid].status is not None, what="answer to " + path)
        assert c.streams[sid].status == 502, (path, c.streams[sid].headers)
    assert c.get("/static")[0] == 200  # the connection goes on
    c.close()


def test_a_stream_answered_early_does_not_hold_the_connection(wmproxy, tmp_path, cert, origin):
    """A stream answered before its request ended (a static answer to an
    upload, a refused WebSocket) has nothing left in flight: when its client
    then sends nothing more, it counts as idle, and after client_ka_timeout
    the stream is reset NO_ERROR and the connection goes with GOAWAY. It
    used to stay open for ever, with no timer at all."""
    _, p, s = serve(wmproxy, tmp_path, cert, origin, extra_server='client_ka_timeout = "1s"')
    for port, tls in ((p, False), (s, True)):
        c = H.Client(port, tls=tls)
        c.wait(lambda: c.c.remote_settings.enable_connect_protocol == 1, what="settings")
        up = c.request("/static", method="POST", body=b"x" * 1000, end=False,
                       headers=[("content-length", "100000")])
        ws = c.request("/static", method="CONNECT", end=False,
                       extra_pseudo=[(":protocol", "websocket")],
                       headers=[("sec-websocket-version", "13")])
        c.wait(lambda: c.streams[up].ended and c.streams[ws].ended, what="the early answers")
        assert (c.streams[up].status, c.streams[ws].status) == (200, 502)
        end = time.monotonic() + 15
        while not c.closed and time.monotonic() < end:
            c.pump()
        assert c.closed, "the connection is still open"
        assert c.streams[up].reset == 0 and c.streams[ws].reset == 0
        assert c.goaway is not None and c.goaway.error_code == 0
        c.s.close()


# ---- 4. limits and floods ----

def test_limits_streams_and_header_list(wmproxy, tmp_path, cert, origin):
    _, p, _ = serve(wmproxy, tmp_path, cert, origin)
    c = H.Client(p)
    c.wait(lambda: c.c.remote_settings.max_concurrent_streams == 128, what="settings")
    st, _, _ = c.get("/static", headers=[("x-big", "v" * 20000)])
    assert st == 431
    assert c.get("/static")[0] == 200
    c.close()
    # a 129th concurrent stream is refused
    s = H.raw_open(p)
    enc = H.hpack.Encoder()
    out = b""
    for i in range(130):
        blk = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a.test"),
                          (":path", "/slow?ms=3000")])
        out += H.frame(1, 0x5, 1 + 2 * i, blk)
    s.sendall(out)
    frames = H.read_frames(s, timeout=3, until_goaway=False)
    rst = [f for f in frames if f[0] == 3]
    assert rst and all(struct.unpack(">I", f[3])[0] in (REFUSED_STREAM, PROTOCOL_ERROR)
                       for f in rst)
    assert min(f[2] for f in rst) > 2 * 127
    s.close()
    # nghttp: the same 431, and 200 requests on one connection (-m 200): it
    # keeps to the 128 concurrent streams we announce, the rest wait their turn
    r = subprocess.run(["nghttp", "-n", "-v", "-H", "x-big: " + "v" * 20000,
                        "http://127.0.0.1:%d/static" % p], capture_output=True, timeout=30)
    assert b":status: 431" in r.stdout, r.stdout[-2000:]
    r = subprocess.run(["nghttp", "-n", "-s", "-m", "200", "http://127.0.0.1:%d/slow?ms=300" % p],
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [ln.split() for ln in r.stdout.decode().splitlines() if ln.endswith("/slow?ms=300")]
    assert len(rows) == 200 and all(row[4] == "200" for row in rows), r.stdout[-3000:]

    def ms(t):  # nghttp's "+753us", "+204.42ms", "+1.20s"
        t = t.lstrip("+")
        for unit, f in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if t.endswith(unit):
                return float(t[:-len(unit)]) * f
        raise ValueError(t)
    assert sum(ms(row[2]) >= 200 for row in rows) >= 200 - 128, "requests past 128 waited"


@pytest.mark.parametrize("kind", ["rapid-reset", "continuation", "ping", "settings", "empty"])
def test_floods_get_goaway(wmproxy, tmp_path, cert, origin, kind):
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin)
    s = H.raw_open(p)
    enc = H.hpack.Encoder()
    out = b""
    if kind == "rapid-reset":  # CVE-2023-44487
        for i in range(1000):
            blk = enc.encode([(":method", "GET"), (":scheme", "http"), (":authority", "a"),
                              (":path", "/slow?ms=1000")])
            out += H.frame(1, 0x4, 1 + 2 * i, blk) + H.frame(3, 0, 1 + 2 * i, b"\0\0\0\x08")
        want = "RST_STREAM (rapid reset) flood"
    elif kind == "continuation":  # CVE-2024-27316
        out = H.frame(1, 0x1, 1, enc.encode([(":method", "GET"), (":path", "/")]))
        for i in range(200):
            out += H.frame(9, 0, 1, enc.encode([("x-h%d" % i, "v")]))
        want = "CONTINUATION flood"
    elif kind == "ping":
        out = b"".join(H.frame(6, 0, 0, struct.pack(">Q", i)) for i in range(500))
        want = "PING flood"
    elif kind == "settings":
        out = b"".join(H.frame(4, 0, 0) for _ in range(500))
        want = "SETTINGS flood"
    else:
        blk = enc.encode([(":method", "POST"), (":scheme", "http"), (":authority", "a.test"),
                          (":path", "/echo")])
        out = H.frame(1, 0x4, 1, blk) + b"".join(H.frame(0, 0, 1) for _ in range(1000))
        want = "empty frame flood"
    try:
        s.sendall(out)
    except (BrokenPipeError, ConnectionResetError):
        pass
    ga = H.goaway_of(H.read_frames(s, timeout=10))
    assert ga is not None and ga[1] == ENHANCE_YOUR_CALM, (ga, proc.log()[-2000:])
    assert wait_log(proc, want), proc.log()
    s.close()
    assert version_of("--http2-prior-knowledge", "http://127.0.0.1:%d/static" % p) == "2 200"


# ---- 5. GOAWAY on reload and stop, open streams finish ----

def test_goaway_on_reload_and_stop(wmproxy, tmp_path, cert, origin):
    cport = free_port()
    proc, p, s = serve(wmproxy, tmp_path, cert, origin, cport=cport)
    c = H.Client(s, tls=True)
    sid = c.request("/slow?ms=1500")
    c.sync()  # the PING's answer comes after the HEADERS were taken
    assert api(cport, "POST", "/reload")[0] == 200
    c.wait(lambda: c.goaway is not None, what="GOAWAY after reload")
    assert c.goaway.error_code == 0 and c.goaway.last_stream_id >= sid
    st = c.response(sid)
    assert st.status == 200, "the open stream finished"
    c.wait(lambda: c.closed, what="close after the last stream")
    # new connections are served by the new configuration
    assert version_of("--http2", "https://127.0.0.1:%d/static" % s) == "2 200"

    # nghttp: a download in progress during a reload finishes, complete
    n0 = origin.stats["requests"]
    dl = subprocess.Popen(["nghttp", "-v", "https://127.0.0.1:%d/slow?ms=1500&nghttp" % s],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_until(lambda: origin.stats["requests"] > n0 and
               "nghttp" in origin.stats.get("last_reqline", ""), what="nghttp's request upstream")
    assert api(cport, "POST", "/reload")[0] == 200
    out, err = dl.communicate(timeout=30)
    assert dl.returncode == 0, err
    assert b"recv GOAWAY frame" in out and b"error_code=NO_ERROR" in out, out[-2000:]
    assert b":status: 200" in out and b"slow\n" in out, out[-2000:]

    c = H.Client(p)
    sid = c.request("/slow?ms=1500")
    c.sync()
    proc.signal(signal.SIGTERM)
    c.wait(lambda: c.goaway is not None, what="GOAWAY on stop")
    assert c.response(sid).status == 200
    proc.wait_exit(expect_code=0)


def test_upgrade_after_stop_began_gets_goaway(wmproxy, tmp_path, cert, origin):
    """A plain connection accepted before a stop, whose "Upgrade: h2c"
    request comes after the GOAWAYs went out, is answered and gets its own
    GOAWAY (last stream 1): it used to stay open, without one, until the
    grace period ended."""
    cport = free_port()
    proc, p, _ = serve(wmproxy, tmp_path, cert, origin, cport=cport)
    c = H.Client(p)
    sid = c.request("/slow?ms=3000")  # keeps the process draining
    c.sync()
    late = H.open_socket(p)
    late.sendall(b"GET /static HTTP/1.1\r\n")  # the rest after the stop began
    wait_until(lambda: api(cport, "GET", "/status")[2]["connections"] >= 2,
               what="both connections accepted")
    proc.signal(signal.SIGTERM)
    c.wait(lambda: c.goaway is not None, what="GOAWAY on stop")
    up = h2.connection.H2Connection(config=h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8"))
    settings = up.initiate_upgrade_connection()
    late.sendall(b"Host: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                 b"HTTP2-Settings: %s\r\n\r\n" % settings)
    assert recv_head(late).startswith(b"HTTP/1.1 101 "), "no upgrade"
    late.sendall(up.data_to_send())
    frames = H.read_frames(late, timeout=10, until_goaway=False)  # to the close
    assert H.goaway_of(frames) == (1, 0), frames
    assert any(f[0] == 1 and f[2] == 1 for f in frames), "no answer on stream 1"
    assert c.response(sid).status == 200
    late.close()
    c.close()
    proc.wait_exit(expect_code=0)


# ---- the file server over HTTP/2 ----

def test_file_server_over_h2(wmproxy, tmp_path, cert):
    """file_server locations answer HTTP/2 like HTTP/1: a multi-MB file
    byte-identical, a Range request 206 with its bytes, a 404; with curl
    (prior knowledge on the plain port, ALPN on TLS), nghttp and python3-h2."""
    root = tmp_path / "www"
    root.mkdir()
    data = origin_mod.pattern(5 << 20, seed=7)
    (root / "big.bin").write_bytes(data)
    p, s = free_port(), free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
bind_ssl = "127.0.0.1:%(s)d"
up_name = "a.test"
cert = "%(d)s/server.crt"
key = "%(d)s/server.key"
[[http.server.location]]
rule = "/"
file_server = { root = "%(r)s" }
""" % {"p": p, "s": s, "d": cert, "r": root})
    plain, tls = "http://127.0.0.1:%d" % p, "https://127.0.0.1:%d" % s
    wait_until(lambda: curl("-o", "/dev/null", plain + "/big.bin").returncode == 0,
               what="wmproxy serving")
    def fetch(*args):
        r = curl("-w", "\n%{http_version} %{http_code}", *args)
        assert r.returncode == 0, r.stderr
        body, _, ver = r.stdout.rpartition(b"\n")
        return ver.decode(), body
    for mode, base in (("--http2-prior-knowledge", plain), ("--http2", tls)):
        assert fetch(mode, base + "/big.bin") == ("2 200", data), mode
        assert fetch(mode, "-r", "1000000-1000999", base + "/big.bin") == \
            ("2 206", data[1000000:1001000]), mode
        assert version_of(mode, base + "/nothing.bin") == "2 404"
    for base in (plain, tls):
        r = subprocess.run(["nghttp", base + "/big.bin"], capture_output=True, timeout=60)
        assert r.returncode == 0 and r.stdout == data, (base, len(r.stdout), r.stderr)
        r = subprocess.run(["nghttp", "-H", "range: bytes=-500", base + "/big.bin"],
                           capture_output=True, timeout=30)
        assert r.returncode == 0 and r.stdout == data[-500:], (base, r.stdout[:200])
        for path, code in (("/big.bin", b"206"), ("/nothing.bin", b"404")):
            r = subprocess.run(["nghttp", "-n", "-v", "-H", "range: bytes=0-9", base + path],
                               capture_output=True, timeout=30)
            assert b":status: " + code in r.stdout, r.stdout[-2000:]
    for port, is_tls in ((p, False), (s, True)):
        c = H.Client(port, tls=is_tls)
        st, hd, body = c.get("/big.bin")
        assert st == 200 and body == data and hd["content-length"] == str(len(data))
        st, hd, body = c.get("/big.bin", headers=[("range", "bytes=10-19")])
        assert st == 206 and body == data[10:20] and hd["content-range"] == \
            "bytes 10-19/%d" % len(data)
        assert c.get("/nothing.bin")[0] == 404
        c.close()


# ---- the tunnel's public mappings ----

@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


def test_tunnel_http_mapping_answers_h2(nodes, origin, cert):
    hp, sp, cport = free_port(), free_port(), free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp,
                              "map_https_bind": "127.0.0.1:%d" % sp,
                              "map_cert": cert + "/server.crt", "map_key": cert + "/server.key"},
                       top={"control": "127.0.0.1:%d" % cport})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "a", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
         "domain": "a.test"},
        {"name": "s", "mode": "https", "local_addr": "127.0.0.1:%d" % origin.port,
         "domain": "a.test"}])
    for url in ("http://127.0.0.1:%d/headers" % hp,):
        r = curl("--http2-prior-knowledge", "-H", "Host: a.test", "-w", "\n%{http_version}",
                 url)
        assert r.returncode == 0, r.stderr
        body, _, ver = r.stdout.rpartition(b"\n")
        assert ver == b"2"
        assert json.loads(body)["reqline"].endswith("HTTP/1.1")  # the private side
    r = curl("--http2", "--resolve", "a.test:%d:127.0.0.1" % sp, "-w", "\n%{http_version}",
             "https://a.test:%d/headers" % sp)
    assert r.returncode == 0 and r.stdout.endswith(b"\n2"), r.stderr
    c = H.Client(hp)
    st, _, body = c.get("/bytes/100000")
    assert st == 200 and body == origin_mod.pattern(100000)
    c.close()
    assert wait_log(srv, "proto=tunnel-h2"), srv.log()[-2000:]
    # only HTTP/2 visitors above (Host a.test picks mapping a on both ports):
    # the mapping's byte counters count them as they count HTTP/1 visitors
    m = wait_until(lambda: (lambda t: t if sample(t, "wmproxy_tunnel_mapping_bytes_total",
                                                   mapping="a", direction="out") > 100000
                            else None)(metrics(cport)), what="h2 bytes of mapping a")
    assert sample(m, "wmproxy_tunnel_mapping_bytes_total", mapping="a", direction="in") > 20


# ---- conformance: h2spec, every case, strict ----

@pytest.fixture(scope="module")
def h2spec():
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(["sh", os.path.join(here, "../h2spec/build.sh")], capture_output=True,
                       text=True, timeout=600)
    if r.returncode != 0:
        pytest.skip("h2spec could not be built (Go packages missing?): " + r.stderr[-500:])
    return r.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("tls", [False, True], ids=["h2c", "tls"])
@pytest.mark.parametrize("path", ["/static", "/headers"], ids=["local", "proxied"])
def test_h2spec_strict(wmproxy, tmp_path, cert, origin, h2spec, tls, path):
    proc, p, s = serve(wmproxy, tmp_path, cert, origin)
    args = [h2spec, "-h", "127.0.0.1", "-p", str(s if tls else p), "-S", "-P", path, "-o", "5"]
    if tls:
        args += ["-t", "-k"]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600)
    summary = [l for l in r.stdout.splitlines() if " tests, " in l]
    assert r.returncode == 0 and summary and " 0 failed" in summary[-1], r.stdout[-6000:]
    n = int(summary[-1].split()[0])
    assert n >= 146 and summary[-1].startswith("%d tests, %d passed" % (n, n)), summary
