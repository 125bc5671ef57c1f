"""The control API of an instance started from a config file: /status,
/now, /reload, /stop, methods, bearer token, `wmproxy reload|stop`, and
`disable_control`."""

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading

import pytest

from conftest import BIN
from helpers import control as ctl
from helpers import traffic as tr
from helpers.net import free_ports, connect, free_port, wait_port, wait_until

USER = "alice"


def ports(n):
    return free_ports(n)


def conf(cport, port, password="s3cret", extra_top="", extra=""):
    return ('control = "127.0.0.1:%d"\n'
            'workers = 2\n'
            '%s'
            '[proxy]\n'
            'bind_addr = "127.0.0.1:%d"\n'
            'username = "%s"\n'
            'password = "%s"\n'
            '%s' % (cport, extra_top, port, USER, password, extra))


def start(wmproxy, tmp_path, text, port, name="wm.toml", args=()):
    path = ctl.write(tmp_path / name, text)
    p = wmproxy(["run", "-c", path] + list(args), port=port)
    ctl.wait_control(p, text, args)
    return path, p


def test_status_fields(wmproxy, origin, tmp_path):
    port, cport = ports(2)
    path, p = start(wmproxy, tmp_path, conf(cport, port), port)
    # The start-up probe (one connection, closed at once) has to be seen
    # through before the counters are compared. The listener's counters and
    # the workers' registries are read at different instants: a probe just
    # accepted shows as open before its worker registers it, so wait for
    # both to say it ended.
    st = ctl.wait_until(lambda: (lambda d: d if d["listeners"][0]["accepted"] >= 1 and
                                 d["listeners"][0]["open"] == 0 and
                                 d["connections"] == 0 else None)(ctl.status(cport)),
                        5, what="the probe connection to end")
    assert st["version"] and st["pid"] == p.p.pid and st["workers"] == 2
    assert isinstance(st["uptime_s"], int) and st["connections"] == 0
    assert st["config"] == path
    assert st["reload"] == {"ok": 0, "failed": 0, "last_time": 0, "last_ok": None,
                            "last_message": ""}
    [ls] = st["listeners"]
    assert ls["addr"] == "127.0.0.1:%d" % port and ls["kind"] == "proxy"
    assert ls["open"] == 0
    accepted = ls["accepted"]

    s, rd, code = tr.connect_tunnel(port, "127.0.0.1", origin.port, USER, "s3cret")
    assert code == 200
    tr.check_bytes(tr.tunnel_get(s, rd, origin.port, "/bytes/5000?seed=1"), 5000, 1)
    st = ctl.status(cport)
    assert st["connections"] == 1
    assert st["listeners"][0]["open"] == 1 and st["listeners"][0]["accepted"] == accepted + 1
    s.close()
    st = ctl.wait_until(lambda: (lambda d: d if d["connections"] == 0 else None)(ctl.status(cport)),
                        5, what="the tunnel to close")
    ls = st["listeners"][0]
    assert ls["open"] == 0 and ls["bytes_out"] >= 5000 and ls["bytes_in"] > 0
    code, hdrs, _ = ctl.api(cport, "GET", "/status")
    assert hdrs["content-type"] == "application/json" and hdrs["cache-control"] == "no-store"


def test_now_masks_secrets(wmproxy, tmp_path):
    port, cport = ports(2)
    text = conf(cport, port, password="pw-SECRET-1", extra_top='control_token = "tok-SECRET-2"\n',
                extra='idle_timeout = "90s"\n')
    start(wmproxy, tmp_path, text, port)
    code, _, now = ctl.api(cport, "GET", "/now", token="tok-SECRET-2")
    assert code == 200
    assert now["control_token"] == "***"
    assert now["proxy"]["password"] == "***"
    assert now["proxy"]["username"] == USER and now["proxy"]["idle_timeout"] == "90s"
    assert now["proxy"]["bind_addr"] == "127.0.0.1:%d" % port and now["workers"] == 2
    raw = json.dumps(now)
    assert "SECRET" not in raw


def test_now_yaml_keeps_types(wmproxy, tmp_path):
    port, cport = ports(2)
    text = ("control: 127.0.0.1:%d\nworkers: 2\nproxy:\n  bind_addr: 127.0.0.1:%d\n"
            "  flag: 7\n  username: u\n  password: 1234\n" % (cport, port))
    start(wmproxy, tmp_path, text, port, name="wm.yaml")
    _, _, now = ctl.api(cport, "GET", "/now")
    assert now == {"control": "127.0.0.1:%d" % cport, "workers": 2,
                   "proxy": {"bind_addr": "127.0.0.1:%d" % port, "flag": 7, "username": "u",
                             "password": "***"}}


