"""L4 forwarding ([stream]): TCP (half-close, splice, failover, timeouts,
TLS either side, PROXY protocol both ways), UDP sessions (IPv4 and IPv6,
65,507-byte datagrams, bounded table, idle timeout), access lines and
/status counts, reload, wmproxy's reference config, iperf3."""

import json
import os
import re
import select
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from helpers import origin as origin_mod
from helpers.control import api
from helpers.net import (free_port, free_ports, free_udp_port, full_listener, no_free_fds,
                         read_slowly, wait_until)
from helpers.ref import need_ref, ref_file
from helpers.stream import (PPBackend, ThreadedServer, TLSEcho, config, echo_reply, exchange,
                            rss_kb, server, status_listener, udp_echo, v2_addrs, wait_log_count,
                            ws_connect, ws_recv_data, ws_send)
from helpers.tunnel import make_certs, wait_log



def dead_port():
    """A port nobody listens on (connections are refused)."""
    return free_port()


# ---- 1. TCP ----

def test_tcp_forward_halfclose_failover_and_access_line(wmproxy, tmp_path, echo):
    port, cport = free_ports(2)
    body = ('[[stream.upstream]]\nname = "up"\nbalance = "round_robin"\n'
            'server = [{ addr = "127.0.0.1:%d" }, { addr = "127.0.0.1:%d" }]\n'
            % (dead_port(), echo.port)) + server(bind_addr="127.0.0.1:%d" % port, up_name="up")
    p = wmproxy(["run", "-c", config(tmp_path, body, control=cport)], port=port)
    data = os.urandom(3 << 20)
    # every connection reaches the echo, whichever server round-robin tries first
    for _ in range(4):
        assert exchange(port, data) == echo_reply(data)
    line = re.compile(r"access proto=tcp client=127\.0\.0\.1:\d+ user=- target=127\.0\.0\.1:%d "
                      r"code=0 in=%d out=%d ms=\d+ end=closed" % (echo.port, len(data),
                                                                   len(data) + 64))
    # the dead server was tried, then the next one (logs are written asynchronously)
    wait_until(lambda: "connection refused" in p.log() and line.search(p.log()),
               what="the refusal and the access line in the log")
    st = wait_until(lambda: (lambda l: l if l and l["open"] == 0 else None)(
        status_listener(cport, "127.0.0.1:%d" % port)), what="status counts")
    assert st["kind"] == "stream" and st["accepted"] >= 4  # (+ the start-up probe)
    assert st["bytes_in"] == 4 * len(data)


def test_tcp_active_health_check(wmproxy, tmp_path, echo):
    """health_check on a [[stream.upstream]]: TCP connects every interval take a
    dead server out (and log it) before any client meets it."""
    port = free_port()
    dead = dead_port()
    body = ('[[stream.upstream]]\nname = "up"\nbalance = "round_robin"\n'
            'health_check = { interval = "200ms", timeout = "100ms" }\n'
            'server = [{ addr = "127.0.0.1:%d" }, { addr = "127.0.0.1:%d" }]\n'
            % (dead, echo.port)) + server(bind_addr="127.0.0.1:%d" % port, up_name="up")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    wait_log_count(p, "health: stream:up|127.0.0.1:%d is down" % dead, 1)
    before = p.log().count("connection refused")
    for _ in range(6):
        assert exchange(port, b"x") == echo_reply(b"x")
    assert p.log().count("connection refused") == before  # never tried again


def test_tcp_ipv6_and_splice_large(wmproxy, tmp_path, echo):
    port = free_port()
    body = server(bind_addr="[::1]:%d 127.0.0.1:%d" % (port, port),
                  proxy_url="tcp://127.0.0.1:%d" % echo.port)
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    data = os.urandom(64 << 20)
    assert exchange(port, data, host="::1") == echo_reply(data)


class _Pusher(ThreadedServer):
    """Sends `size` bytes on each connection, then closes; reads nothing."""

    def __init__(self, size):
        self.data = os.urandom(size)
        super().__init__()

    def one(self, c):
        try:
            c.sendall(self.data)
        except OSError:
            pass
        c.close()


class _Counter(ThreadedServer):
    """Reads to EOF, answers with the byte count, closes."""

    def one(self, c):
        c.settimeout(30)
        n = 0
        try:
            while True:
                b = c.recv(65536)
                if not b:
                    break
                n += len(b)
            c.sendall(b"%d" % n)
        except OSError:
            pass
        c.close()


def test_tcp_rate_limit_each_direction(wmproxy, tmp_path):
    """rate_limit on a tcp server meters each direction of a connection (a
    tenth of a second's burst, as for file answers): 600 KiB at 200 KiB/s
    cannot take less than ~2.9 s either way, arrives whole, and the EOF
    behind held bytes waits for them. Another server without the key on the
    same instance is not slowed."""
    size, rate = 600 << 10, 200 << 10
    least = (size - rate // 10) / rate  # the burst goes at once
    pusher, counter = _Pusher(size), _Counter()
    pd, pu, pfree = free_ports(3)
    body = (server(bind_addr="127.0.0.1:%d" % pd, proxy_url="tcp://127.0.0.1:%d" % pusher.port,
                   rate_limit="200k/s")
            + server(bind_addr="127.0.0.1:%d" % pu, proxy_url="tcp://127.0.0.1:%d" % counter.port,
                     rate_limit="200k/s")
            + server(bind_addr="127.0.0.1:%d" % pfree,
                     proxy_url="tcp://127.0.0.1:%d" % pusher.port))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=pd)
    t = time.monotonic()
    assert exchange(pd, b"", timeout=30) == pusher.data  # download
    took = time.monotonic() - t
    assert took >= least * 0.95, took
    t = time.monotonic()
    assert exchange(pu, os.urandom(size), timeout=30) == b"%d" % size  # upload
    took = time.monotonic() - t
    assert took >= least * 0.95, took
    assert exchange(pfree, b"", timeout=30) == pusher.data
    wait_until(lambda: p.log().count("end=closed") >= 3, what="three access lines")
    pusher.close()
    counter.close()


