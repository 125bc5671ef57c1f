"""Reverse proxy features that worked when probed by hand and had no test
(issue 11): address lists (IPv6, ranges) with one listener per address,
`domain`, rule tables with scheme and client_ip, weighted and random
balancing, the upstream pool's keepalive_timeout, a certificate changed by
reload, `reverse-proxy --ws --access-log`, WebSocket relays (without is_ws,
idle timeout), slowloris at 2,000 sockets, and the limit_req zone's memory
bound."""

import asyncio
import os
import resource
import select
import socket
import struct
import threading
import time

import pytest

from helpers import origin as origin_mod
from helpers.control import api
from helpers.net import _bindable, connect, free_port, recv_head, serve_tcp, wait_until
from helpers.revconf import (cert_fingerprint, gencert, get, listening_sockets,
                             tls_get, top, wait_serving, write_conf, ws_handshake)
from helpers.tunnel import wait_log

websockets = pytest.importorskip("websockets")


def run(wmproxy, tmp_path, doc, port=None, fmt="toml"):
    return wmproxy(["run", "-c", write_conf(tmp_path, doc, fmt)], port=port)


def consecutive_ports(n):
    """n consecutive ports free on loopback (for a range "a:P-:Q")."""
    for _ in range(200):
        p = free_port()
        if all(_bindable(p + i) for i in range(1, n)):
            return list(range(p, p + n))
    raise RuntimeError("no %d consecutive free ports" % n)


def ws_echo_through(port, path="/ws", n=3):
    """python3-websockets through the proxy to the origin's /ws echo."""
    async def go():
        async with websockets.connect("ws://127.0.0.1:%d%s" % (port, path), max_size=None) as ws:
            for i in range(n):
                msg = os.urandom(1000 * (i + 1))
                await ws.send(msg)
                assert await ws.recv() == msg
            await ws.send("text")
            assert await ws.recv() == "text"
    asyncio.run(asyncio.wait_for(go(), 20))


# ---- addresses ----

def test_bind_lists_ipv6_range_and_one_listener_per_address(wmproxy, tmp_path):
    """"127.0.0.1:P [::1]:P 127.0.0.1:R-:R+2": every address serves; two
    servers share P; each address has one listening socket per worker, not
    one per server."""
    port = free_port()
    rng = consecutive_ports(3)
    run(wmproxy, tmp_path, top({"server": [
        {"bind_addr": "127.0.0.1:%d [::1]:%d 127.0.0.1:%d-:%d" % (port, port, rng[0], rng[-1]),
         "up_name": "a.test", "static_response": "A"},
        {"bind_addr": "127.0.0.1:%d" % port, "up_name": "b.test", "static_response": "B"},
        {"bind_addr": "[::1]:%d" % port, "up_name": "c.test", "static_response": "C"},
    ]}, workers=2), port=port)
    wait_serving(port)
    assert get(port, host="a.test")[2] == b"A"
    assert get(port, host="b.test")[2] == b"B"
    wait_serving(port, addr="::1")
    assert get(port, host="c.test", addr="::1")[2] == b"C"
    assert get(port, host="b.test", addr="::1")[2] == b"A"  # b.test is not on [::1]:P
    for p in rng:
        assert get(p, host="a.test")[2] == b"A"
    socks = listening_sockets(port)
    assert sorted(f for f, _ in socks) == ["tcp", "tcp", "tcp6", "tcp6"], socks
    for p in rng:
        assert len(listening_sockets(p)) == 2, (p, listening_sockets(p))
    assert listening_sockets(rng[-1] + 1) == []  # the range ends where it says


def test_domain_matches_like_up_name(wmproxy, tmp_path):
    port = free_port()
    bind = "127.0.0.1:%d" % port
    run(wmproxy, tmp_path, top({"server": [
        {"bind_addr": bind, "up_name": "first.test", "static_response": "first"},
        {"bind_addr": bind, "domain": "d.test", "static_response": "domain {host}"},
        {"bind_addr": bind, "domain": "*.wild.test", "static_response": "wild"},
    ]}), port=port)
    wait_serving(port)
    assert get(port, host="D.Test:99")[2] == b"domain D.Test:99"
    assert get(port, host="x.wild.test")[2] == b"wild"
    assert get(port, host="nobody.test")[2] == b"first"


