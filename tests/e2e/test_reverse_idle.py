"""Idle keep-alive clients of the HTTP engine without a bufferevent (issue
#11, idle memory): after WM_HTTP_PARK_MS of silence a client on a plain
socket is parked (net/conn.h: the bare fd, one event carrying the rest of
the keep-alive wait) and resumed on its next bytes. Each test first waits
for the debug line "parked (idle" so that it exercises the parked path."""

import os
import signal
import socket
import time

from helpers.control import api
from helpers.net import connect, free_port, recv_all, recv_head, serve_tcp, wait_until
from helpers.tunnel import wait_log

PARKED = "parked (idle"


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def start(wmproxy, tmp_path, origin, ka="30s", head="30s", cport=None, files=None, grace="30s"):
    """One reverse proxy: port p proxies to the origin (and /static answers
    locally); with files (a directory), port fp serves it at 100 KiB/s."""
    p, fp = free_port(), free_port()
    top = 'control = "127.0.0.1:%d"\n' % cport if cport else "disable_control = true\n"
    text = top + """workers = 1
default_level = "debug"
grace = "%(grace)s"
[http]
client_ka_timeout = "%(ka)s"
client_read_timeout = "%(head)s"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/static"
static_response = "static"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(o)d"
""" % {"p": p, "o": origin.port, "ka": ka, "head": head, "grace": grace}
    if files:
        text += """[[http.server]]
bind_addr = "127.0.0.1:%d"
[[http.server.location]]
rule = "/"
file_server = { root = "%s", rate_limit = "100k/s" }
""" % (fp, files)
    proc = wmproxy(["run", "-c", write(tmp_path / "idle.toml", text)], port=p)
    return proc, p, fp


_left = {}  # socket -> bytes read past the last response (pipelining)


def read_response(s):
    """One response with a Content-Length: (status, body)."""
    data = _left.pop(s, b"")
    while b"\r\n\r\n" not in data:
        d = s.recv(65536)
        assert d, "closed before a response head: %r" % data
        data += d
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    n = int([h for h in lines if h.lower().startswith(b"content-length:")][0].split(b":")[1])
    while len(body) < n:
        d = s.recv(65536)
        assert d, "closed in a body"
        body += d
    if len(body) > n:
        _left[s] = body[n:]
    return int(lines[0].split()[1]), body[:n]


def request(s, path="/conn"):
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path.encode())
    return read_response(s)


def closed_within(s, secs):
    """True when the proxy closes s (EOF or reset) within secs."""
    s.settimeout(secs)
    try:
        return s.recv(4096) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_parked_client_is_served_again_and_counted(wmproxy, tmp_path, origin):
    """Parked, the client still counts as an open connection (/status); its
    next request resumes it and is served, again and again."""
    cport = free_port()
    p, port, _ = start(wmproxy, tmp_path, origin, cport=cport)
    s = connect(port)
    assert request(s)[0] == 200
    assert wait_log(p, PARKED), p.log()[-2000:]
    code, _, doc = api(cport, "GET", "/status")
    assert code == 200 and doc["connections"] >= 1, doc
    lst = [x for x in doc["listeners"] if x["addr"].endswith(":%d" % port)]
    assert lst and lst[0]["open"] >= 1, doc
    for i in range(2, 4):
        st, body = request(s, "/static")
        assert (st, body) == (200, b"static")
        assert wait_log(p, "resumed (readable)", count=i - 1), p.log()[-2000:]
        assert wait_log(p, PARKED, count=i), p.log()[-2000:]
    assert request(s)[0] == 200
    s.close()


def test_parked_client_cut_at_keepalive_timeout(wmproxy, tmp_path, origin):
    """The park event carries the rest of the keep-alive wait: the client is
    closed at client_ka_timeout, with the usual end reason."""
    p, port, _ = start(wmproxy, tmp_path, origin, ka="2s")
    s = connect(port)
    t0 = time.monotonic()
    assert request(s)[0] == 200
    assert wait_log(p, PARKED)
    assert closed_within(s, 10)
    took = time.monotonic() - t0
    assert 1.5 < took < 8, took
    assert wait_log(p, "resumed (wait over)")
    assert wait_log(p, "end=keepalive-timeout")
    s.close()