def test_tcp_rate_limit_slow_is_not_idle(wmproxy, tmp_path):
    """Bytes the rate limit holds are on their way: the idle `timeout`,
    shorter than the wait for them, does not cut the connection (it cut
    it with the bytes still held)."""
    size = (16 << 10) + 3600  # the burst, then ~3.5 s at 1 KiB/s
    pusher = _Pusher(size)
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % pusher.port,
                  rate_limit="1k/s", timeout="2s")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    assert exchange(port, b"", timeout=30) == pusher.data
    wait_until(lambda: "end=closed" in p.log(), what="the access line")
    assert "end=idle-timeout" not in p.log()
    pusher.close()


def test_tcp_rate_limit_below_burst_floor_flows(wmproxy, tmp_path):
    """A rate below the 16 KiB burst floor ("1k/s"): the burst goes at
    once, then bytes keep coming at about the rate, not a burst's worth
    after a silence of 8 s (it waited for the whole bucket to refill)."""
    burst = 16 << 10
    pusher = _Pusher(burst + (8 << 10))
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % pusher.port,
                  rate_limit="1k/s")
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(20)
    got = 0
    while got < burst:
        b = s.recv(65536)
        assert b, got
        got += len(b)
    t = time.monotonic()
    if got == burst:  # the bucket's worth: the next bytes are not far behind
        assert s.recv(65536)
    assert time.monotonic() - t < 2.0, time.monotonic() - t
    s.close()
    pusher.close()


def test_tcp_rate_limit_huge_does_not_wrap(wmproxy, tmp_path):
    """A huge rate ("4294967296g/s", 2^62 bytes a second) limits nothing:
    a tenth of a second's worth wrapped around 64 bits to 0 and metered
    the connection to a few MB a second."""
    counter = _Counter()
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % counter.port,
                  rate_limit="4294967296g/s")
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    size = 32 << 20
    t = time.monotonic()
    assert exchange(port, os.urandom(size), timeout=30) == b"%d" % size
    assert time.monotonic() - t < 4.0, time.monotonic() - t
    counter.close()


def test_tcp_rate_limit_config(tmp_path):
    """rate_limit is bytes per time (requests are refused at file:line);
    on a mode it does not meter (udp, WebSocket bridges) it is accepted
    with a warning that says so."""
    from conftest import BIN
    path = tmp_path / "rl.toml"
    path.write_text('[stream]\n[[stream.server]]\nbind_addr = "127.0.0.1:1"\n'
                    'proxy_url = "tcp://127.0.0.1:2"\nrate_limit = "10r/s"\n')
    r = subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode != 0
    assert (":5:14: stream.server[0].rate_limit: expected bytes per time" in r.stderr), r.stderr
    path.write_text('[stream]\n[[stream.server]]\nbind_addr = "127.0.0.1:1"\nbind_mode = "udp"\n'
                    'proxy_url = "udp://127.0.0.1:2"\nrate_limit = "1m/s"\n'
                    '[[stream.server]]\nbind_addr = "127.0.0.1:3"\n'
                    'proxy_url = "tcp://127.0.0.1:2"\nrate_limit = "1m/s"\n')
    r = subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert ":6:14: stream.server[0].rate_limit: accepted, not active with bind_mode udp" \
        in r.stderr, r.stderr
    assert "stream.server[1].rate_limit" not in r.stderr, r.stderr


def test_tcp_all_down_and_connect_timeout(wmproxy, tmp_path):
    port, port2 = free_ports(2)
    hang, fillers = full_listener()  # its SYNs are dropped: connects hang
    body = (server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % dead_port())
            + server(bind_addr="127.0.0.1:%d" % port2,
                     proxy_url="tcp://127.0.0.1:%d" % hang.getsockname()[1],
                     connect_timeout="1s"))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    assert exchange(port, b"x") == b""
    t = time.monotonic()
    assert exchange(port2, b"x", timeout=15) == b""
    assert 0.8 < time.monotonic() - t < 8, p.log()
    log = p.log()
    assert "end=upstream-unreachable" in log
    assert re.search(r"target=127\.0\.0\.1:%d: connect timeout" % hang.getsockname()[1], log), log
    hang.close()
    for f in fillers:
        f.close()


def _accept_request_then_answer(hang, timeout):
    """On the once-full listener: skip the fillers' leftover connections,
    read ours to its EOF ("no EOF: ..." when none came in time), answer
    "answer" and close. Returns what it read."""
    hang.settimeout(20)
    got = b""
    while not got:
        a, _ = hang.accept()  # a filler's leftover first, then ours
        a.settimeout(timeout)
        buf = b""
        while True:
            try:
                x = a.recv(4096)
            except OSError:
                buf = b"no EOF: " + buf if buf else buf
                break
            if not x:
                break
            buf += x
        if buf:
            got = buf
            a.sendall(b"answer")
        a.close()
    return got


def test_tcp_early_data_and_eof_wait_for_a_slow_dial(wmproxy, tmp_path):
    """A plain TCP client is not read while we dial (its bytes wait in its
    socket for the splice): a request and its FIN sent before the upstream
    accepts still arrive, in order, once the connect completes."""
    port = free_port()
    hang, fillers = full_listener()  # our SYN is dropped until the queue frees
    body = server(bind_addr="127.0.0.1:%d" % port,
                  proxy_url="tcp://127.0.0.1:%d" % hang.getsockname()[1], connect_timeout="20s")
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    c = socket.create_connection(("127.0.0.1", port), timeout=20)
    c.sendall(b"early request")
    c.shutdown(socket.SHUT_WR)
    for f in fillers:  # free the accept queue: the kernel retries our SYN
        f.close()
    assert _accept_request_then_answer(hang, 20) == b"early request"
    assert c.recv(100) == b"answer"
    assert c.recv(100) == b""
    c.close()
    hang.close()


