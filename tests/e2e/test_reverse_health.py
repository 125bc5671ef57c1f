"""Passive health checks and retries of the reverse proxy: which failures
count towards fall_times (connect refused, read timeout, statuses named by
proxy_next_upstream), the server taken out for fail_timeout, a failed
request sent once more to another server (idempotent methods, or all with
non_idempotent), all servers down -> a quick 502, and health kept across a
reload."""

import json
import socket
import ssl
import subprocess
import threading
import time

import pytest

from conftest import BIN
from helpers import http1
from helpers.control import api
from helpers.h2client import Client
from helpers.net import (free_port, holds_during, no_free_fds, recv_all, serve_tcp,
                         wait_until)
from helpers.tunnel import wait_log
from test_reverse import gencert, get, start, wait_serving, write


class Backend:
    """An upstream on a raw socket: reads each request (head and
    Content-Length body), counts it, then acts by `mode`: an int status
    (answered with its name as the body), "hang" (no answer until stop),
    "close" (closes without answering)."""

    def __init__(self, name, mode=200):
        self.name = name
        self.mode = mode
        self.close_after = False  # answer with Connection: close
        self.hits = 0
        self.bodies = []
        self.lock = threading.Lock()
        self.gone = threading.Event()
        self.lst = serve_tcp(self._serve)
        self.port = self.lst.getsockname()[1]

    def _request(self, c, buf):
        while b"\r\n\r\n" not in buf:
            d = c.recv(65536)
            if not d:
                return None, b""
            buf += d
        head, _, rest = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                n = int(v.strip())
        while len(rest) < n:
            d = c.recv(65536)
            if not d:
                return None, b""
            rest += d
        return rest[:n], rest[n:]

    def _serve(self, c):
        c.settimeout(30)
        buf = b""
        try:
            while True:
                body, buf = self._request(c, buf)
                if body is None:
                    return
                with self.lock:
                    self.hits += 1
                    self.bodies.append(body)
                mode = self.mode
                if mode == "hang":
                    self.gone.wait(30)  # bounded: the test ends it with stop()
                    return
                if mode == "close":
                    return
                out = self.name.encode()
                bye = b"Connection: close\r\n" if self.close_after else b""
                c.sendall(b"HTTP/1.1 %d X\r\n%sContent-Length: %d\r\n\r\n" % (mode, bye, len(out))
                          + out)
                if self.close_after:
                    return
        except OSError:
            pass
        finally:
            c.close()

    def stop(self):
        self.gone.set()
        self.lst.close()


@pytest.fixture
def backends():
    made = []

    def make(name, mode=200):
        b = Backend(name, mode)
        made.append(b)
        return b
    yield make
    for b in made:
        b.stop()


def ups(name, *servers, extra=""):
    """An [[http.upstream]] with round-robin order over servers (dicts of
    server keys, addr given as a port)."""
    items = []
    for s in servers:
        kv = ["addr = \"127.0.0.1:%d\"" % s["port"]]
        kv += ["%s = %s" % (k, v) for k, v in s.items() if k != "port"]
        items.append("{ %s }" % ", ".join(kv))
    return ('[[http.upstream]]\nname = "%s"\nbalance = "round_robin"\n%sserver = [%s]\n'
            % (name, extra, ", ".join(items)))


def retry_lines(p, failed_port):
    return p.log().count("failed on 127.0.0.1:%d" % failed_port)