def test_post_reload_good_then_bad(wmproxy, origin, tmp_path):
    port, cport = ports(2)
    path, p = start(wmproxy, tmp_path, conf(cport, port, password="one"), port)

    ctl.write(path, conf(cport, port, password="two"))
    code, _, doc = ctl.api(cport, "POST", "/reload")
    assert code == 200 and doc == {"ok": True, "message": "reloaded %s: 1 listener(s)" % path}
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=1", USER, "two"), 10, 1)

    # Bad file (and credentials that would change): refused, "two" stays.
    ctl.write(path, conf(cport, port, password="three", extra='bind_adr = "127.0.0.1:1"\n'))
    code, _, doc = ctl.api(cport, "POST", "/reload")
    assert code == 422 and doc["ok"] is False
    assert doc["message"].startswith("reload refused, still running the previous configuration")
    assert '%s:7:1: proxy.bind_adr: unknown key "bind_adr"' % path in doc["message"]
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=2", USER, "two"), 10, 2)
    assert tr.http_get(port, origin.port, "/bytes/10", USER, "three").status == 407
    st = ctl.status(cport)["reload"]
    assert st["ok"] == 1 and st["failed"] == 1 and st["last_ok"] is False and st["last_time"] > 0
    assert "%s:7:1:" % path in st["last_message"]
    _, _, now = ctl.api(cport, "GET", "/now")
    assert "bind_adr" not in now["proxy"]

    # Several errors: all of them in the answer, one per line.
    ctl.write(path, conf(cport, port, extra='flag = "ftp"\nidle_timeout = "1y"\n'))
    code, _, doc = ctl.api(cport, "POST", "/reload")
    assert code == 422
    lines = doc["message"].split("\n")
    assert lines[1].startswith("%s:7:8: proxy.flag:" % path)
    assert lines[2].startswith("%s:8:16: proxy.idle_timeout:" % path)
    assert p.alive()


def test_malformed_yaml_is_refused_on_reload(wmproxy, origin, tmp_path):
    """Inputs that crashed ('? d:<TAB>?') or hung (bad UTF-8 in a directive)
    the former YAML library: a reload of such a file is refused with the
    error's position and the proxy keeps serving. An error quoting raw
    control characters stays one line."""
    port, cport = ports(2)
    good = ('control: "127.0.0.1:%d"\nproxy:\n  bind_addr: "127.0.0.1:%d"\n'
            '  username: %s\n  password: s3cret\n' % (cport, port, USER)).encode()
    path = ctl.write(tmp_path / "wm.yaml", good.decode())
    p = wmproxy(["run", "-c", path], port=port)
    for text, want in ((b"? d:\t?", "%s:1:6: mapping keys are not allowed" % path),
                       (b"%ev\xe1\xe1\n", "%s:1:4: invalid UTF-8 byte 0xE1" % path),
                       (good + b"  mappings:\n    - name: a\n      mode: http\n"
                        b"      local_addr: 127.0.0.1:1\n      headers:\n"
                        b"        - [proxy, +, \"x\\r\\r\\ny\"]\n",
                        "\\r\\r\\ny")):
        with open(path, "wb") as f:
            f.write(text)
        code, _, doc = ctl.api(cport, "POST", "/reload", timeout=30)
        assert code == 422 and doc["ok"] is False, doc
        assert want in doc["message"], doc
        assert all(line.startswith(("reload refused", path)) for line in
                   doc["message"].split("\n")), doc
        assert p.alive()
        tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=3", USER, "s3cret"), 10, 3)
    r = ctl.run(BIN, "check", "-c", path)
    assert r.returncode == 1 and b"\\r\\r\\ny" in r.stderr + r.stdout, r