def test_tcp_client_leaving_during_a_dial_is_released_by_connect_timeout(wmproxy, tmp_path):
    """A client that leaves while its upstream connect hangs is released at
    the latest when connect_timeout ends the dial (HAProxy's default too:
    no abortonclose): the connection does not outlive that bound."""
    port, cport = free_ports(2)
    hang, fillers = full_listener()
    body = server(bind_addr="127.0.0.1:%d" % port,
                  proxy_url="tcp://127.0.0.1:%d" % hang.getsockname()[1], connect_timeout="1s")
    p = wmproxy(["run", "-c", config(tmp_path, body, control=cport)], port=port)
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"x")
    t = time.monotonic()
    c.close()
    wait_until(lambda: (lambda l: l if l and l["open"] == 0 and l["accepted"] >= 1 else None)(
        status_listener(cport, "127.0.0.1:%d" % port)), 8, what="the connection released")
    assert time.monotonic() - t < 6
    assert wait_log(p, "access proto=tcp client=127.0.0.1:"), p.log()
    hang.close()
    for f in fillers:
        f.close()


def test_tcp_idle_timeout(wmproxy, tmp_path, echo):
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % echo.port,
                  timeout="1s")
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"ping")
    assert s.recv(4) == b"ping"
    t = time.monotonic()
    assert s.recv(10) == b""  # closed by us after 1 s of silence
    assert time.monotonic() - t < 6
    wait_log_count(p, "end=idle", 1)


@pytest.mark.parametrize("way", ["splice", "relay"])
def test_tcp_idle_timeout_spares_a_slow_reader(wmproxy, tmp_path, way):
    """timeout is idle: no byte either way. A client that reads a download
    slowly (the kernel's buffers hold megabytes for it, so we neither read nor
    write for seconds while it drains them) is not cut as idle, whether the
    bytes go by splice or by the relay (here forced by rate_limit; bind_ssl
    and proxy_ssl take it too), which counted only its own reads."""
    size = 24 << 20
    pusher = _Pusher(size)
    port = free_port()
    extra = {"rate_limit": "100m/s"} if way == "relay" else {}
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % pusher.port,
                  timeout="1s", **extra)
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
    c.settimeout(10)
    c.connect(("127.0.0.1", port))
    got, _ = read_slowly(c, 3.5, 4096, 0.02)  # ~200 KB/s for 3.5 idle timeouts
    while got < size + 1:  # the rest at full speed, to the EOF
        b = c.recv(1 << 20)
        if not b:
            break
        got += len(b)
    c.close()
    assert got == size
    wait_log_count(p, "out=%d" % size, 1)
    assert "end=idle" not in p.log()
    pusher.close()


def test_tcp_backpressure_upstream_never_reads(wmproxy, tmp_path):
    """An upstream that accepts and never reads: we stop reading the client
    (bounded memory), the client's sends block."""
    sink = socket.socket()
    sink.bind(("127.0.0.1", 0))
    sink.listen(4)
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port,
                  proxy_url="tcp://127.0.0.1:%d" % sink.getsockname()[1])
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    held, _ = sink.accept()
    c.setblocking(False)
    rss0 = rss_kb(p.p.pid)
    sent = 0
    chunk = b"z" * 65536
    stalled = False
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sent < (512 << 20):
        try:
            sent += c.send(chunk)
        except BlockingIOError:
            # the relay stopped reading: writable again within 1.5 s or done
            if not select.select([], [c], [], 1.5)[1]:
                stalled = True
                break
    assert stalled, "sends never blocked"
    assert sent < (64 << 20), sent  # socket buffers plus a bounded relay buffer
    assert rss_kb(p.p.pid) - rss0 < 32 * 1024
    c.close()
    held.close()
    sink.close()


def _tls_server(wmproxy, tmp_path, back_port, certs=None, workers=2, **kw):
    """A bind_ssl stream server in front of back_port: (process, port,
    client TLS context trusting its certificate)."""
    certs = certs or make_certs(str(tmp_path / "certs"))
    port = free_port()
    body = server(bind_ssl="127.0.0.1:%d" % port, cert=certs["srv.pem"], key=certs["srv.key"],
                  proxy_url="tcp://127.0.0.1:%d" % back_port, **kw)
    p = wmproxy(["run", "-c", config(tmp_path, body, workers=workers)], port=port)
    return p, port, ssl.create_default_context(cafile=certs["ca.pem"])


def test_tcp_tls_both_sides(wmproxy, tmp_path):
    certs = make_certs(str(tmp_path / "certs"))
    back = TLSEcho(certs["srv.pem"], certs["srv.key"])
    p, port, ctx = _tls_server(wmproxy, tmp_path, back.port, certs, proxy_ssl=True,
                               domain="a.test")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            data = os.urandom(1 << 20)
            s.sendall(data)
            got = bytearray()
            while len(got) < len(data):
                b = s.recv(65536)
                assert b
                got += b
            assert bytes(got) == data
    assert set(back.sni) == {"a.test"}  # (the start-up probe connects too)
    wait_log_count(p, "access proto=tcp", 1)
    back.close()


class _CountingEcho(ThreadedServer):
    """Echoes; counts the connections it accepted."""

    def __init__(self):
        self.accepted = 0
        super().__init__()

    def one(self, c):
        self.accepted += 1
        with c:
            while True:
                b = c.recv(65536)
                if not b:
                    return
                c.sendall(b)


def test_bind_ssl_dials_only_after_the_client_handshake(wmproxy, tmp_path):
    """A bind_ssl listener dials its upstream once the client's TLS handshake
    is over: clients that connect and never finish it (or never start it)
    cost no upstream connection, as in nginx's stream ssl."""
    back = _CountingEcho()
    _, port, ctx = _tls_server(wmproxy, tmp_path, back.port, workers=1)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    # a client accepted after the idle ones (one worker: in order) goes through
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(b"ping")
            assert s.recv(100) == b"ping"
    assert back.accepted == 1, back.accepted  # before: one per idle client too
    with ctx.wrap_socket(idle[0], server_hostname="localhost") as s:
        s.sendall(b"late")
        assert s.recv(100) == b"late"
    assert back.accepted == 2, back.accepted
    for c in idle[1:]:
        c.close()
    back.close()