def test_out_of_descriptors_marks_no_server_down(wmproxy, tmp_path, backends):
    """When the proxy itself has no descriptor left for an upstream socket,
    the request gets 502 (the log says why), and no server is marked down: once
    descriptors are free the next request is served (both servers used to
    be taken out for fail_timeout, 'no upstream server is up')."""
    a, b = backends("A"), backends("B")
    a.close_after = b.close_after = True  # every request dials
    port = free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": a.port, "fall_times": 1, "fail_timeout": '"60s"'},
        {"port": b.port, "fall_times": 1, "fail_timeout": '"60s"'})
        + '[[http.server]]\nbind_addr = "127.0.0.1:%d"\nproxy_url = "http://app"\n' % port)
    wait_serving(port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        rd = http1.Reader(s)
        req = http1.request("GET", "/", [("Host", "a.test")])
        s.sendall(req)
        assert rd.response().status == 200
        with no_free_fds(p.p.pid):
            s.sendall(req)
            r = rd.response()
        assert r.status == 502, (r.status, r.body)
        # the log line may reach the file just after the answer
        wait_until(lambda: "no socket for the connection (out of descriptors" in p.log(),
                   what="the out-of-descriptors line")
    st, _, body = get(port)
    assert st == 200 and body in (b"A", b"B"), (st, body)
    assert "marked down" not in p.log(), p.log()


def test_connect_refused_counts_marks_down_and_goes_to_next(wmproxy, tmp_path, backends):
    b = backends("B")
    dead = free_port()
    port = free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": dead, "fall_times": 2, "fail_timeout": '"60s"'}, {"port": b.port}) +
        ups("strict", {"port": dead}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/strict"
proxy_url = "http://strict"
proxy_next_upstream = "off"
[[http.server.location]]
rule = "/"
proxy_url = "http://app"
""" % {"p": port})
    wait_serving(port)
    # every request is answered by B: a refused connect goes to the next server
    for _ in range(6):
        st, _, body = get(port)
        assert (st, body) == (200, b"B")
    assert wait_log(p, "upstream app server 127.0.0.1:%d marked down" % dead)
    assert "(connection refused), trying 127.0.0.1:%d (try 2 of 2)" % b.port in p.log()
    # marked down: no more tries on it
    n = retry_lines(p, dead)
    for _ in range(6):
        assert get(port)[:3:2] == (200, b"B")
    assert retry_lines(p, dead) == n
    # proxy_next_upstream = "off": the request that met the dead server fails
    statuses = sorted(get(port, "/strict")[0] for _ in range(2))
    assert statuses == [200, 502], statuses


def test_set_host_follows_the_next_server(wmproxy, tmp_path, origin):
    """proxy_set_host: after a failed connect the Host sent is that of the
    server the request went to."""
    dead = free_port()
    port = free_port()
    start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": dead, "fall_times": 100}, {"port": origin.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://app"
proxy_set_host = true
""" % {"p": port})
    wait_serving(port, path="/conn")
    for _ in range(2):
        st, _, body = get(port, "/headers")
        hosts = [v for k, v in json.loads(body)["headers"] if k.lower() == "host"]
        assert st == 200 and hosts == ["127.0.0.1:%d" % origin.port], hosts


def test_read_timeout_counts_and_get_is_retried(wmproxy, tmp_path, backends):
    a, b = backends("A", "hang"), backends("B")
    port = free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": a.port, "fall_times": 1, "fail_timeout": '"60s"'}, {"port": b.port}) +
        ups("quick", {"port": a.port, "fall_times": 100}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_read_timeout = "300ms"
[[http.server.location]]
rule = "/quick"
proxy_url = "http://quick"
proxy_next_upstream_timeout = "100ms"
[[http.server.location]]
rule = "/"
proxy_url = "http://app"
""" % {"p": port})
    wait_serving(port)
    for _ in range(4):
        st, _, body = get(port)
        assert (st, body) == (200, b"B")
    assert a.hits == 1
    assert "GET / failed on 127.0.0.1:%d (no response head in time), trying 127.0.0.1:%d" % (
        a.port, b.port) in p.log()
    assert wait_log(p, "marked down for 60000 ms after 1 failure(s): no response head in time")
    # proxy_next_upstream_timeout passed before the read timeout: no new try
    statuses = sorted(get(port, "/quick")[0] for _ in range(2))
    assert statuses == [200, 504], statuses


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_bad_status_is_retried_on_the_good_server(wmproxy, tmp_path, backends, fmt):
    a, b, solo = backends("A", 502), backends("B"), backends("S", 503)
    port = free_port()
    if fmt == "toml":
        cfg = "[http]\n" + ups("app", {"port": a.port, "fall_times": 100}, {"port": b.port}) + \
            ups("solo", {"port": solo.port}) + ups("plain", {"port": a.port}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_next_upstream = "error timeout http_502 http_503"
proxy_url = "http://app"
[[http.server.location]]
rule = "/solo"
proxy_url = "http://solo"
[[http.server.location]]
rule = "/plain"
proxy_url = "http://plain"
proxy_next_upstream = ["error", "timeout"]
[[http.server.location]]
rule = "/"
""" % {"p": port}
        start(wmproxy, tmp_path, cfg)
    else:
        path = write(tmp_path / "rev.yaml", """
disable_control: true
workers: 2
http:
  upstream:
    - name: app
      balance: round_robin
      server: [{addr: "127.0.0.1:%(a)d", fall_times: 100}, {addr: "127.0.0.1:%(b)d"}]
    - name: solo
      server: [{addr: "127.0.0.1:%(s)d"}]
    - name: plain
      balance: round_robin
      server: [{addr: "127.0.0.1:%(a)d"}, {addr: "127.0.0.1:%(b)d"}]
  server:
    - bind_addr: "127.0.0.1:%(p)d"
      proxy_next_upstream: [error, timeout, http_502, http_503]
      proxy_url: "http://app"
      location:
        - rule: /solo
          proxy_url: "http://solo"
        - rule: /plain
          proxy_url: "http://plain"
          proxy_next_upstream: "error timeout"
        - rule: /
""" % {"a": a.port, "b": b.port, "s": solo.port, "p": port})
        wmproxy(["run", "-c", path])
    wait_serving(port)
    for _ in range(6):
        st, _, body = get(port)
        assert (st, body) == (200, b"B")
    assert a.hits >= 2
    # not listed at this location: A's 502 goes to the client as it is
    seen = {get(port, "/plain")[:3:2] for _ in range(4)}
    assert seen == {(200, b"B"), (502, b"A")}, seen
    # no other server: the upstream's own answer, not a 502 of ours
    st, _, body = get(port, "/solo")
    assert (st, body) == (503, b"S")
    # the same for HTTP/2 streams (h2c, prior knowledge)
    c = Client(port)
    try:
        for _ in range(4):
            st, _, body = c.get("/")
            assert (st, body) == (200, b"B")
        assert {c.get("/plain")[::2] for _ in range(4)} == {(200, b"B"), (502, b"A")}
        assert c.get("/solo")[::2] == (503, b"S")
    finally:
        c.close()


def test_put_with_body_retried_when_a_kept_connection_closes(wmproxy, tmp_path):
    """The upstream closes a kept connection as the next request arrives
    (the keep-alive race): a PUT whose body the proxy kept is sent again,
    body and all, on a new connection, once, as a GET is, and the server
    is not marked failed for it (it got 502 and a failure mark). A POST is
    still not sent again."""
    seen = []
    conns = []

    def serve(c):
        conns.append(c)
        first = len(conns) == 1
        c.settimeout(10)
        buf = b""
        try:
            n = 0
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                lines = head.split(b"\r\n")
                length = 0
                for ln in lines[1:]:
                    k, _, v = ln.partition(b":")
                    if k.strip().lower() == b"content-length":
                        length = int(v)
                while len(buf) < length:
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                body, buf = buf[:length], buf[length:]
                seen.append((lines[0].decode(), len(body)))
                n += 1
                if first and n == 2:
                    return  # the kept connection closes, unanswered
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\ngot %d"
                          % (len("got %d" % len(body)), len(body)))
        except OSError:
            pass
        finally:
            c.close()
    up = serve_tcp(serve)
    port = free_port()
    p = start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://127.0.0.1:%d"
""" % (port, up.getsockname()[1]))
    wait_until(lambda: _listening(port), what="the proxy listening")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    rd = http1.Reader(s)
    s.sendall(http1.request("GET", "/first", [("Host", "a.test")]))
    assert rd.response().status == 200
    s.sendall(http1.request("PUT", "/put", [("Host", "a.test")], body=b"p" * 3000))
    r = rd.response()
    assert (r.status, r.body) == (200, b"got 3000")
    assert seen == [("GET /first HTTP/1.1", 0), ("PUT /put HTTP/1.1", 3000),
                    ("PUT /put HTTP/1.1", 3000)], seen
    assert "marked" not in p.log() and "fail" not in p.log().lower(), p.log()[-2000:]
    s.close()
    up.close()


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return True
    except OSError:
        return False


def test_post_is_retried_only_with_non_idempotent(wmproxy, tmp_path, backends):
    a, b = backends("A", "close"), backends("B")
    port = free_port()
    start(wmproxy, tmp_path, "[http]\n" +
          ups("dflt", {"port": a.port, "fall_times": 100}, {"port": b.port}) +
          ups("any", {"port": a.port, "fall_times": 100}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/any"
proxy_url = "http://any"
proxy_next_upstream = ["error", "timeout", "non_idempotent"]
[[http.server.location]]
rule = "/"
proxy_url = "http://dflt"
""" % {"p": port})
    wait_serving(port, path="/any")
    body = b"x" * 1000
    # default: a POST that reached A is not sent again
    statuses = sorted(get(port, "/", method="POST", body=body)[0] for _ in range(2))
    assert statuses == [200, 502], statuses
    # non_idempotent: it goes to B, body and all
    hits = a.hits
    for _ in range(3):
        st, _, rb = get(port, "/any", method="POST", body=body)
        assert (st, rb) == (200, b"B")
    assert a.hits > hits and b.bodies.count(body) >= 4
    # a body past what is kept for a resend (64 KiB) is not sent again
    big = b"y" * (100 * 1024)
    statuses = sorted(get(port, "/any", method="POST", body=big)[0] for _ in range(2))
    assert statuses == [200, 502], statuses