def test_rule_table_scheme_and_client_ip(wmproxy, tmp_path):
    d = gencert(tmp_path / "ca", "s.test")
    port, sport = free_port(), free_port()
    run(wmproxy, tmp_path, top({"server": [{
        "bind_addr": "127.0.0.1:%d [::1]:%d" % (port, port),
        "bind_ssl": "127.0.0.1:%d" % sport,
        "up_name": "s.test", "cert": d + "/server.crt", "key": d + "/server.key",
        "location": [
            {"rule": {"path": "/w", "client_ip": ["10.0.0.0/8"]}, "static_response": "ten"},
            {"rule": {"path": "/w", "scheme": "https"}, "static_response": "tls"},
            {"rule": {"path": "/w", "client_ip": ["::1/128"]}, "static_response": "v6"},
            {"rule": {"path": "/w", "scheme": "http", "client_ip": "127.0.0.0/8 192.0.2.0/24"},
             "static_response": "v4"},
            {"rule": {"path": "/only-v6", "client_ip": ["::1"]}, "static_response": "v6"},
        ]}]}), port=port)
    wait_serving(port, host="s.test", path="/w")
    assert get(port, "/w", host="s.test")[2] == b"v4"
    wait_serving(port, host="s.test", path="/w", addr="::1")
    assert get(port, "/w", host="s.test", addr="::1")[2] == b"v6"
    assert tls_get(sport, "s.test", "/w", cafile=d + "/ca.crt")[1].endswith(b"\r\n\r\ntls")
    assert get(port, "/only-v6", host="s.test")[0] == 404
    assert get(port, "/only-v6", host="s.test", addr="::1")[2] == b"v6"


# ---- balancing ----

def test_default_weighted_and_random_balancing(wmproxy, tmp_path, backends):
    """The default (wmproxy's weighted random choice) follows the weights;
    `random` ignores them. 300 requests each, bounds at about 6 standard
    deviations: weighted A ~ 30 (sd 5), random A ~ 150 (sd 9)."""
    a, b = backends("A", "B")
    port = free_port()
    servers = [{"addr": "127.0.0.1:%d" % a.port, "weight": 100},
               {"addr": "127.0.0.1:%d" % b.port, "weight": 900}]
    run(wmproxy, tmp_path, top({
        "upstream": [{"name": "w", "server": servers},
                     {"name": "r", "balance": "random", "server": servers}],
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
            {"rule": "/w", "proxy_url": "http://w"},
            {"rule": "/r", "proxy_url": "http://r"}]}]}), port=port)
    wait_serving(port, path="/w")

    def share(path, n=300):
        s = connect(port)
        f = s.makefile("rb")
        count = 0
        for _ in range(n):  # one keep-alive connection: the choice is per request
            s.sendall(b"GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path.encode())
            assert b" 200 " in f.readline()
            length = 0
            while True:
                ln = f.readline()
                if ln in (b"\r\n", b""):
                    break
                if ln.lower().startswith(b"content-length:"):
                    length = int(ln.split(b":")[1])
            count += f.read(length) == b"A"
        s.close()
        return count
    w = share("/w")
    assert 5 <= w <= 65, w
    r = share("/r")
    assert 100 <= r <= 200, r


# ---- the upstream pool ----

def test_upstream_keepalive_timeout_closes_idle_connection(wmproxy, tmp_path):
    """keepalive_timeout = 1s: the idle pooled upstream connection is closed
    by the proxy after about a second (the default is 60 s)."""
    closed = []
    opened = []

    def backend(c):
        opened.append(time.monotonic())
        c.settimeout(20)
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = c.recv(4096)
                    if not d:
                        closed.append(time.monotonic())
                        return
                    buf += d
                buf = buf.split(b"\r\n\r\n", 1)[1]
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            closed.append(None)
        finally:
            c.close()

    ls = serve_tcp(backend)
    try:
        port = free_port()
        run(wmproxy, tmp_path, top({
            "upstream": [{"name": "u", "keepalive_timeout": "1s",
                          "server": [{"addr": "127.0.0.1:%d" % ls.getsockname()[1]}]}],
            "server": [{"bind_addr": "127.0.0.1:%d" % port, "proxy_url": "http://u"}]},
            workers=1), port=port)
        assert get(port)[:3:2] == (200, b"ok")
        t0 = time.monotonic()
        wait_until(lambda: closed, timeout=8, what="the idle upstream connection to close")
        assert closed[0] is not None, "the upstream connection was reset, not closed"
        waited = closed[0] - t0
        assert 0.7 <= waited <= 5, waited
        assert len(opened) == 1
    finally:
        ls.close()


# ---- TLS: a certificate changed by reload ----

def test_certificate_changed_by_reload(wmproxy, tmp_path):
    d1 = gencert(tmp_path / "one", "c.test")
    d2 = gencert(tmp_path / "two", "c.test")
    port, cport = free_port(), free_port()

    def doc(d):
        return top({"server": [{"bind_ssl": "127.0.0.1:%d" % port, "up_name": "c.test",
                                "cert": d + "/server.crt", "key": d + "/server.key",
                                "static_response": "c"}]}, cport=cport)
    run(wmproxy, tmp_path, doc(d1), port=port)
    fp1, fp2 = cert_fingerprint(d1 + "/server.crt"), cert_fingerprint(d2 + "/server.crt")
    assert fp1 != fp2
    assert tls_get(port, "c.test", cafile=d1 + "/ca.crt")[0] == fp1
    # other paths in the file
    write_conf(tmp_path, doc(d2), "toml")
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: tls_get(port, "c.test")[0] == fp2, what="the new certificate")
    assert tls_get(port, "c.test", cafile=d2 + "/ca.crt")[1].endswith(b"c")
    # the same paths, new files (a renewal in place), then a reload
    d3 = gencert(tmp_path / "three", "c.test")
    for name in ("server.crt", "server.key"):
        os.replace(os.path.join(d3, name), os.path.join(d2, name) + ".new")
        os.replace(os.path.join(d2, name) + ".new", os.path.join(d2, name))
    fp3 = cert_fingerprint(d2 + "/server.crt")
    assert fp3 != fp2
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: tls_get(port, "c.test")[0] == fp3, what="the renewed certificate")