def test_bind_ssl_half_close_during_a_slow_dial_reaches_the_upstream(wmproxy, tmp_path):
    """A bind_ssl client that sends its request and its FIN while the
    upstream connect hangs: once the connect completes the upstream gets the
    request and then the EOF (it was held until the idle timeout: the TLS
    side reports its EOF once, while we were dialing), and the answer comes
    back."""
    hang, fillers = full_listener()  # our SYN is dropped until the queue frees
    certs = make_certs(str(tmp_path / "certs"))
    port = free_port()
    body = server(bind_ssl="127.0.0.1:%d" % port, cert=certs["srv.pem"], key=certs["srv.key"],
                  proxy_url="tcp://127.0.0.1:%d" % hang.getsockname()[1],
                  connect_timeout="20s", timeout="60s")
    p = wmproxy(["run", "-c", config(tmp_path, body, workers=1,
                                     top='default_level = "debug"\n')], port=port)
    ctx = ssl.create_default_context(cafile=certs["ca.pem"])
    raw = socket.create_connection(("127.0.0.1", port), timeout=20)
    c = ctx.wrap_socket(raw, server_hostname="localhost")
    c.sendall(b"early request")
    wait_until(lambda: "stream state tls-handshake -> dial" in p.log(), what="the dial")
    socket.socket(fileno=os.dup(c.fileno())).shutdown(socket.SHUT_WR)  # FIN, TLS stays
    # the FIN reached the proxy's socket (CLOSE_WAIT, state 08 in /proc/net/tcp)
    me = "%04X" % c.getsockname()[1]
    wait_until(lambda: any(l.split()[2].endswith(":" + me) and l.split()[3] == "08"
                           for l in open("/proc/net/tcp").read().splitlines()[1:]),
               what="the client's FIN at the proxy")
    for f in fillers:  # free the accept queue: the kernel retries our SYN
        f.close()
    assert _accept_request_then_answer(hang, 10) == b"early request"
    assert c.recv(100) == b"answer"
    c.close()
    hang.close()


def test_bind_ssl_connections_closed_without_close_notify_free_their_socket(wmproxy, tmp_path):
    """bind_ssl clients that close with a plain FIN (no close_notify, as many
    do) after their exchange: each connection's socket and TLS state are
    freed (they were held until the process stopped: one descriptor per
    connection, ending in descriptor exhaustion)."""
    back = _CountingEcho()
    p, port, ctx = _tls_server(wmproxy, tmp_path, back.port, workers=1)

    def fds():
        return len(os.listdir("/proc/%d/fd" % p.p.pid))

    base = fds()
    for _ in range(40):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"ping")
        assert s.recv(100) == b"ping"
        s.close()  # FIN without close_notify
    wait_log_count(p, "end=closed", 40)
    wait_until(lambda: fds() <= base + 2, 10, what="the descriptors back (%d, was %d)"
               % (fds(), base))
    back.close()


def test_tls_handshake_failure_is_an_error_under_the_connection_id(wmproxy, tmp_path):
    """A client that fails the TLS handshake ends with end=tls-handshake-failed
    at once (it said client-closed, then error-client, as a reset would),
    and the TLS line carries the connection's id (c=), as its access line
    does."""
    back = _CountingEcho()
    p, port, _ = _tls_server(wmproxy, tmp_path, back.port)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        me = raw.getsockname()[1]
        raw.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not TLS
        assert raw.recv(100) == b""
    line = wait_until(lambda: re.search(r" c=(\d+) access proto=tcp client=127\.0\.0\.1:%d .* "
                                        r"end=(\S+)" % me, p.log()), what="the access line")
    assert line.group(2) == "tls-handshake-failed", line.group(0)
    tls = re.search(r" c=(\d+) tls 127\.0\.0\.1:%d: handshake failed" % me, p.log())
    assert tls and tls.group(1) == line.group(1), p.log()
    assert back.accepted == 0  # nothing dialed for it
    back.close()


def test_proxy_protocol_out_v1_and_in_v1_to_out_v2(wmproxy, tmp_path):
    back = PPBackend()
    p1, p2 = free_ports(2)
    body = (server(bind_addr="127.0.0.1:%d" % p1, proxy_url="tcp://127.0.0.1:%d" % back.port,
                   proxy_protocol=True)
            + server(bind_addr="127.0.0.1:%d" % p2, proxy_url="tcp://127.0.0.1:%d" % back.port,
                     accept_proxy_protocol=True, proxy_protocol="v2"))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=p1)
    s = socket.create_connection(("127.0.0.1", p1), timeout=10)
    me = s.getsockname()
    s.sendall(b"hello")
    assert s.recv(5) == b"hello"
    s.close()
    assert ("v1", "PROXY TCP4 127.0.0.1 127.0.0.1 %d %d\r\n" % (me[1], p1)) in back.headers
    # a v1 header in front of the client's bytes: the backend sees that address, in v2
    s = socket.create_connection(("127.0.0.1", p2), timeout=10)
    s.sendall(b"PROXY TCP4 203.0.113.7 127.0.0.1 4444 %d\r\nhi" % p2)
    assert s.recv(2) == b"hi"
    s.close()
    v2 = [h for k, h in back.headers if k == "v2"]
    assert len(v2) == 1 and v2_addrs(v2[0]) == ("203.0.113.7", 4444)
    wait_log_count(p, "client=203.0.113.7:4444", 1)
    # garbage instead of a header: refused, logged
    s = socket.create_connection(("127.0.0.1", p2), timeout=10)
    s.sendall(b"GET / HTTP/1.1\r\n\r\n")
    assert s.recv(10) == b""
    wait_log_count(p, "end=bad-proxy-header", 1)
    back.close()


def test_proxy_protocol_in_without_addresses_still_sends_one(wmproxy, tmp_path):
    """A received header without addresses (v1 UNKNOWN, v2 LOCAL) means the
    connection's own ends (spec 2.1, 2.2): the upstream still gets its
    header from them. It got none, so the client's next bytes were taken
    for the header: a client could name any address to the backend."""
    back = PPBackend()
    port = free_port()
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % back.port,
                  accept_proxy_protocol=True, proxy_protocol="v2")
    wmproxy(["run", "-c", config(tmp_path, body)], port=port)
    forged = b"PROXY TCP4 6.6.6.6 127.0.0.1 666 %d\r\n" % port
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"  # v2 LOCAL, no addresses
    mine = []
    for head in (b"PROXY UNKNOWN\r\n", local):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            mine.append(s.getsockname()[1])
            s.sendall(head + forged)
            got = b""
            while len(got) < len(forged):
                b = s.recv(len(forged) - len(got))
                assert b
                got += b
            assert got == forged  # data for the backend, echoed
    v2 = [h for k, h in back.headers if k == "v2"]
    assert [v2_addrs(h) for h in v2] == [("127.0.0.1", mine[0]), ("127.0.0.1", mine[1])]
    back.close()


