"""Security: the proxy never dials this process's own listeners (the control
API above all: `curl -x PROXY -X POST http://127.0.0.1:CONTROL/stop` used to
stop the instance), whatever the protocol or the spelling of the target."""

import re
import subprocess

import pytest

from helpers import control as ctl
from helpers.tunnel import wait_log
from helpers import http1
from helpers import socks
from helpers.net import connect, free_ports, wait_port


def conf(cport, port):
    return ('control = "127.0.0.1:%d"\n'
            'workers = 2\n'
            '[proxy]\n'
            'bind_addr = "127.0.0.1:%d"\n' % (cport, port))


@pytest.fixture
def instance(wmproxy, tmp_path):
    port, cport = free_ports(2)
    path = ctl.write(tmp_path / "wm.toml", conf(cport, port))
    p = wmproxy(["run", "-c", path], port=port)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    return p, port, cport


def still_serving(p, cport):
    assert p.alive(), p.log()
    assert ctl.status(cport)["listeners"], "the control API stopped answering"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "0.0.0.0", "127.0.0.1."])
def test_http_proxy_cannot_reach_control(instance, host):
    p, port, cport = instance
    if host == "127.0.0.1.":
        host = "[::ffff:127.0.0.1]"  # IPv4-mapped spelling of the same address
    s = connect(port)
    s.sendall(http1.request("POST", "http://%s:%d/stop" % (host, cport),
                            [("Host", "%s:%d" % (host, cport))]))
    r = http1.Reader(s).response()
    s.close()
    assert r.status == 403, (r.status, r.body)
    assert b"own listener" in r.body
    still_serving(p, cport)
    assert wait_log(p, "own listeners"), p.log()[-3000:]
    # the line names the connection and its client (it said c=- and no client)
    assert re.search(r"c=\d+ dial: refused client=127\.0\.0\.1:\d+ target=\S+:%d: one of "
                     r"this process's own listeners" % cport, p.log()), p.log()[-3000:]


def test_curl_stop_through_the_proxy_is_refused(instance):
    p, port, cport = instance
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-x", "http://127.0.0.1:%d" % port,
                        "-X", "POST", "http://127.0.0.1:%d/stop" % cport],
                       capture_output=True, timeout=20)
    assert b"403" in r.stdout, r.stdout
    still_serving(p, cport)


def test_connect_cannot_reach_control_or_the_proxy_itself(instance):
    p, port, cport = instance
    for target in (cport, port):
        s = connect(port)
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % target)
        r = http1.Reader(s).response(head_request=True)
        s.close()
        assert r.status == 403, (target, r.status)
    still_serving(p, cport)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_socks5_cannot_reach_control(instance, host):
    p, port, cport = instance
    s, rep, _ = socks.handshake(port, host, cport)
    s.close()
    # 2: connection not allowed by ruleset (RFC 1928 6); for ::1 nothing
    # listens there, which is refused (5) or denied, never a connection
    assert rep == 2 or (host == "::1" and rep == 5), rep
    still_serving(p, cport)


def _get_with_host(cport, path, host):
    s = connect(cport)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % (path, host))
              .encode())
    r = http1.Reader(s).response()
    s.close()
    return r


@pytest.mark.parametrize("path", ["/status", "/now"])
def test_control_refuses_rebound_host_names(instance, path):
    """DNS rebinding: a page whose name now points at 127.0.0.1 sends its
    own name as Host; without a token the control API only answers IP
    literals and localhost."""
    p, port, cport = instance
    assert _get_with_host(cport, path, "evil.example:%d" % cport).status == 403
    assert _get_with_host(cport, path, "evil.example").status == 403
    for ok in ("127.0.0.1:%d" % cport, "localhost:%d" % cport, "LOCALHOST", "[::1]:%d" % cport):
        assert _get_with_host(cport, path, ok).status == 200, ok
    assert wait_log(p, "DNS rebinding"), p.log()[-3000:]


def _basic(user, pw):
    import base64
    return "Basic " + base64.b64encode(("%s:%s" % (user, pw)).encode()).decode()


def _proxy_get(port, url, auth):
    s = connect(port, timeout=20)
    s.sendall(http1.request("GET", url, [("Proxy-Authorization", auth)] if auth else []))
    r = http1.Reader(s).response()
    s.close()
    return r


def test_repeated_wrong_passwords_are_slowed_then_refused(wmproxy, origin):
    """fail2ban built in: the first wrong guesses are answered at once, the
    next ones later and later, and after 10 within a minute the address is
    refused for a while, even with the right password."""
    import threading
    import time
    from conftest import proxy_args
    from helpers.net import free_port
    port = free_port()
    p = wmproxy(proxy_args(port, "--user", "alice", "--pass", "s3cret"), port=port)
    url = "http://127.0.0.1:%d/bytes/10" % origin.port
    assert _proxy_get(port, url, _basic("alice", "s3cret")).status == 200
    assert _proxy_get(port, url, None).status == 407  # no credentials: not a failure
    for _ in range(3):
        assert _proxy_get(port, url, _basic("alice", "guess")).status == 407
    t0 = time.monotonic()
    assert _proxy_get(port, url, _basic("alice", "guess")).status == 407
    assert time.monotonic() - t0 >= 0.45, "the 4th wrong guess was not slowed down"
    # six more at once (each waits its own delay): the 10th starts the hold
    codes = []
    ts = [threading.Thread(target=lambda: codes.append(
        _proxy_get(port, url, _basic("alice", "guess")).status)) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    assert codes == [407] * 6, codes
    r = _proxy_get(port, url, _basic("alice", "s3cret"))
    assert r.status == 429 and r.header("Retry-After") == "60", (r.status, r.body)
    s, rep, st = socks.handshake(port, "127.0.0.1", origin.port, "alice", "s3cret")
    s.close()
    assert rep is None and st == b"\x01\x01", st  # SOCKS5 auth refused while on hold
    assert wait_log(p, "refused for 60 s"), p.log()[-3000:]


def test_control_token_guessing_is_put_on_hold(wmproxy, tmp_path):
    port, cport = free_ports(2)
    path = ctl.write(tmp_path / "wm.toml", 'control_token = "t0k"\n' + conf(cport, port))
    p = wmproxy(["run", "-c", path], port=port)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    assert ctl.api(cport, "GET", "/status", "t0k")[0] == 200
    assert ctl.api(cport, "GET", "/status")[0] == 401  # no token: not counted
    for _ in range(10):
        assert ctl.api(cport, "GET", "/status", "guess")[0] == 401
    code, hdrs, _ = ctl.api(cport, "GET", "/status", "t0k")
    assert code == 429 and hdrs.get("retry-after") == "60", code
    assert wait_log(p, "refused for 60 s"), p.log()[-3000:]