def _start_a_then_b(wmproxy, tmp_path, port, a, b, fall, fail_timeout):
    """Upstream app: a (taken out after fall failures for fail_timeout),
    then b; a 503 goes on to the next server. Serving when it returns."""
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": a.port, "fall_times": fall, "fail_timeout": '"%s"' % fail_timeout},
        {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://app"
proxy_next_upstream = "error timeout http_503"
""" % {"p": port})
    wait_serving(port)
    return p


def test_fall_times_take_a_server_out_for_fail_timeout(wmproxy, tmp_path, backends):
    a, b = backends("A", 503), backends("B")
    port = free_port()
    p = _start_a_then_b(wmproxy, tmp_path, port, a, b, 2, "4s")
    for _ in range(4):
        assert get(port)[:3:2] == (200, b"B")
    assert wait_log(p, "upstream app server 127.0.0.1:%d marked down for 4000 ms after 2 "
                       "failure(s): status 503" % a.port)
    down_at = time.monotonic()
    a.mode = 200
    hits = a.hits
    for _ in range(6):
        assert get(port)[:3:2] == (200, b"B")
    assert a.hits == hits  # out while fail_timeout runs
    # back after fail_timeout
    wait_until(lambda: get(port)[2] == b"A", timeout=15, what="A back after fail_timeout")
    assert time.monotonic() - down_at >= 2.5


def test_one_failure_after_fail_timeout_takes_a_server_out_again(wmproxy, tmp_path, backends):
    """Back from fail_timeout, a server that fails at once is out again
    after that one failure (nginx: the count is cleared only by a good
    answer); it was cleared when the server was taken out, so each
    fail_timeout cost fall_times failed requests again."""
    a, b = backends("A", 503), backends("B")
    port = free_port()
    p = _start_a_then_b(wmproxy, tmp_path, port, a, b, 3, "1s")
    line = "server 127.0.0.1:%d marked down" % a.port
    wait_until(lambda: get(port)[2] == b"B" and line in p.log(), what="A out")
    hits = a.hits
    wait_until(lambda: get(port)[2] == b"B" and a.hits > hits, timeout=10,
               what="A tried after fail_timeout")
    assert p.log().count(line) == 2  # out again after its one failure
    hits = a.hits
    for _ in range(6):
        assert get(port)[:3:2] == (200, b"B")
    assert a.hits == hits


def test_a_single_server_is_never_taken_out_by_passive_failures(wmproxy, tmp_path, backends):
    """As nginx (a single peer ignores max_fails): the only server of an
    upstream, or of a direct proxy_url, failing twice is not out for
    fail_timeout, so its next good answer is served at once instead of
    "no upstream server is up" for 30 s. The same address in a group of two
    is still taken out there."""
    a, b = backends("A", 503), backends("B")
    port = free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups("one", {"port": a.port}) +
              ups("two", {"port": a.port}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_next_upstream = "error timeout http_503"
[[http.server.location]]
rule = "/direct"
proxy_url = "http://127.0.0.1:%(a)d"
[[http.server.location]]
rule = "/two"
proxy_url = "http://two"
[[http.server.location]]
rule = "/"
proxy_url = "http://one"
""" % {"p": port, "a": a.port})
    wait_serving(port, path="/two")
    for _ in range(4):
        assert get(port, "/two")[:3:2] == (200, b"B")
    assert wait_log(p, "upstream two server 127.0.0.1:%d marked down" % a.port)
    for path in ("/", "/direct"):
        for _ in range(3):
            assert get(port, path)[0] == 503
    assert "upstream one server" not in p.log()
    a.mode = 200
    for path in ("/", "/direct"):
        assert get(port, path)[:3:2] == (200, b"A")
    assert get(port, "/two")[:3:2] == (200, b"B")  # still out in the group of two


