"""Command line, control API basics, daemon and pidfile."""

import json
import os
import signal
import socket
import subprocess
import urllib.error
import urllib.request

from conftest import BIN, proxy_args
from helpers.net import free_port, wait_port, wait_until


def run(*args, timeout=10):
    return subprocess.run([BIN] + list(args), capture_output=True, timeout=timeout)


def test_version_and_help():
    r = run("version")
    assert r.returncode == 0 and r.stdout.startswith(b"wmproxy ")
    r = run("proxy", "--help")
    assert r.returncode == 0 and b"--bind" in r.stdout and b"--flag" in r.stdout
    r = run("--help")
    assert r.returncode == 0 and b"proxy" in r.stdout


def test_bad_flags_exit_2():
    for args in (["proxy", "--no-such-flag"], ["proxy", "--flag", "ftp"], ["proxy", "extra"],
                 ["nosuchcommand"], [], ["proxy", "--user", "a"], ["proxy", "--workers", "0"],
                 ["proxy", "--default-level", "loud"]):
        r = run(*args)
        assert r.returncode == 2, (args, r)
        assert r.stderr, args
    # the message names what was wrong
    for args, want in ((["proxy", "--mode", "x"], b'--mode: expected server or client, got "x"'),
                       (["run", "-c", "f.toml", "extra"], b'unexpected argument "extra"'),
                       (["proxy", "--log-file="], b'--log-file: needs a value, got ""'),
                       (["proxy", "--pidfile", ""], b'--pidfile: needs a value, got ""'),
                       (["proxy", "--control", ""], b'--control: needs a value, got ""')):
        r = run(*args)
        assert r.returncode == 2 and want in r.stderr, (args, r)


def test_bind_errors_exit_1():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    r = run("proxy", "-b", "127.0.0.1:%d" % port, "--disable-control")
    assert r.returncode == 1 and b"Address already in use" in r.stderr
    r = run("proxy", "-b", "not-an-address", "--disable-control")
    assert r.returncode == 1 and b"not-an-address" in r.stderr
    busy.close()


def http(method, url, token=None):
    req = urllib.request.Request(url, method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def test_control_status_and_stop(wmproxy):
    port, cport = free_port(), free_port()
    p = wmproxy(["proxy", "-b", "127.0.0.1:%d" % port, "--control", "127.0.0.1:%d" % cport], port=port)
    assert wait_port("127.0.0.1", cport, 5)
    code, doc = http("GET", "http://127.0.0.1:%d/status" % cport)
    assert code == 200
    assert doc["listeners"][0]["addr"] == "127.0.0.1:%d" % port
    assert doc["workers"] >= 1 and "uptime_s" in doc and "version" in doc
    code, doc = http("GET", "http://127.0.0.1:%d/stop" % cport)
    assert code == 405 and doc["ok"] is False
    code, _ = http("GET", "http://127.0.0.1:%d/nope" % cport)
    assert code == 404
    assert p.alive()
    code, doc = http("POST", "http://127.0.0.1:%d/stop" % cport)
    assert code == 200 and doc["ok"]
    assert p.wait_exit(timeout=10) == 0


def test_daemon_and_pidfile(tmp_path):
    port = free_port()
    pidfile = tmp_path / "w.pid"
    r = run("proxy", "-b", "127.0.0.1:%d" % port, "--disable-control", "--daemon",
            "--pidfile", str(pidfile))
    assert r.returncode == 0, r.stderr
    assert wait_port("127.0.0.1", port, 5)
    pid = int(pidfile.read_text())
    os.kill(pid, signal.SIGTERM)

    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return True
    wait_until(gone, 10, what="the daemon to stop")
    assert not pidfile.exists()


def test_pidfile_that_is_a_fifo_is_refused_not_waited_on(tmp_path):
    """A pidfile path naming a FIFO (that nothing reads) is refused with
    a message; the start used to block in open(2) for ever."""
    fifo = tmp_path / "w.pid"
    os.mkfifo(str(fifo))
    port = free_port()
    r = run("proxy", "-b", "127.0.0.1:%d" % port, "--disable-control", "--daemon",
            "--pidfile", str(fifo))
    assert r.returncode == 1 and b"not a regular file" in r.stderr, r.stderr


def test_daemon_reports_start_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    r = run("proxy", "-b", "127.0.0.1:%d" % busy.getsockname()[1], "--disable-control", "--daemon",
            "--pidfile", "/tmp/wm-unused.pid")
    assert r.returncode == 1 and b"in use" in r.stderr
    busy.close()