def test_proxy_protocol_before_tls_on_bind_ssl(wmproxy, tmp_path):
    """On a bind_ssl listener the PROXY header comes before the ClientHello,
    as HAProxy's send-proxy and nginx's proxy_protocol send it: in one
    segment with the ClientHello, or a byte at a time (it was expected
    inside TLS, so the handshake failed)."""
    back = PPBackend()
    p, port, ctx = _tls_server(wmproxy, tmp_path, back.port, accept_proxy_protocol=True,
                               proxy_protocol="v2")
    sig = b"\r\n\r\n\x00\r\nQUIT\n"
    v2 = (sig + bytes([0x21, 0x11, 0, 19]) + socket.inet_aton("198.51.100.9")
          + socket.inet_aton("127.0.0.1") + (5555).to_bytes(2, "big") + port.to_bytes(2, "big")
          + b"\x04\x00\x04abcd")  # a TLV (NOOP)
    v1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 4444 %d\r\n" % port
    for head, split in ((v2, False), (v1, True)):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            if split:
                for i in range(len(head)):
                    raw.send(head[i:i + 1])
            else:
                raw.send(head, socket.MSG_MORE)  # goes with the ClientHello
            with ctx.wrap_socket(raw, server_hostname="localhost") as s:
                s.sendall(b"hello")
                assert s.recv(5) == b"hello"
    v2s = [h for k, h in back.headers if k == "v2"]
    assert [v2_addrs(h) for h in v2s] == [("198.51.100.9", 5555), ("203.0.113.7", 4444)]
    wait_log_count(p, "client=203.0.113.7:4444", 1)
    # no header: refused before any TLS
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with pytest.raises((ssl.SSLError, OSError)):
            ctx.wrap_socket(raw, server_hostname="localhost")
    wait_log_count(p, "end=bad-proxy-header", 1)
    back.close()


# ---- 2. UDP ----

def udp_roundtrip(sock, addr, payload, timeout=5):
    sock.settimeout(timeout)
    sock.sendto(payload, addr)
    data, _ = sock.recvfrom(70000)
    return data


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_udp_sessions_sizes_and_idle(wmproxy, tmp_path, host):
    up, stop, seen = udp_echo(host)
    port = free_udp_port()
    tport = free_port()
    lh = "[%s]" % host if ":" in host else host
    body = (server(bind_addr="%s:%d" % (lh, port), bind_mode="udp",
                   proxy_url="udp://%s:%d" % (lh, up), client_timeout="1s")
            + server(bind_addr="127.0.0.1:%d" % tport, proxy_url="tcp://127.0.0.1:9"))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=tport)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    clients = [socket.socket(fam, socket.SOCK_DGRAM) for _ in range(4)]
    biggest = 65507 if fam == socket.AF_INET else 65527
    for i, c in enumerate(clients):
        for size in (1, 1400, 9000, biggest):
            payload = bytes([i]) * size
            assert udp_roundtrip(c, (host, port), payload) == payload
    # one session (one upstream source port) per client address
    assert len(seen) == 4
    # idle: each session ends (and is logged) after client_timeout
    wait_log_count(p, "access proto=udp", 4, timeout=15)
    assert wait_log(p, "end=idle"), p.log()[-3000:]
    for c in clients:
        c.close()
    stop.set()


def test_udp_too_large_for_the_upstream_family_is_logged(wmproxy, tmp_path):
    """An IPv6 client may send 65,527 bytes; an IPv4 upstream takes 65,507 at
    most. Such a datagram was dropped without a word; now it is logged (once
    per second at most) and the session goes on."""
    up, stop, _ = udp_echo("127.0.0.1")
    port = free_udp_port()
    tport = free_port()
    body = (server(bind_addr="[::1]:%d" % port, bind_mode="udp",
                   proxy_url="udp://127.0.0.1:%d" % up)
            + server(bind_addr="127.0.0.1:%d" % tport, proxy_url="tcp://127.0.0.1:9"))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=tport)
    c = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    c.settimeout(5)
    assert udp_roundtrip(c, ("::1", port), b"small") == b"small"
    c.sendto(b"x" * 65520, ("::1", port))
    assert wait_log(p, "too large for the target's address family"), p.log()[-3000:]
    assert udp_roundtrip(c, ("::1", port), b"after") == b"after"
    assert p.log().count("too large for the target") == 1, p.log()[-3000:]
    c.close()
    stop.set()


def test_udp_table_bound_flood(wmproxy, tmp_path):
    up, stop, seen = udp_echo("127.0.0.1")
    port = free_udp_port()
    tport, cport = free_ports(2)
    body = (server(bind_addr="127.0.0.1:%d" % port, bind_mode="udp",
                   proxy_url="udp://127.0.0.1:%d" % up, max_sessions=8)
            + server(bind_addr="127.0.0.1:%d" % tport, proxy_url="tcp://127.0.0.1:9"))
    p = wmproxy(["run", "-c", config(tmp_path, body, control=cport)], port=tport)
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(200)]
    t0 = time.monotonic()
    for s in socks:  # 200 client addresses, each served in turn
        assert udp_roundtrip(s, ("127.0.0.1", port), b"x" * 100) == b"x" * 100
    wait_log_count(p, "session table full", 1)
    # ~180 evictions, logged once per second per worker at most (not per datagram)
    assert p.log().count("session table full") <= 2 * (time.monotonic() - t0 + 2)
    # never more than max_sessions per worker (2 workers)
    st = status_listener(cport, "udp:127.0.0.1:%d" % port)
    assert st is not None and st["open"] <= 16, st
    assert st["accepted"] >= 200
    for s in socks:
        s.close()
    stop.set()