def test_all_servers_down_is_a_quick_502(wmproxy, tmp_path):
    d1, d2 = free_port(), free_port()
    port = free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": d1, "fall_times": 1}, {"port": d2, "fall_times": 1}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/ok"
static_response = "ok"
[[http.server.location]]
rule = "/"
proxy_url = "http://app"
""" % {"p": port})
    wait_serving(port, path="/ok")
    for _ in range(3):
        t0 = time.monotonic()
        st, hd, body = get(port)
        assert st == 502 and b"upstream" in body and len(body) < 512, (st, body)
        assert time.monotonic() - t0 < 2
    assert wait_log(p, "127.0.0.1:%d marked down" % d1)
    assert wait_log(p, "127.0.0.1:%d marked down" % d2)
    st, _, body = get(port)
    assert st == 502 and b"no upstream server is up" in body


class TlsBackend(Backend):
    """An https upstream on a raw socket: "ok" answers each request (its
    Content-Length body recorded) after the handshake with ca_dir's server
    certificate; "hang" takes the TCP connection and never speaks TLS."""

    def __init__(self, ca_dir, mode="ok"):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ca_dir + "/server.crt", ca_dir + "/server.key")
        super().__init__("tls", mode)

    def _serve(self, c):
        c.settimeout(30)
        try:
            if self.mode == "hang":
                self.gone.wait(30)  # bounded: the test ends it with stop()
                return
            c = self.ctx.wrap_socket(c, server_side=True)
            body, _ = self._request(c, b"")
            if body is not None:
                self.bodies.append(body)
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (OSError, ssl.SSLError):
            pass
        finally:
            c.close()


def test_tls_handshake_is_part_of_the_connect(wmproxy, tmp_path):
    """An https server's TLS handshake counts as its connect, as in nginx:
    proxy_connect_timeout bounds it (it waited for proxy_read_timeout, or
    the TLS layer's own 15 s), and one that hangs or fails (a certificate
    from another CA) sent nothing, so even a POST goes on to the next
    server (it was 502, as a request the upstream had dropped)."""
    d = gencert(tmp_path / "up", "127.0.0.1")
    other = gencert(tmp_path / "other", "127.0.0.1")
    good, hang, bad = TlsBackend(d), TlsBackend(d, "hang"), TlsBackend(other)
    try:
        port = free_port()
        p = start(wmproxy, tmp_path, """
