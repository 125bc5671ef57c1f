"""Tunnel: an orderly close delivers every byte (docs/tunnel.md "Close").

A server node's handler that writes its last bytes and closes at once (an
HTTP response with `Connection: close`, a SOCKS failure reply) used to have
its stream reset while those bytes still waited for window credit: the
visitor got a cut body or a bare close."""

import hashlib
import socket
import subprocess
import threading

import pytest

from helpers import socks
from helpers.net import connect, free_port, listen_local, recv_all, wait_port
from helpers.origin import pattern_sha256
from test_tunnel import Nodes, certs, tls_client, tls_server  # noqa: F401 (fixture)


@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


def fetch_close(entry, url):
    r = subprocess.run(["curl", "-sS", "--max-time", "30", "-H", "Connection: close",
                        "-x", "http://wm:s3cret@127.0.0.1:%d" % entry, url],
                       capture_output=True, timeout=40)
    return r.returncode, hashlib.sha256(r.stdout).hexdigest(), len(r.stdout), r.stderr


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_connection_close_bodies_arrive_whole(nodes, origin, certs, mode):  # noqa: F811
    srv = nodes.server(tls=tls_server(certs) if mode == "tls" else None)
    cli = nodes.client(srv.center, tls=tls_client(certs) if mode == "tls" else None,
                       srv_proc=srv)
    bad = []
    for size in (200000, 1000000):
        want = pattern_sha256(size, 7)
        for i in range(20):
            code, got, n, err = fetch_close(
                cli.entry, "http://127.0.0.1:%d/bytes/%d?seed=7" % (origin.port, size))
            if code != 0 or got != want:
                bad.append((size, i, code, n, err))
    assert not bad, (bad, cli.log()[-3000:])
    assert "end=reset" not in cli.log(), cli.log()[-3000:]


def one_mb_then_close(lsock, data, stop):
    """A private service that writes data at once and closes, reading nothing."""
    lsock.settimeout(0.2)
    while not stop.is_set():
        try:
            c, _ = lsock.accept()
        except socket.timeout:
            continue
        except OSError:
            return
        try:
            c.sendall(data)
        finally:
            c.close()


def test_tcp_mapping_service_writes_and_closes(nodes):
    data = bytes((i * 7 + (i >> 10)) & 0xff for i in range(1 << 20))
    want = hashlib.sha256(data).hexdigest()
    lsock = listen_local(16)
    stop = threading.Event()
    th = threading.Thread(target=one_mb_then_close, args=(lsock, data, stop), daemon=True)
    th.start()
    try:
        tp = free_port()
        srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
        nodes.client(srv.center, srv_proc=srv,
                     mappings=[{"name": "w", "mode": "tcp",
                                "local_addr": "127.0.0.1:%d" % lsock.getsockname()[1]}])
        assert wait_port("127.0.0.1", tp, 5)
        for i in range(20):
            s = connect(tp)
            got = recv_all(s)
            s.close()
            assert hashlib.sha256(got).hexdigest() == want, (i, len(got), srv.log()[-2000:])
    finally:
        stop.set()
        lsock.close()
        th.join(5)


def test_socks_failure_replies_cross_the_tunnel(nodes, origin):
    closed = free_port()
    srv = nodes.server(extra={"deny_targets": ["127.0.0.1:%d" % origin.port]})
    cli = nodes.client(srv.center, srv_proc=srv)
    for i in range(10):
        # a refused port: rep 5 (connection refused)
        s, rep, _ = socks.handshake(cli.entry, "127.0.0.1", closed, "wm", "s3cret")
        s.close()
        assert rep == 5, (i, rep, cli.log()[-2000:])
        # a target the server's rules deny: rep 2 (not allowed by ruleset)
        s, rep, _ = socks.handshake(cli.entry, "127.0.0.1", origin.port, "wm", "s3cret")
        s.close()
        assert rep == 2, (i, rep, cli.log()[-2000:])
    assert "end=reset" not in cli.log(), cli.log()[-3000:]


def test_chain_refusal_reaches_the_visitor(nodes, origin):
    """D -> C -> B, B's own parent down: B refuses C's stream, and C passes
    the refusal on instead of closing D's stream after accepting it, so D's
    entry answers its client (502, SOCKS reply 1), never a bare close."""
    from helpers.tunnel import wait_log
    from test_tunnel import CRED, curl

    b_center, c_center = free_port(), free_port()
    b = nodes.start({"server": "127.0.0.1:%d" % free_port(),  # nothing listens there
                     "center_addr": "127.0.0.1:%d" % b_center, **CRED},
                    wait_port_of="center_addr")
    c = nodes.start({"server": "127.0.0.1:%d" % b_center,
                     "center_addr": "127.0.0.1:%d" % c_center, **CRED},
                    wait_port_of="center_addr")
    assert wait_log(c, "tunnel: connected"), c.log() + b.log()
    d = nodes.client("127.0.0.1:%d" % c_center, srv_proc=c)
    url = "http://127.0.0.1:%d/bytes/10" % origin.port
    r = curl("-sS", "-o", "/dev/null", "-w", "%{http_code}",
             "-x", "http://wm:s3cret@127.0.0.1:%d" % d.entry, url)
    assert r.stdout == b"502", (r.stdout, r.stderr, d.log()[-2000:])
    s = connect(d.entry)
    s.sendall(b"\x05\x01\x00")
    assert s.recv(2) == b"\x05\x00"
    s.sendall(b"\x05\x01\x00" + socks.addr_bytes("127.0.0.1", origin.port))
    rep, _ = socks.read_reply(s)
    s.close()
    assert rep == 1
    assert "end=reset" not in d.log(), d.log()[-2000:]


@pytest.mark.parametrize("how", ["http", "connect"])
def test_aborted_downloads_through_the_entry_end_on_the_server(nodes, origin, how):
    """Visitors of a two-level proxy that drop a big download after its
    first bytes: the client node sends the stream's FIN and then its reset,
    which the server's HTTP proxy or CONNECT relay may see as one event (EOF
    and error together). That was taken for a half-close: the server went
    on sending into a stream that no longer existed, and held the
    connection and its upstream socket until the idle timeout (5 min)."""
    from helpers.control import api
    from helpers.net import wait_until

    cport = free_port()
    srv = nodes.server(top={"control": "127.0.0.1:%d" % cport})
    cli = nodes.client(srv.center, srv_proc=srv)
    auth = "Proxy-Authorization: Basic d206czNjcmV0\r\n"  # wm:s3cret
    get = "GET %s/bytes/5000000 HTTP/1.1\r\nHost: x\r\n%s\r\n"
    for _ in range(300):
        s = connect(cli.entry)
        if how == "connect":
            s.sendall(("CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n%s\r\n"
                       % (origin.port, auth)).encode())
            assert s.recv(1000).startswith(b"HTTP/1.1 200")
            s.sendall((get % ("", "")).encode())
        else:
            s.sendall((get % ("http://127.0.0.1:%d" % origin.port, auth)).encode())
        s.recv(1000)
        s.close()  # unread bytes: a reset for the client node

    def idle():
        return api(cport, "GET", "/status")[2]["connections"] == 0
    wait_until(idle, 15, 0.2, "every aborted download to end on the server")