def test_udp_no_upstream_flood_logs_once_per_second(wmproxy, tmp_path):
    """Datagrams no upstream server can take (the only one is down by its
    health check) are dropped with one line per second per worker, not one
    per datagram, and evict no session: one that started while the server
    was up goes on (a flood wrote a WARN line per datagram and evicted it)."""
    for _ in range(20):  # a UDP port whose TCP twin is free too
        up, stop, _ = udp_echo("127.0.0.1")
        health = socket.socket()  # the TCP connect that the health check makes
        try:
            health.bind(("127.0.0.1", up))
            break
        except OSError:
            health.close()
            stop.set()
    health.listen(64)
    port = free_udp_port()
    tport = free_port()
    body = ('[[stream.upstream]]\nname = "dns"\n'
            'health_check = { interval = "200ms", timeout = "100ms" }\n'
            'server = [{ addr = "127.0.0.1:%d" }]\n' % up
            + server(bind_addr="127.0.0.1:%d" % port, bind_mode="udp", up_name="dns",
                     max_sessions=1)
            + server(bind_addr="127.0.0.1:%d" % tport, proxy_url="tcp://127.0.0.1:9"))
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=tport)
    live = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp_roundtrip(live, ("127.0.0.1", port), b"before") == b"before"
    health.close()
    wait_log_count(p, "health: stream:dns|", 1)
    t0 = time.monotonic()
    dropped = re.compile(r"is usable: datagram of client=127\.0\.0\.1:\d+ dropped \((\d+) dropped")

    def flood():
        for _ in range(50):  # from as many source ports
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.sendto(b"x", ("127.0.0.1", port))
        return max([int(n) for n in dropped.findall(p.log())] + [0]) >= 100
    wait_until(flood, timeout=30, what="100 dropped datagrams counted by a worker")
    assert p.log().count("no upstream server of stream:dns is usable") <= 2 * (
        time.monotonic() - t0 + 2)
    assert "end=evicted" not in p.log()
    assert udp_roundtrip(live, ("127.0.0.1", port), b"after") == b"after"
    live.close()
    stop.set()


def _udp_pair(port, tport, up1, up2):
    """A udp server on port over upstream "pair" (up1, up2: each out for 60 s
    after one failure), and a tcp server on tport to wait on."""
    srv = '{ addr = "127.0.0.1:%d", fall_times = 1, fail_timeout = "60s" }'
    return ('[[stream.upstream]]\nname = "pair"\nserver = [%s, %s]\n' % (srv % up1, srv % up2)
            + server(bind_addr="127.0.0.1:%d" % port, bind_mode="udp", up_name="pair")
            + server(bind_addr="127.0.0.1:%d" % tport, proxy_url="tcp://127.0.0.1:9"))


def test_udp_out_of_descriptors_does_not_fail_the_servers(wmproxy, tmp_path):
    """A session whose socket() fails (the process is out of descriptors)
    drops its datagram with a line saying so, and counts against no
    upstream server: once descriptors are free again, the next client is
    served at once (both servers used to be marked failed, and every
    datagram was dropped until fail_timeout passed)."""
    (up1, stop1, _), (up2, stop2, _) = udp_echo("127.0.0.1"), udp_echo("127.0.0.1")
    port = free_udp_port()
    tport = free_port()
    body = _udp_pair(port, tport, up1, up2)
    p = wmproxy(["run", "-c", config(tmp_path, body)], port=tport)

    def starved():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.sendto(b"x", ("127.0.0.1", port))
        return " dropped (" in p.log()
    with no_free_fds(p.p.pid):
        wait_until(starved, timeout=20, what="a dropped datagram")
    wait_until(lambda: "udp: no socket for a session of stream:pair (Too many open files)"
               in p.log(), what="the out-of-descriptors line")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        assert udp_roundtrip(c, ("127.0.0.1", port), b"again") == b"again"
    assert "no upstream server of stream:pair is usable" not in p.log()
    stop1.set()
    stop2.set()


def test_udp_unreachable_server_fails_over(wmproxy, tmp_path):
    """A server where nothing listens answers with ICMP port unreachable:
    that is a failure of the server (as a refused TCP connect), logged once
    per second per worker at most, and the session on it ends, so a client
    that keeps sending is served by the other server (its session used to
    stay on the dead one for good: every datagram lost, nothing logged)."""
    up, stop, _ = udp_echo("127.0.0.1")
    dead = free_udp_port()
    port = free_udp_port()
    tport = free_port()
    body = _udp_pair(port, tport, dead, up)
    p = wmproxy(["run", "-c", config(tmp_path, body, workers=1)], port=tport)
    clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(4)]
    for c in clients:  # round robin: some of them start on the dead server
        c.settimeout(0.2)

    def all_served():
        ok = True
        for c in clients:
            c.sendto(b"ping", ("127.0.0.1", port))
            try:
                ok = c.recvfrom(70000)[0] == b"ping" and ok
            except socket.timeout:
                ok = False
        return ok
    wait_until(all_served, timeout=15, what="every client served by the live server")
    assert "end=upstream-unreachable" in p.log(), p.log()[-3000:]
    assert p.log().count("Connection refused") <= 3, p.log()[-3000:]
    for c in clients:
        c.close()
    stop.set()


# ---- 5. reload: the servers that stay keep their connections ----