[http]
proxy_ssl_trusted_certificate = "%(d)s/ca.crt"
proxy_connect_timeout = "1s"
proxy_read_timeout = "20s"
""" % {"d": d} + ups("slow", {"port": hang.port}, {"port": good.port})
            + ups("badcert", {"port": bad.port}, {"port": good.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/ok"
static_response = "ok"
[[http.server.location]]
rule = "/slow"
proxy_url = "https://slow"
[[http.server.location]]
rule = "/bad"
proxy_url = "https://badcert"
[[http.server.location]]
rule = "/direct"
proxy_url = "https://127.0.0.1:%(h)d"
""" % {"p": port, "h": hang.port})
        wait_serving(port, path="/ok")
        for path in ("/slow", "/bad"):
            for i in range(2):
                body = b"%s %d" % (path.encode(), i)
                t0 = time.monotonic()
                st, _, got = get(port, path, method="POST", body=body)
                assert (st, got) == (200, b"ok"), (path, st, got)
                assert time.monotonic() - t0 < 5, path
                assert good.bodies[-1] == body
        assert wait_log(p, "TLS handshake timed out"), p.log()[-3000:]
        assert wait_log(p, "TLS handshake failed"), p.log()[-3000:]
        t0 = time.monotonic()
        st, _, got = get(port, "/direct")
        assert st == 504 and time.monotonic() - t0 < 5, (st, got)
    finally:
        for b in (good, hang, bad):
            b.stop()