# ---- the reverse-proxy command ----

def test_reverse_proxy_command_ws_and_access_log(wmproxy, tmp_path, origin):
    port = free_port()
    logf = tmp_path / "rp-access.log"
    wmproxy(["reverse-proxy", "-f", "127.0.0.1:%d" % port, "-t", "127.0.0.1:%d" % origin.port,
             "--ws", "--access-log", "%s info" % logf, "--workers", "1"], port=port)
    ws_echo_through(port)
    st, _, body = get(port, "/bytes/10?q=z", host="rp.test", headers={"User-Agent": "ua-rp"})
    assert (st, len(body)) == (200, 10)

    def lines():
        try:
            return open(str(logf)).read().splitlines()
        except OSError:
            return []
    got = wait_until(lambda: [ln for ln in lines() if "/bytes/10" in ln], what="access line")
    ln = got[0]
    # wmproxy's main format
    assert (" 127.0.0.1 " in ln and " /bytes/10?q=z path:/bytes/10 query:q=z host:rp.test "
            "status: 200 200 " in ln and "user_agent: ua-rp" in ln), ln
    assert wait_until(lambda: [x for x in lines() if "/ws" in x and "status: 101" in x],
                      what="the WebSocket's access line")


# ---- WebSocket relays ----

def test_upgrade_relayed_without_is_ws(wmproxy, tmp_path, origin):
    port = free_port()
    run(wmproxy, tmp_path, top({"server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
        {"rule": "/", "proxy_url": "http://127.0.0.1:%d" % origin.port}]}]}), port=port)
    wait_serving(port, path="/conn")
    ws_echo_through(port)


def test_websocket_idle_timeout_closes_relay(wmproxy, tmp_path, origin):
    """A relayed WebSocket is cut after its location's proxy_read_timeout
    (as nginx) without a byte either way; traffic keeps it open; the
    server's keep-alive timeout no longer applies to it."""
    port = free_port()
    p = run(wmproxy, tmp_path, top({"server": [{
        "bind_addr": "127.0.0.1:%d" % port, "client_ka_timeout": "300ms", "location": [
            {"rule": "/ws", "is_ws": True, "proxy_read_timeout": "1s",
             "proxy_url": "ws://127.0.0.1:%d" % origin.port}]}]}),
        port=port)
    s = connect(port)
    s.sendall(ws_handshake())
    assert b" 101 " in recv_head(s).split(b"\r\n")[0]
    f = s.makefile("rb")
    # busy for 2.5 s (echoes back to back): never cut
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:
        s.sendall(origin_mod.ws_frame(2, b"ping"))
        assert origin_mod.ws_read_frame(f) == (2, b"ping")
    # then idle: closed after about a second
    t0 = time.monotonic()
    s.settimeout(8)
    try:
        data = s.recv(100)
    except ConnectionResetError:
        data = b""
    waited = time.monotonic() - t0
    assert data == b"" and 0.7 <= waited <= 5, (data, waited)
    s.close()
    assert wait_log(p, "code=101"), p.log()[-2000:]