def test_reload_keeps_surviving_connections(wmproxy, tmp_path, echo):
    a, b, c, cport = free_ports(4)
    up, stop, _ = udp_echo("127.0.0.1")
    u = free_udp_port()
    keep = (server(bind_addr="127.0.0.1:%d" % a, proxy_url="tcp://127.0.0.1:%d" % echo.port)
            + server(bind_addr="127.0.0.1:%d" % u, bind_mode="udp",
                     proxy_url="udp://127.0.0.1:%d" % up))
    path = config(tmp_path, keep + server(bind_addr="127.0.0.1:%d" % b,
                                          proxy_url="tcp://127.0.0.1:%d" % echo.port),
                  control=cport)
    p = wmproxy(["run", "-c", path], port=a)
    live = socket.create_connection(("127.0.0.1", a), timeout=10)
    live.sendall(b"one")
    assert live.recv(3) == b"one"
    us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp_roundtrip(us, ("127.0.0.1", u), b"before") == b"before"
    config(tmp_path, keep + server(bind_addr="127.0.0.1:%d" % c,
                                   proxy_url="tcp://127.0.0.1:%d" % echo.port), control=cport)
    st, _, _ = api(cport, "POST", "/reload")
    assert st == 200
    wait_until(lambda: exchange(c, b"new") == echo_reply(b"new"), what="new server")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b), timeout=2)
    live.sendall(b"two")
    assert live.recv(3) == b"two"  # the connection of the kept server lives on
    assert udp_roundtrip(us, ("127.0.0.1", u), b"after") == b"after"
    live.close()
    us.close()
    stop.set()
    assert "access proto=udp" not in p.log()  # the UDP session was not cut by the reload


# ---- the reference config's [stream] ----

@need_ref
def test_reference_config_stream_served(wmproxy, tmp_path):
    """wmproxy's demo reverse.toml, its [stream] part with our ports: tcp
    (up_name), tcp2ws, udp and ws2tcp servers all serve."""
    with open(ref_file("reverse.toml")) as f:
        text = f.read()
    stream = text[text.index("[stream]"):]
    stream = stream[:stream.index("# [[http.server]]")] if "# [[http.server]]" in stream else stream
    echo_srv = origin_mod.start_echo("127.0.0.1")
    ws_up = origin_mod.start("127.0.0.1")  # its /ws echoes WebSocket frames
    udp_port, stop, _ = udp_echo("127.0.0.1")
    p83, p85, p86 = free_ports(3)
    p84 = free_udp_port()
    subst = {"0.0.0.0:83": "127.0.0.1:%d" % p83, "0.0.0.0:84": "127.0.0.1:%d" % p84,
             "0.0.0.0:85": "127.0.0.1:%d" % p85, "0.0.0.0:86": "127.0.0.1:%d" % p86,
             "127.0.0.1:8080": "127.0.0.1:%d" % echo_srv.port,
             "127.0.0.1:8081": "127.0.0.1:%d" % ws_up.port,
             "127.0.0.1:8089": "127.0.0.1:%d" % udp_port,
             "tcp://127.0.0.1:8082": "tcp://127.0.0.1:%d" % echo_srv.port}
    for k, v in subst.items():
        stream = stream.replace(k, v)
    stream = stream.replace('proxy_url = "ws://127.0.0.1:%d/"' % ws_up.port,
                            'proxy_url = "ws://127.0.0.1:%d/ws"' % ws_up.port)
    path = tmp_path / "ref.toml"
    path.write_text("disable_control = true\n" + stream)
    p = wmproxy(["run", "-c", str(path)], port=p83)
    assert exchange(p83, b"tcp") == echo_reply(b"tcp")
    us = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp_roundtrip(us, ("127.0.0.1", p84), b"udp") == b"udp"
    # tcp2ws: our bytes become frames to the origin's WebSocket echo and back
    s = socket.create_connection(("127.0.0.1", p85), timeout=10)
    s.sendall(b"through-ws")
    got = b""
    while len(got) < 10:
        got += s.recv(10)
    assert got == b"through-ws"
    s.close()
    # ws2tcp: a WebSocket client's binary message reaches the TCP echo
    w = ws_connect(p86)
    ws_send(w, 2, b"ws-in")
    assert ws_recv_data(w, 5) == b"ws-in"
    w.close()
    us.close()
    stop.set()
    echo_srv.stop()
    ws_up.stop()
    assert "error" not in p.log().lower().replace("end=ws-error", "")


# ---- iperf3 through the TCP and UDP forwards ----

def iperf3(*args, timeout=60):
    r = subprocess.run(["iperf3", "-J"] + list(args), capture_output=True, text=True,
                       timeout=timeout)
    return json.loads(r.stdout)


@pytest.mark.skipif(shutil.which("iperf3") is None, reason="iperf3 not installed")
def test_iperf3_tcp_and_udp(wmproxy, tmp_path):
    ip = free_port()
    srv = subprocess.Popen(["iperf3", "-s", "-B", "127.0.0.1", "-p", str(ip)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port = free_port()
        body = (server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % ip)
                + server(bind_addr="127.0.0.1:%d" % port, bind_mode="udp",
                         proxy_url="udp://127.0.0.1:%d" % ip))
        wmproxy(["run", "-c", config(tmp_path, body)], port=port)
        wait_until(lambda: exchange(port, b"") == b"" or True)
        r = wait_until(lambda: (lambda j: j if "end" in j and "sum_received" in j["end"] else None)(
            iperf3("-c", "127.0.0.1", "-p", str(port), "-t", "2")), timeout=60, what="iperf3 tcp")
        assert r["end"]["sum_received"]["bytes"] > 10 << 20
        r = iperf3("-c", "127.0.0.1", "-p", str(port), "-u", "-b", "20M", "-t", "2")
        s = r["end"]["sum"]
        assert s["bytes"] > 2 << 20 and s["lost_percent"] < 5, s
    finally:
        srv.terminate()
        srv.wait(10)


def test_yaml_config(wmproxy, tmp_path, echo):
    """[stream] keys read the same from YAML."""
    up, stop, _ = udp_echo("127.0.0.1")
    port = free_port()
    u = free_udp_port()
    path = tmp_path / "s.yaml"
    path.write_text("disable_control: true\nworkers: 2\nstream:\n"
                    "  upstream:\n    - name: e\n      server:\n"
                    "        - addr: 127.0.0.1:%d\n"
                    "  server:\n"
                    "    - bind_addr: 127.0.0.1:%d\n      up_name: e\n      timeout: 30s\n"
                    "    - bind_addr: 127.0.0.1:%d\n      bind_mode: udp\n"
                    "      proxy_url: udp://127.0.0.1:%d\n      max_sessions: 10\n"
                    % (echo.port, port, u, up))
    wmproxy(["run", "-c", str(path)], port=port)
    assert exchange(port, b"yaml") == echo_reply(b"yaml")
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    assert udp_roundtrip(s, ("127.0.0.1", u), b"yaml") == b"yaml"
    s.close()
    stop.set()


def test_config_errors(tmp_path):
    """Mistakes in [stream] are reported with file:line:col and key."""
    from conftest import BIN
    path = tmp_path / "bad.toml"
    path.write_text('[stream]\n[[stream.server]]\nbind_addr = "127.0.0.1:1"\n'
                    'bind_mode = "udp"\nproxy_protocol = true\nproxy_url = "udp://127.0.0.1:2"\n'
                    '[[stream.server]]\nbind_ssl = "127.0.0.1:3"\nproxy_url = "tcp://a:1"\n')
    r = subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True,
                       timeout=10)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "stream.server[0].proxy_protocol: the PROXY protocol is for TCP servers" in out, out
    assert "stream.server[1].bind_ssl: bind_ssl needs cert and key" in out, out