def test_methods_and_paths(wmproxy, tmp_path):
    port, cport = ports(2)
    _, p = start(wmproxy, tmp_path, conf(cport, port), port)
    for method, path, code, allow in (("GET", "/reload", 405, "POST"),
                                      ("GET", "/stop", 405, "POST"),
                                      ("POST", "/status", 405, "GET, HEAD"),
                                      ("POST", "/now", 405, "GET, HEAD"),
                                      ("GET", "/nope", 404, None), ("POST", "/", 405, "GET, HEAD"),
                                      ("POST", "/metrics", 405, "GET, HEAD"),
                                      ("PATCH", "/status", 405, "GET, HEAD"),
                                      ("OPTIONS", "/reload", 405, "POST"),
                                      ("DELETE", "/nope", 404, None)):
        got, hdrs, doc = ctl.api(cport, method, path)
        assert got == code, (method, path, got, doc)
        assert doc["ok"] is False
        assert hdrs.get("allow") == allow
    assert ctl.status(cport)["reload"]["ok"] == 0
    code, _, _ = ctl.api(cport, "HEAD", "/status")
    assert code == 200
    # CONNECT: a JSON 405 with its length (it was libevent's HTML 501,
    # without one)
    s = socket.create_connection(("127.0.0.1", cport), timeout=5)
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    want = b'{"ok":false,"message":"this is the control API, not a proxy"}\n'
    answer = b""
    while not answer.endswith(want):
        d = s.recv(4096)
        assert d, answer
        answer += d
    assert answer.startswith(b"HTTP/1.1 405 "), answer
    assert b"\r\nContent-Length: %d\r\n" % len(want) in answer, answer
    s.close()
    # a target libevent takes but a strict URI parse refuses: 400 (the
    # process crashed, before any token check)
    for target in (b"/status|x", b"/a b"[:2] + b"%zz|", b"//[x"):
        s = socket.create_connection(("127.0.0.1", cport), timeout=5)
        s.sendall(b"GET " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        head = s.recv(4096)
        assert head.startswith(b"HTTP/1.1 4"), (target, head)
        s.close()
    assert p.alive()


def test_token_required(wmproxy, tmp_path):
    port, cport = ports(2)
    path, p = start(wmproxy, tmp_path, conf(cport, port, extra_top='control_token = "t0k"\n'), port)
    url = "http://127.0.0.1:%d" % cport
    for method, ep in (("GET", "/status"), ("GET", "/now"), ("POST", "/reload"), ("POST", "/stop")):
        for token in (None, "wrong", "T0K"):
            code, hdrs, doc = ctl.api(cport, method, ep, token=token)
            assert code == 401, (method, ep, token, code)
            assert hdrs["www-authenticate"] == 'Bearer realm="wmproxy"'
            assert doc == {"ok": False, "message": "a valid bearer token is required"}
    assert p.alive()
    assert ctl.status(cport, token="t0k")["reload"] == {"ok": 0, "failed": 0, "last_time": 0,
                                                        "last_ok": None, "last_message": ""}

    # The command line: the token comes from the file, or from --token.
    r = ctl.run(BIN, "reload", "-c", path)
    assert r.returncode == 0 and r.stdout.decode().startswith("reloaded "), r
    r = ctl.run(BIN, "reload", "-u", url)
    assert r.returncode == 1 and b"bearer token" in r.stderr, r
    r = ctl.run(BIN, "reload", "-u", url, "--token", "t0k")
    assert r.returncode == 0, r

    # A reload can change the token: the new one applies at once.
    ctl.write(path, conf(cport, port, extra_top='control_token = "t1k"\n'))
    r = ctl.run(BIN, "reload", "-u", url, "--token", "t0k")
    assert r.returncode == 0, r
    assert ctl.api(cport, "GET", "/status", token="t0k")[0] == 401
    assert ctl.status(cport, token="t1k")["reload"]["ok"] == 3
    # Without a token in the file, the API is open again.
    ctl.write(path, conf(cport, port))
    assert ctl.run(BIN, "reload", "-u", url, "--token", "t1k").returncode == 0
    assert ctl.api(cport, "GET", "/status")[0] == 200


def _raw(cport, method, path, headers):
    c = http.client.HTTPConnection("127.0.0.1", cport, timeout=10)
    try:
        c.request(method, path, body=b"x", headers=headers)
        r = c.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        c.close()


def test_web_pages_cannot_reload_or_stop(wmproxy, tmp_path):
    # a page in the operator's browser can post a plain form to localhost
    # without a preflight; such requests carry Origin, the CLI's do not
    port, cport = ports(2)
    _, p = start(wmproxy, tmp_path, conf(cport, port), port)
    for ep in ("/stop", "/reload"):
        code, doc = _raw(cport, "POST", ep, {"Origin": "http://evil.example",
                                             "Content-Type": "text/plain"})
        assert code == 403 and doc["ok"] is False, (ep, code, doc)
    assert p.alive()
    assert ctl.status(cport)["reload"]["ok"] == 0


def test_bearer_scheme_is_case_insensitive(wmproxy, tmp_path):
    port, cport = ports(2)
    start(wmproxy, tmp_path, conf(cport, port, extra_top='control_token = "t0k"\n'), port)
    code, doc = _raw(cport, "GET", "/status", {"Authorization": "bearer t0k"})
    assert code == 200 and "uptime_s" in doc


def test_status_polling_during_stop_never_blocks_the_exit(wmproxy, tmp_path):
    # /status asks the tunnel worker for its part; while stopping, that
    # worker may already be gone: the answer must come without it and the
    # process must still exit
    for _ in range(3):
        port, cport = ports(2)
        text = ('control = "127.0.0.1:%d"\nworkers = 2\ngrace = "1s"\n[proxy]\n'
                'bind_addr = "127.0.0.1:%d"\nmode = "server"\n' % (cport, port))
        path = ctl.write(tmp_path / "tun.toml", text)
        p = wmproxy(["run", "-c", path], port=port)
        stop = threading.Event()
        polls = []

        def poll():
            while not stop.is_set():
                try:
                    _raw(cport, "GET", "/status", {})
                except (OSError, ValueError, http.client.HTTPException):
                    pass
                polls.append(1)

        threads = [threading.Thread(target=poll, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            wait_until(lambda: len(polls) >= 6, 10, what="the pollers to run")
            assert p.stop(timeout=15) == 0
        finally:
            stop.set()
            for t in threads:
                t.join(5)


def test_cli_reload_prints_the_answer(wmproxy, tmp_path):
    port, cport = ports(2)
    path, p = start(wmproxy, tmp_path, conf(cport, port), port)
    r = ctl.run(BIN, "reload", "-c", path)
    assert r.returncode == 0 and r.stdout.decode() == "reloaded %s: 1 listener(s)\n" % path, r

    # A syntax error below the control line: the command still finds the
    # instance and prints its refusal.
    ctl.write(path, conf(cport, port).replace("[proxy]", "[proxy"))
    r = ctl.run(BIN, "reload", "-c", path)
    err = r.stderr.decode()
    assert r.returncode == 1 and r.stdout == b"", r
    assert err.startswith("wmproxy: reload refused, still running the previous configuration:\n")
    assert "%s:3:7: expected ']'" % path in err, err
    # YAML, same idea.
    ypath = ctl.write(tmp_path / "other.yaml",
                      "control: 127.0.0.1:%d\nproxy:\n  flag: [7\n" % cport)
    r = ctl.run(BIN, "reload", "-c", ypath)
    assert r.returncode == 1 and b"reload refused" in r.stderr, r
    assert ctl.status(cport)["reload"] == {**ctl.status(cport)["reload"], "ok": 1, "failed": 2}

    ctl.write(path, conf(cport, port))
    r = ctl.run(BIN, "stop", "-c", path)
    assert r.returncode == 0 and r.stdout == b"stopping\n", r
    p.p.wait(15)
    assert p.stop() == 0
    # Nobody there any more.
    r = ctl.run(BIN, "reload", "-c", path)
    assert r.returncode == 1 and b"cannot connect to 127.0.0.1:%d" % cport in r.stderr, r


def test_disable_control(wmproxy, origin, tmp_path):
    port, cport = ports(2)
    text = conf(cport, port, extra_top="disable_control = true\n")
    path, _ = start(wmproxy, tmp_path, text, port)
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=3", USER, "s3cret"), 10, 3)
    try:
        connect(cport, timeout=2).close()
        raise AssertionError("the control port is open")
    except ConnectionRefusedError:
        pass
    r = ctl.run(BIN, "reload", "-c", path)
    assert r.returncode == 1 and b"cannot connect" in r.stderr, r

    # The command line wins over the file: the address, and switching off.
    port2, cport2, cport3 = ports(3)
    path2 = ctl.write(tmp_path / "b.toml", conf(cport2, port2))
    wmproxy(["run", "-c", path2, "--control", "127.0.0.1:%d" % cport3], port=port2)
    assert wait_port("127.0.0.1", cport3, 5)
    assert ctl.status(cport3)["config"] == path2
    port4, cport4 = ports(2)
    path4 = ctl.write(tmp_path / "c.toml", conf(cport4, port4))
    wmproxy(["run", "-c", path4, "--disable-control"], port=port4)
    try:
        connect(cport4, timeout=2).close()
        raise AssertionError("--disable-control ignored")
    except ConnectionRefusedError:
        pass


def test_control_port_is_exclusive(wmproxy, tmp_path):
    """A second instance with the same control address must not start
    (it would share the port and answer half of the requests)."""
    port, port2, cport = ports(3)
    _, p = start(wmproxy, tmp_path, conf(cport, port), port)
    path2 = ctl.write(tmp_path / "second.toml", conf(cport, port2))
    r = ctl.run(BIN, "run", "-c", path2)
    assert r.returncode == 1 and b"Address already in use" in r.stderr, r
    for _ in range(20):
        assert ctl.status(cport)["pid"] == p.p.pid
    try:
        connect(port2, timeout=2).close()
        raise AssertionError("the failed instance left its proxy port open")
    except ConnectionRefusedError:
        pass


def test_reload_when_started_from_flags(wmproxy):
    port, cport = ports(2)
    wmproxy(["proxy", "-b", "127.0.0.1:%d" % port, "--workers", "2", "--control",
             "127.0.0.1:%d" % cport], port=port)
    code, _, doc = ctl.api(cport, "POST", "/reload")
    assert code == 422 and "not from a config file" in doc["message"]
    st = ctl.status(cport)
    assert st["config"] is None and st["reload"]["ok"] == 0
    _, _, now = ctl.api(cport, "GET", "/now")
    assert now["proxy"]["bind_addr"] == "127.0.0.1:%d" % port


def test_control_on_ipv6(wmproxy, tmp_path):
    port = free_port()
    cport = free_port(socket.AF_INET6)
    text = conf(cport, port).replace('"127.0.0.1:%d"' % cport, '"[::1]:%d"' % cport)
    path, _ = start(wmproxy, tmp_path, text, port)
    assert wait_port("::1", cport, 5)
    r = ctl.run(BIN, "reload", "-c", path)
    assert r.returncode == 0, r


def _in_netns(pid, *cmd):
    return subprocess.run(["nsenter", "-t", str(pid), "-n"] + [str(c) for c in cmd],
                          capture_output=True, timeout=30)


def _ns_api(pid, cport, method, ep, token=None):
    """(status code, body) of one control API call made inside pid's network
    namespace."""
    args = ["curl", "-sS", "-m", "10", "-X", method, "-o", "-", "-w", "\n%{http_code}"]
    if token:
        args += ["-H", "Authorization: Bearer " + token]
    r = _in_netns(pid, *args, "http://127.0.0.1:%d%s" % (cport, ep))
    body, _, code = r.stdout.decode().rpartition("\n")
    return int(code or 0), body


def _netns_usable():
    """Can this machine give a process a network namespace of its own with
    its loopback up? (root, unshare, nsenter and ip, and a kernel or
    container that allows it)"""
    if os.geteuid() != 0 or not all(shutil.which(c) for c in ("unshare", "nsenter", "ip")):
        return False
    try:
        return subprocess.run(["unshare", "-n", "ip", "link", "set", "lo", "up"],
                              capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not _netns_usable(),
                    reason="needs a network namespace of its own (root, unshare, nsenter, ip)")
def test_reload_keeps_the_token_of_a_control_api_beyond_loopback(tmp_path):
    """--control on 0.0.0.0 with the file's control_token: a reload to a file
    without control_token used to drop the token and leave /stop and /reload
    open to the whole network (the file alone names 127.0.0.1, so `check`
    passed). The instance runs in a network namespace of its own, where
    0.0.0.0 reaches nothing but its loopback."""
    port, cport = ports(2)
    path = ctl.write(tmp_path / "wm.toml", conf(cport, port, extra_top='control_token = "t0k"\n'))
    log = open(tmp_path / "wm.log", "w+b")
    p = subprocess.Popen(["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', BIN,
                          "run", "-c", path, "--control", "0.0.0.0:%d" % cport],
                         stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: _ns_api(p.pid, cport, "GET", "/status")[0] == 401, 15,
                   what="the control API in its namespace")
        ctl.write(path, conf(cport, port))
        code, body = _ns_api(p.pid, cport, "POST", "/reload", "t0k")
        assert code == 422 and "beyond loopback" in body and "control_token" in body, body
        assert _ns_api(p.pid, cport, "GET", "/status")[0] == 401
        assert _ns_api(p.pid, cport, "POST", "/stop")[0] == 401
        # a new token is taken at once
        ctl.write(path, conf(cport, port, extra_top='control_token = "t1k"\n'))
        assert _ns_api(p.pid, cport, "POST", "/reload", "t0k")[0] == 200
        assert _ns_api(p.pid, cport, "GET", "/status", "t0k")[0] == 401
        assert _ns_api(p.pid, cport, "GET", "/status", "t1k")[0] == 200
        p.send_signal(signal.SIGTERM)
        assert p.wait(20) == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
        log.seek(0)
        out = log.read().decode("utf-8", "replace")
        log.close()
    assert "reload refused: control: the control API listens on 0.0.0.0:%d" % cport in out, out
    assert "Sanitizer" not in out and "runtime error:" not in out, out