def test_half_a_request_after_the_park_gets_408(wmproxy, tmp_path, origin):
    """Bytes that wake a parked client start the head timer: half a head,
    then silence, is answered 408 at client_read_timeout."""
    p, port, _ = start(wmproxy, tmp_path, origin, head="1s")
    s = connect(port)
    assert request(s)[0] == 200
    assert wait_log(p, PARKED)
    t0 = time.monotonic()
    s.sendall(b"GET /conn HTTP/1.1\r\nHo")
    s.settimeout(10)
    data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 408"), data[:80]
    assert time.monotonic() - t0 < 6
    s.close()


def test_half_a_first_request_line_gets_408(wmproxy, tmp_path, origin):
    """The same for a connection's first request, still incomplete when its
    line would tell HTTP/1 from HTTP/2 (a plain port takes both): 408 and an
    access line with the bytes that came (it was closed without an answer,
    in=0); a silent connection is only closed."""
    p, port, _ = start(wmproxy, tmp_path, origin, head="1s")
    s = connect(port)
    s.sendall(b"GET /conn HT")
    s.settimeout(10)
    data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 408"), data[:80]
    assert wait_log(p, "code=408 in=12 ")
    s = connect(port)
    s.settimeout(10)
    assert recv_all(s) == b""
    s.close()


def test_pipelined_requests_wake_a_parked_client(wmproxy, tmp_path, origin):
    """Three requests in one write to a parked client: three answers, in
    order, on the same connection."""
    p, port, _ = start(wmproxy, tmp_path, origin)
    s = connect(port)
    assert request(s)[0] == 200
    assert wait_log(p, PARKED)
    s.sendall(b"GET /static HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /bytes/5000 HTTP/1.1\r\nHost: a\r\n\r\n"
              b"GET /static HTTP/1.1\r\nHost: a\r\n\r\n")
    assert read_response(s) == (200, b"static")
    st, body = read_response(s)
    assert st == 200 and len(body) == 5000
    assert read_response(s) == (200, b"static")
    s.close()


def test_rate_limited_files_still_limited_after_a_park(wmproxy, tmp_path, origin):
    """A file_server with rate_limit keeps its pace on a resumed client (the
    limit is per answer, made again for each request)."""
    root = tmp_path / "www"
    os.makedirs(root)
    with open(root / "data.bin", "wb") as f:
        f.write(os.urandom(300000))
    with open(root / "small.txt", "wb") as f:
        f.write(b"small\n")
    p, _, fport = start(wmproxy, tmp_path, origin, files=str(root))
    s = connect(fport, timeout=20)
    assert request(s, "/small.txt") == (200, b"small\n")
    assert wait_log(p, PARKED)
    t0 = time.monotonic()
    st, body = request(s, "/data.bin")
    took = time.monotonic() - t0
    assert st == 200 and len(body) == 300000
    assert 1.8 < took < 10, took    # ~2.9 s at 100 KiB/s after a 16 KiB burst
    assert wait_log(p, "resumed (readable)")
    s.close()


def test_stop_closes_parked_clients_at_once(wmproxy, tmp_path, origin):
    """A graceful stop closes idle (parked) keep-alive clients at once
    instead of holding them for the grace period; the process exits clean."""
    p, port, _ = start(wmproxy, tmp_path, origin, grace="30s")
    idle = [connect(port) for _ in range(3)]
    for s in idle:
        assert request(s)[0] == 200
    assert wait_log(p, PARKED, count=3)
    t0 = time.monotonic()
    p.p.send_signal(signal.SIGTERM)
    for s in idle:
        assert closed_within(s, 10)
        s.close()
    p.wait_exit(20)
    assert time.monotonic() - t0 < 8
    assert p.log().count("end=shutdown") >= 3


def test_parked_client_survives_a_reload(wmproxy, tmp_path, origin):
    """A reload leaves idle keep-alive clients as it leaves busy ones: the
    parked client is served after it."""
    cport = free_port()
    p, port, _ = start(wmproxy, tmp_path, origin, cport=cport)
    s = connect(port)
    assert request(s)[0] == 200
    assert wait_log(p, PARKED)
    code, _, _ = api(cport, "POST", "/reload")
    assert code == 200
    assert wait_log(p, "reloaded")
    assert request(s, "/static") == (200, b"static")
    s.close()