def test_down_state_survives_a_reload(wmproxy, tmp_path, backends):
    a, b = backends("A", 503), backends("B")
    port, cport = free_port(), free_port()
    text = "[http]\n" + ups(
        "app", {"port": a.port, "fall_times": 1, "fail_timeout": '"60s"'}, {"port": b.port}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_next_upstream = "error timeout http_503"
[[http.server.location]]
rule = "/gen"
static_response = "%(gen)s"
[[http.server.location]]
rule = "/"
proxy_url = "http://app"
"""
    p = start(wmproxy, tmp_path, text % {"p": port, "gen": "one"}, cport=cport)
    wait_serving(port)
    for _ in range(3):
        assert get(port)[:3:2] == (200, b"B")
    assert wait_log(p, "127.0.0.1:%d marked down" % a.port)
    hits = a.hits
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport +
          text % {"p": port, "gen": "two"})
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: get(port, "/gen")[2] == b"two", what="reloaded")
    for _ in range(6):
        assert get(port)[:3:2] == (200, b"B")
    assert a.hits == hits  # still down under the new settings


@pytest.mark.parametrize("value,word", [
    ('"error http_501"', "http_501"),
    ('["error", "sometimes"]', "sometimes"),
    ('"off timeout"', "off"),
])
def test_bad_words_name_file_line_key(tmp_path, value, word):
    path = write(tmp_path / "bad.toml", 'disable_control = true\n[[http.server]]\n'
                 'bind_addr = "127.0.0.1:1"\nstatic_response = "x"\n'
                 'proxy_next_upstream = %s\n' % value)
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith("%s:5:" % path), first
    assert "http.server[0].proxy_next_upstream" in first and word in first, first
    path = write(tmp_path / "tries.toml", 'disable_control = true\n[[http.server]]\n'
                 'bind_addr = "127.0.0.1:1"\nstatic_response = "x"\n'
                 'proxy_next_upstream_tries = 0\n')
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "proxy_next_upstream_tries" in r.stderr, r.stderr


@pytest.mark.parametrize("check,words", [
    # no status would pass: every server was taken out after two checks
    ('path = "/h", expect_status = ""', ["health_check.expect_status", "names no status"]),
    ('path = "/h", expect_status = " , "', ["health_check.expect_status", "names no status"]),
    ('path = "/h", expect_status = "200 201 202 203 204 205 206 207 208"',
     ["health_check.expect_status", "at most 8 codes", "208"]),
    # a bad host was reported as the path (and a tab or a control byte in
    # either went into the probe's request head)
    ('path = "/h", host = "a b"', ["health_check.host", '"a b"']),
    ('path = "/h", host = "a\\u0001b"', ["health_check.host"]),
    ('path = "/h", host = ""', ["health_check.host"]),
    ('path = "/h\\tx"', ["health_check.path"]),
    # a long path was cut at 255 bytes without a word
    ('path = "/%s"' % ("p" * 300), ["health_check.path", "shorter than 256"]),
])
def test_bad_health_check_named_at_check(tmp_path, check, words):
    path = write(tmp_path / "hc.toml", 'disable_control = true\n[http]\n[[http.upstream]]\n'
                 'name = "app"\nserver = [{ addr = "127.0.0.1:9" }]\n'
                 'health_check = { %s }\n[[http.server]]\nbind_addr = "127.0.0.1:1"\n'
                 'proxy_url = "http://app"\n' % check)
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.startswith(path + ":") and "http.upstream[0]" in first, first
    for w in words:
        assert w in first, first
    assert "health_check.path" not in first or "health_check.path" in words, first


def _answering(reply):
    """A server that reads each connection's request head, sends
    reply(head, conn) and closes."""
    def one(c):
        try:
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = c.recv(4096)
                if not d:
                    return
                buf += d
            c.sendall(reply(buf, c))
        except OSError:
            pass
        finally:
            c.close()
    return serve_tcp(one)


def _port_servers(n):
    """n upstreams on their own ports, each answering its port and closing."""
    def reply(req, c):
        me = str(c.getsockname()[1]).encode()
        return (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(me), me))
    return [_answering(reply) for _ in range(n)]



def _get_from_slash24(i, port, path):
    """One GET with Connection: close from 127.0.i.1 (client i in its own
    /24, as ip_hash sees clients); the whole answer."""
    s = socket.socket()
    s.bind(("127.0.%d.1" % i, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n" % path.encode())
    data = recv_all(s)
    s.close()
    return data

def test_round_robin_and_ip_hash_use_every_server_by_weight(wmproxy, tmp_path):
    """round_robin gives every server its turn, also past the 64th (it
    only ever chose among the first 64), and ip_hash spreads clients as the
    weights say (it ignored them), as nginx's."""
    many = _port_servers(70)
    two = _port_servers(2)
    ports = [s.getsockname()[1] for s in many]
    a, b = (s.getsockname()[1] for s in two)
    port = free_port()
    start(wmproxy, tmp_path, "[http]\n" +
          ups("many", *[{"port": q} for q in ports]) +
          ups("hashed", {"port": a, "weight": 300}, {"port": b, "weight": 100})
          .replace('balance = "round_robin"', 'balance = "ip_hash"') + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/h"
proxy_url = "http://hashed"
[[http.server.location]]
rule = "/"
proxy_url = "http://many"
""" % {"p": port})
    wait_serving(port, path="/x")
    seen = set()
    for _ in range(2 * len(ports)):
        st, _, body = get(port, "/x")
        assert st == 200
        seen.add(int(body))
    assert seen == set(ports), sorted(set(ports) - seen)
    # 200 clients, each from its own /24 of 127/8
    got = {a: 0, b: 0}
    for i in range(1, 201):
        got[int(_get_from_slash24(i, port, "/h").rsplit(b"\r\n\r\n", 1)[1])] += 1
    assert 0.65 <= got[a] / 200 <= 0.85, got
    for s in many + two:
        s.close()


def test_round_robin_shares_a_down_servers_turns_by_weight(wmproxy, tmp_path):
    """With weights 5:1:1 and the 5 down, the two others share 1:1 (nginx's
    smooth round-robin skips the down server): its turns all went to the
    server after it in the order, 5:2."""
    srv = _port_servers(2)
    pb, pc = (s.getsockname()[1] for s in srv)
    dead, port = free_port(), free_port()
    p = start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", {"port": dead, "weight": 5, "fall_times": 1, "fail_timeout": '"60s"'},
        {"port": pb, "weight": 1}, {"port": pc, "weight": 1}) + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://app"
""" % {"p": port})
    wait_serving(port, path="/x")
    wait_until(lambda: get(port, "/x")[0] == 200 and
               "127.0.0.1:%d marked down" % dead in p.log(), what="dead server out")
    got = {pb: 0, pc: 0}
    for _ in range(300):
        st, _, body = get(port, "/x")
        assert st == 200
        got[int(body)] += 1
    assert abs(got[pb] - got[pc]) <= 30, got
    for s in srv:
        s.close()


def _check_server(name, check_status):
    """An upstream answering GET /health with check_status, any other
    request with 200 and its name; counts the checks."""
    checks = [0]

    def reply(req, c):
        st, body = 200, name
        if req.startswith(b"GET /health "):
            checks[0] += 1
            st, body = check_status, b""
        return (b"HTTP/1.1 %d X\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (st, len(body), body))
    return _answering(reply), checks


def test_reload_without_health_check_stops_it(wmproxy, tmp_path):
    """Settings reloaded without the upstream's health_check stop checking
    it and bring back the server the check held down: the check of the old
    settings stayed on for good (and the server out)."""
    (la, ca), (lb, _) = _check_server(b"A", 503), _check_server(b"B", 200)
    port, cport = free_port(), free_port()
    text = """[http]
[[http.upstream]]
name = "app"
balance = "round_robin"
server = [{ addr = "127.0.0.1:%(a)d" }, { addr = "127.0.0.1:%(b)d" }]
%(hc)s
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/gen"
static_response = "%(gen)s"
[[http.server.location]]
rule = "/"
proxy_url = "http://app"
"""
    d = {"a": la.getsockname()[1], "b": lb.getsockname()[1], "p": port, "gen": "one",
         "hc": 'health_check = { path = "/health", interval = "200ms", timeout = "1s" }'}
    p = start(wmproxy, tmp_path, text % d, cport=cport)
    wait_serving(port)
    assert wait_log(p, "127.0.0.1:%d is down after" % d["a"])
    assert {get(port)[2] for _ in range(6)} == {b"B"}
    d.update(hc="", gen="two")
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport + text % d)
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: get(port, "/gen")[2] == b"two", what="reloaded")
    wait_until(lambda: get(port)[2] == b"A", 5, what="A back without its check")
    n = ca[0]
    # a window of 5 intervals: no check may come in it
    holds_during(lambda: ca[0] - n <= 1, 1, step=0.05, what="no health check after the reload")
    la.close()
    lb.close()