@pytest.mark.parametrize("upgrade_req,answer", [
    (True, b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n"),
    (False, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n"),
], ids=["101-without-upgrade-header", "101-to-plain-request"])
def test_101_without_an_upgrade_is_a_502(wmproxy, tmp_path, upgrade_req, answer):
    """A 101 that names no protocol (RFC 9110 15.2.2: Upgrade is required),
    or that answers a request which asked for none, leaves HTTP on the
    target's side only: the client gets a 502, never a 101 and a relay."""
    def handler(c):
        with c:
            try:
                c.settimeout(10)
                recv_head(c)
                c.sendall(answer + b"\x81\x05after")
                c.recv(100)  # held open: a relay would wait on it
            except OSError:
                pass
    lst = serve_tcp(handler)
    port = free_port()
    p = run(wmproxy, tmp_path, top({"server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
        {"rule": "/", "proxy_url": "http://127.0.0.1:%d" % lst.getsockname()[1]}]}]}), port=port)
    try:
        s = connect(port)
        s.sendall(ws_handshake() if upgrade_req else
                  b"GET /ws HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
        s.settimeout(5)
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        assert data.startswith(b"HTTP/1.1 502 "), data
        assert b"HTTP/1.1 101" not in data and b"after" not in data, data
        assert wait_log(p, "answered 101"), p.log()[-2000:]
    finally:
        lst.close()


# ---- slowloris at 2,000 sockets ----

def test_slowloris_2000_sockets(wmproxy, tmp_path):
    """2,000 clients trickle a request head a byte at a time; a normal client
    is served promptly meanwhile, and every slow one is cut by the head
    timeout (client_read_timeout, counted from a head's first byte)."""
    n = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 500
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.skip("RLIMIT_NOFILE hard limit %d < %d" % (hard, need))
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        _slowloris(wmproxy, tmp_path, n)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _slowloris(wmproxy, tmp_path, n):
    port = free_port()
    p = run(wmproxy, tmp_path, top({"server": [{
        "bind_addr": "127.0.0.1:%d" % port, "client_read_timeout": "3s",
        "static_response": "fast"}]}), port=port)
    wait_serving(port)
    slow = []
    first = {}  # fd -> when its head's first bytes went
    try:
        for _ in range(n):
            s = socket.socket()
            s.settimeout(10)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
            s.setblocking(False)
            slow.append(s)
            first[s.fileno()] = time.monotonic()
        t_start = time.monotonic()
        fds = {s.fileno(): s for s in slow}
        poller = select.poll()  # select() stops at descriptor 1023
        for fd in fds:
            poller.register(fd, select.POLLIN)
        served, cut_at = [], []
        got408 = reset = 0
        # each round: one more header byte on every open slow socket (a timer
        # restarted by each byte would never fire), one normal request, and
        # the answers of the slow sockets cut so far
        while fds and time.monotonic() - t_start < 15:
            for s in fds.values():
                try:
                    s.send(b"x")
                except OSError:
                    pass
            t0 = time.monotonic()
            assert get(port)[2] == b"fast"
            served.append(time.monotonic() - t0)
            for fd, _ in poller.poll(250):
                try:
                    d = fds[fd].recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    d = None
                    reset += 1
                if d and d.startswith(b"HTTP/1.1 408"):
                    got408 += 1
                if not d or b"\r\n\r\n" in d:
                    poller.unregister(fd)
                    del fds[fd]
                    cut_at.append(time.monotonic() - first[fd])
        assert not fds, "%d of %d slow sockets still open" % (len(fds), n)
        assert got408 >= n * 0.99, (got408, reset)  # the rest: reset (trickled bytes unread)
        assert min(cut_at) >= 2.5, min(cut_at)  # not before their head time (3 s) was up
        assert max(served) < 1.0 and len(served) >= 5, served
        assert get(port)[2] == b"fast"
    finally:
        for s in slow:
            s.close()
    assert p.alive()


# ---- limit_req: the zone's memory bound ----

def limited(wmproxy, tmp_path, zone):
    """A server whose /k/ location is limited by zone k (burst 0); the
    process and its port."""
    port = free_port()
    p = run(wmproxy, tmp_path, top({
        "limit_req_zone": {"k": zone},
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
            {"rule": "/k/", "limit_req": "zone=k burst=0", "static_response": "k"},
            {"rule": "/", "static_response": "ok"}]}]}), port=port)
    wait_serving(port)
    return p, port