def test_client_closing_while_parked(wmproxy, tmp_path, origin):
    """A FIN (or a reset) on a parked client ends it; the proxy goes on."""
    p, port, _ = start(wmproxy, tmp_path, origin)
    a, b = connect(port), connect(port)
    assert request(a)[0] == 200 and request(b)[0] == 200
    assert wait_log(p, PARKED, count=2)
    a.close()
    b.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    b.close()   # RST
    assert wait_log(p, "resumed (readable)", count=2)
    assert wait_until(lambda: p.log().count("end=client-closed") + p.log().count("end=client-error") >= 2)
    c = connect(port)
    assert request(c, "/static") == (200, b"static")
    c.close()


def test_forward_proxy_client_parks_with_its_upstream_kept(wmproxy, origin):
    """The forward proxy keeps each client's upstream connection (no shared
    pool): the client is parked all the same, its upstream stays attached,
    and the next request goes out on that same upstream connection."""
    port = free_port()
    p = wmproxy(["proxy", "-b", "127.0.0.1:%d" % port, "--disable-control", "-v"], port=port)
    s = connect(port)
    url = "http://127.0.0.1:%d/conn" % origin.port
    req = ("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (url, origin.port)).encode()
    s.sendall(req)
    st, first = read_response(s)
    assert st == 200
    assert wait_log(p, PARKED), p.log()[-2000:]
    s.sendall(req)
    assert read_response(s) == (200, first)   # the same upstream connection
    assert wait_log(p, "resumed (readable)")
    s.close()


def test_forward_proxy_upstream_closing_while_client_parked(wmproxy):
    """The kept upstream closes while its client is parked: it is dropped
    without touching the client, whose next request gets a new one."""
    import threading
    closed = threading.Event()
    conns = []

    def one_answer_then_close(c):
        conns.append(c)
        try:
            recv_head(c)
        except (EOFError, OSError):
            return
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        if len(conns) == 1:
            c.close()          # the first upstream connection goes away at once
            closed.set()
        else:
            c.recv(4096)
            c.close()

    ls = serve_tcp(one_answer_then_close)
    port = free_port()
    p = wmproxy(["proxy", "-b", "127.0.0.1:%d" % port, "--disable-control", "-v"], port=port)
    up = ls.getsockname()[1]
    req = ("GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n" % (up, up)).encode()
    try:
        s = connect(port)
        s.sendall(req)
        assert read_response(s) == (200, b"ok")
        assert closed.wait(10)
        assert wait_log(p, PARKED), p.log()[-2000:]
        s.sendall(req)
        assert read_response(s) == (200, b"ok")
        assert len(conns) == 2
        s.close()
    finally:
        ls.close()


def test_a_burst_of_clients_shares_one_upstream_connection(wmproxy, tmp_path, origin):
    """Keep-alive clients opened one after another, each sending one request
    and then staying open: each new one takes the upstream connection that
    the one before holds between its requests (or gave back to the pool),
    instead of dialling its own, so the burst needs as many upstream
    connections as requests in flight, one here; asked again, every client
    is served on that connection too."""
    _, port, _ = start(wmproxy, tmp_path, origin)
    socks, ids = [], []
    try:
        for _ in range(40):
            s = connect(port)
            socks.append(s)
            st, body = request(s)
            assert st == 200
            ids.append(body)
        for s in socks:
            st, body = request(s)
            assert st == 200
            ids.append(body)
    finally:
        for s in socks:
            s.close()
    assert len(set(ids)) == 1, ids


def test_no_sharing_of_upstream_connections_with_keepalive_0(wmproxy, tmp_path, origin):
    """keepalive = 0: no upstream connection serves two clients (each of the
    clients opened one after another dials its own) and none is kept once
    its client goes quiet."""
    port = free_port()
    path = write(tmp_path / "ka0.toml", """disable_control = true
workers = 1
[http]
[[http.upstream]]
name = "o"
keepalive = 0
server = [{ addr = "127.0.0.1:%d" }]
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://o"
""" % (origin.port, port))
    wmproxy(["run", "-c", path], port=port)
    socks, ids = [], []
    try:
        for _ in range(10):
            s = connect(port)
            socks.append(s)
            st, body = request(s)
            assert st == 200
            ids.append(body)
    finally:
        for s in socks:
            s.close()
    assert len(set(ids)) == len(ids), ids