def test_check_compiles_a_stream_only_file(tmp_path):
    """`check` finds what only compiling [stream] finds (a key file that does
    not load, a udp upstream over 64 servers) also in a file without [http]
    (it said valid, and `run` refused it), with file:line."""
    from conftest import BIN
    bad = [('[stream]\n[[stream.server]]\nbind_ssl = "127.0.0.1:3"\ncert = "%s"\n'
            'key = "%s"\nproxy_url = "tcp://127.0.0.1:1"\n'
            % (tmp_path / "none.pem", tmp_path / "none.key"),
            ":2:1: stream.server[0]: bind_ssl: "),
           ('[stream]\n[[stream.upstream]]\nname = "u"\nserver = [%s]\n[[stream.server]]\n'
            'bind_addr = "127.0.0.1:3"\nbind_mode = "udp"\nup_name = "u"\n'
            % ", ".join('{ addr = "127.0.0.1:%d" }' % (2000 + i) for i in range(65)),
            ":5:1: stream.server[0]: a udp server's upstream has at most 64 servers (65)")]
    for i, (text, want) in enumerate(bad):
        path = tmp_path / ("bad%d.toml" % i)
        path.write_text(text)
        for cmd in ("check", "run"):
            r = subprocess.run([BIN, cmd, "-c", str(path)], capture_output=True, text=True,
                               timeout=10)
            assert r.returncode == 1, (cmd, r.stdout, r.stderr)
            assert str(path) + want in r.stderr, (cmd, r.stderr)


def test_bind_ssl_key_that_does_not_match_says_so(tmp_path):
    """A key that does not belong to the certificate (or a chain file that
    starts with the CA instead of the server's own certificate) is reported
    as such, with both files and the expected order, by [stream] as by
    [http]; [stream] gave OpenSSL's bare 'key values mismatch'."""
    from conftest import BIN
    d = str(tmp_path / "pki")
    r = subprocess.run([BIN, "gen-cert", "-d", d, "server", "a.test"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    wrong = tmp_path / "wrong-order.crt"
    wrong.write_text(open(d + "/ca.crt").read() + open(d + "/server.crt").read())
    for cert, key in ((str(wrong), d + "/server.key"), (d + "/server.crt", d + "/ca.key")):
        for body in ('[stream]\n[[stream.server]]\nbind_ssl = "127.0.0.1:3"\ncert = "%s"\n'
                     'key = "%s"\nproxy_url = "tcp://127.0.0.1:1"\n',
                     '[http]\n[[http.server]]\nbind_ssl = "127.0.0.1:3"\ncert = "%s"\n'
                     'key = "%s"\nstatic_response = "x"\n'):
            path = tmp_path / "bad.toml"
            path.write_text(body % (cert, key))
            r = subprocess.run([BIN, "check", "-c", str(path)], capture_output=True, text=True,
                               timeout=10)
            assert r.returncode == 1, r.stderr
            assert "does not match certificate" in r.stderr and key in r.stderr \
                and "own certificate first, then its chain" in r.stderr, r.stderr


class StalledFifoLog:
    """A [stream] server to the echo service whose access_log is a FIFO held
    open by a reader that never reads (a stalled shipper), the pipe at its
    smallest; serve() sends 120 exchanges (~100 bytes of log each: far more
    than the pipe takes). close() lets the writer's write fail (EPIPE)."""

    def __init__(self, wmproxy, tmp_path, echo):
        import fcntl
        self.port = free_port()
        fifo = str(tmp_path / "access.fifo")
        os.mkfifo(fifo)
        self.reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        fcntl.fcntl(self.reader, 1031, 4096)  # F_SETPIPE_SZ
        body = server(bind_addr="127.0.0.1:%d" % self.port,
                      proxy_url="tcp://127.0.0.1:%d" % echo.port, access_log=fifo)
        self.p = wmproxy(["run", "-c", config(tmp_path, body, workers=1)], port=self.port)

    def serve(self):
        for i in range(120):
            assert exchange(self.port, b"x%d" % i, timeout=5) == echo_reply(b"x%d" % i), i

    def close(self):
        os.close(self.reader)


def test_stop_with_access_log_on_stalled_fifo_ends(wmproxy, tmp_path, echo):
    """The log writer stuck on that FIFO must not hold the stop: the process
    ends after the queue's wait and says the lines still queued are lost."""
    f = StalledFifoLog(wmproxy, tmp_path, echo)
    try:
        f.serve()
        t0 = time.time()
        f.p.stop(timeout=30)
        assert time.time() - t0 < 20
        assert "took no byte for 5 s" in f.p.log()
    finally:
        f.close()


def test_access_log_on_stalled_fifo_does_not_block_the_worker(wmproxy, tmp_path, echo):
    """A stream access_log whose reader stops reading fills its pipe; the
    worker must go on serving (lines leave through the log queue and are
    dropped, counted, when it is full)."""
    f = StalledFifoLog(wmproxy, tmp_path, echo)
    try:
        t0 = time.time()
        f.serve()
        assert time.time() - t0 < 30
    finally:
        f.close()
    wait_until(lambda: "access proto=tcp" in f.p.log(), what="main log access lines")