def test_limit_req_zone_memory_is_bounded(wmproxy, tmp_path):
    """A zone of limit=2k holds 16 keys (128 bytes each, 16 at least): the
    17th distinct key makes it forget the least recently seen one (a
    warning says so), so a flood of distinct keys never grows it."""
    p, port = limited(wmproxy, tmp_path, "{path} limit=2k rate=1r/m")
    assert get(port, "/k/first")[0] == 200
    assert get(port, "/k/first")[0] == 503  # remembered
    for i in range(15):
        assert get(port, "/k/%d" % i)[0] == 200
    assert get(port, "/k/first")[0] == 503  # 16 keys: all still held
    assert "is full" not in p.log()
    for i in range(15, 200):
        assert get(port, "/k/%d" % i)[0] == 200  # each a new key: the oldest goes
    assert wait_log(p, "limit_req zone k is full (16 keys)"), p.log()[-2000:]
    assert get(port, "/k/first")[0] == 200  # forgotten long ago
    assert get(port, "/k/199")[0] == 503  # the recent ones are held
    assert get(port, "/k/190")[0] == 503


def test_limit_req_long_keys_are_told_apart(wmproxy, tmp_path):
    """Keys longer than the 64 bytes a zone stores are told apart by their
    length and a hash of the whole key: two paths sharing their first 100
    bytes used to share one counter (the key was cut to 63 bytes)."""
    p, port = limited(wmproxy, tmp_path, "{path} rate=1r/m")
    stem = "/k/" + "x" * 100
    assert get(port, stem + "a")[0] == 200
    assert get(port, stem + "b")[0] == 200        # another key
    assert get(port, stem + "bb")[0] == 200       # longer: another key
    assert get(port, stem + "a")[0] == 503        # remembered
    assert get(port, stem + "b")[0] == 503
    assert p.alive()


# ---- access log of an interim answer ----

def test_client_gone_after_interim_answer_logs_no_status(wmproxy, tmp_path):
    """A client that leaves after the upstream's 103 Early Hints, before
    the final answer, is logged as one that got no answer (as a client gone
    during the wait): the interim status is not the request's (it used to
    say 103, and 100 on an HTTP/2 stream reset after a 100 Continue)."""
    release, seen = threading.Event(), []

    def upstream(c):
        c.settimeout(20)
        try:
            head = recv_head(c)
            seen.append(head.split(b" ")[1])
            if b"/hints" in head:
                c.sendall(b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n")
            release.wait(20)  # the final answer never comes
        except OSError:
            pass
        finally:
            c.close()
    up = serve_tcp(upstream)
    port = free_port()
    logf = tmp_path / "access.log"
    conf = tmp_path / "hints.toml"
    conf.write_text("""disable_control = true
[http]
access_log = "acc st"
[http.log_names]
acc = "%s"
[http.log_format]
st = "{url} st={status} up={up_status}"
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://127.0.0.1:%d"
""" % (logf, port, up.getsockname()[1]))
    p = wmproxy(["run", "-c", str(conf)], port=port)
    try:
        for path in ("/wait", "/hints"):
            s = connect(port)
            s.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: h.test\r\n\r\n")
            if path == "/hints":
                assert recv_head(s).startswith(b"HTTP/1.1 103 "), path
            else:
                wait_until(lambda: b"/wait" in seen, what="the request at the upstream")
            # a reset: a FIN would be a half-close, still answered (HAProxy's way)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()

        def lines():
            try:
                return open(str(logf)).read().splitlines()
            except OSError:
                return []
        got = wait_until(lambda: len([ln for ln in lines() if ln.startswith("/")]) >= 2 and lines(),
                         what="two access lines: %r" % lines())
        by = {ln.split()[0]: ln for ln in got}
        assert by["/hints"].split()[1:] == by["/wait"].split()[1:], got
        assert "103" not in by["/hints"], got
        assert p.alive()
    finally:
        release.set()
        up.close()