def test_ip_hash_spreads_the_clients_of_a_down_server(wmproxy, tmp_path):
    """ip_hash: when a server is out, only its clients move, and they
    spread over the others (hashed again, as nginx): they all went to the
    server after it in the order, which got twice its share."""
    ls = _port_servers(3)
    ports = [s.getsockname()[1] for s in ls]
    port = free_port()
    start(wmproxy, tmp_path, "[http]\n" + ups(
        "app", *[{"port": q, "fall_times": 1, "fail_timeout": '"60s"'} for q in ports])
        .replace('balance = "round_robin"', 'balance = "ip_hash"') + """
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://app"
""" % {"p": port})
    wait_serving(port)

    def server_of(i):  # client i, from 127.0.i.1 (its own /24)
        data = _get_from_slash24(i, port, "/")
        assert data.startswith(b"HTTP/1.1 200 "), data[:100]
        return int(data.rsplit(b"\r\n\r\n", 1)[1])
    before = {i: server_of(i) for i in range(1, 121)}
    assert before == {i: server_of(i) for i in range(1, 121)}  # stable
    ls[0].shutdown(socket.SHUT_RDWR)
    ls[0].close()
    after = {i: server_of(i) for i in range(1, 121)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(before[i] == ports[0] for i in moved), moved
    assert all(after[i] != ports[0] for i in after)
    got = {q: sum(1 for i in moved if after[i] == q) for q in ports[1:]}
    assert min(got.values()) >= len(moved) // 4, got
    for s in ls[1:]:
        s.close()


def test_health_check_keeps_its_interval(wmproxy, tmp_path):
    """A check comes every interval: each was scheduled from the tick that
    started it, so it came up to a tick late (1 s: every 1.33 s)."""
    seen = []

    def reply(req, c):
        seen.append(time.monotonic())
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ls = _answering(reply)
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "app"
server = [{ addr = "127.0.0.1:%d" }]
health_check = { path = "/health", interval = "1s", timeout = "1s" }
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://app"
""" % (ls.getsockname()[1], port))
    wait_until(lambda: len(seen) >= 7, 20, what="7 checks: %d" % len(seen))
    gap = (seen[6] - seen[1]) / 5
    assert 0.9 <= gap <= 1.08, gap
    ls.close()


def test_refused_reload_keeps_the_running_health_check(wmproxy, tmp_path):
    """A reload refused for an error met after an upstream was built left
    that upstream's new health_check (path, interval) in force although the
    previous settings kept running."""
    paths = []

    def reply(req, c):
        paths.append(req.split(b" ")[1])
        return b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ls = _answering(reply)
    port, cport = free_port(), free_port()
    text = """[http]
[[http.upstream]]
name = "app"
server = [{ addr = "127.0.0.1:%(a)d" }]
health_check = { path = "%(path)s", interval = "200ms", timeout = "1s" }
[[http.upstream]]
name = "other"
server = [{ addr = "127.0.0.1:%(a)d" }]
health_check = { path = "%(other)s", interval = "5s" }
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/a"
proxy_url = "http://app"
[[http.server.location]]
rule = "/"
proxy_url = "http://other"
"""
    d = {"a": ls.getsockname()[1], "p": port, "path": "/health", "other": "/other"}
    start(wmproxy, tmp_path, text % d, cport=cport)
    wait_until(lambda: paths.count(b"/health") >= 2, what="checks")
    d.update(path="/new", other="/bad path")  # the second upstream is refused
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport + text % d)
    st, _, body = api(cport, "POST", "/reload")
    assert st == 422 and "/bad path" in body["message"], body
    n = paths.count(b"/health")
    wait_until(lambda: paths.count(b"/health") >= n + 5, what="checks after the refused reload")
    assert b"/new" not in paths, paths
    ls.close()


def test_health_checks_keep_their_interval_with_many_servers(wmproxy, tmp_path):
    """Every server is checked at its interval however many there are: at
    most 64 checks started per 200 ms tick, so 200 servers at a 200 ms
    interval were each checked about every 600 ms."""
    import selectors
    sel = selectors.DefaultSelector()
    counts = {}
    stop = threading.Event()
    for _ in range(200):
        ls = socket.socket()
        ls.bind(("127.0.0.1", 0))
        ls.listen(64)
        ls.setblocking(False)
        counts[ls.getsockname()[1]] = 0
        sel.register(ls, selectors.EVENT_READ, ("listen", ls.getsockname()[1]))

    def loop():  # every probe: read its head, count it, answer 200, close
        while not stop.is_set():
            for key, _ in sel.select(0.2):
                kind, data = key.data
                if kind == "listen":
                    try:
                        c, _ = key.fileobj.accept()
                    except OSError:
                        continue
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ, ("conn", [data, b""]))
                    continue
                try:
                    d = key.fileobj.recv(4096)
                except OSError:
                    d = b""
                data[1] += d
                if d and b"\r\n\r\n" not in data[1]:
                    continue
                if d:
                    counts[data[0]] += 1
                    try:
                        key.fileobj.send(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"
                                         b"Connection: close\r\n\r\n")
                    except OSError:
                        pass
                sel.unregister(key.fileobj)
                key.fileobj.close()
    t = threading.Thread(target=loop, daemon=True)
    t.start()
    port = free_port()
    servers = ", ".join('{ addr = "127.0.0.1:%d" }' % q for q in counts)
    start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "many"
server = [%s]
health_check = { path = "/health", interval = "200ms", timeout = "1s" }
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://many"
""" % (servers, port))
    try:
        wait_until(lambda: min(counts.values()) >= 2, 15,
                   what="every server checked: %r" % sorted(counts.values())[:5])
        before = dict(counts)
        # at a 200 ms interval, 8 checks each take 1.6 s; the bar is 5 s
        # (the servers past the first hundred or so were not checked at all)
        wait_until(lambda: min(counts[q] - before[q] for q in counts) >= 8, 5,
                   what="8 checks of every server within 5 s")
    finally:
        stop.set()
        t.join(5)


def _checked_server(wmproxy, tmp_path, reply, timeout):
    """One server answering every check with reply(), taken out after one
    failed check and back after one passed: (proxy, listener, log key)."""
    ls = _answering(lambda req, c: reply())
    port = free_port()
    p = start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "app"
server = [{ addr = "127.0.0.1:%d", fall_times = 1, rise_times = 1 }]
health_check = { path = "/health", interval = "200ms", timeout = "%s" }
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://app"
""" % (ls.getsockname()[1], timeout, port))
    return p, ls, "health: app|127.0.0.1:%d" % ls.getsockname()[1]


def test_health_check_reads_the_whole_head(wmproxy, tmp_path):
    """A check passes on a complete, well-formed response head only: a
    server whose status line is fine but whose head is broken (a field line
    without a colon), or that closes before the head ends, would break
    every proxied request, and is taken out; an interim 100 before a 200
    passes."""
    modes = {"answer": b"HTTP/1.1 200 OK\r\nbroken field line\r\n\r\n"}
    p, ls, key = _checked_server(wmproxy, tmp_path, lambda: modes["answer"], "1s")
    assert wait_log(p, key + " is down"), p.log()
    assert "bad response head" in p.log(), p.log()
    modes["answer"] = (b"HTTP/1.1 100 Continue\r\n\r\n"
                       b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert wait_log(p, key + " is up again"), p.log()
    modes["answer"] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n"  # then the close
    assert wait_log(p, key + " is down", count=2), p.log()
    assert "connection closed before the response head" in p.log(), p.log()
    ls.close()


def test_health_check_interim_answers_bounded(wmproxy, tmp_path):
    """Interim answers in a check's response are bounded as for proxied
    requests: a 101 to the check's plain GET fails it as such (it said
    llhttp's "Pause on CONNECT/Upgrade"), and a server sending 1xx heads
    without end fails it after WM_HTTP_MAX_INTERIM of them (it was
    "timed out", after the whole timeout)."""
    modes = {"answer": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
                       b"Connection: upgrade\r\n\r\nHTTP/1.1 200 OK\r\n\r\n"}
    p, ls, key = _checked_server(wmproxy, tmp_path, lambda: modes["answer"], "5s")
    assert wait_log(p, key + " is down"), p.log()
    assert "failed check(s): 101 without an upgrade" in p.log(), p.log()
    modes["answer"] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
    assert wait_log(p, key + " is up again"), p.log()
    modes["answer"] = b"HTTP/1.1 100 Continue\r\n\r\n" * 2000
    assert wait_log(p, key + " is down", count=2), p.log()
    assert "failed check(s): more than 16 interim (1xx) responses" in p.log(), p.log()
    ls.close()
