"""Command line, control API basics, daemon and pidfile."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.error
import urllib.request

import pytest

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


def test_daemon_reports_start_error():
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    r = run("proxy", "-b", "127.0.0.1:%d" % busy.getsockname()[1], "--disable-control", "--daemon",
            "--pidfile", "/tmp/wm-unused.pid")
    assert r.returncode == 1 and b"in use" in r.stderr
    busy.close()


def _amd_with_erms():
    with open("/proc/cpuinfo") as f:
        info = f.read()
    vendor = re.search(r"^vendor_id\s*:\s*(\S+)", info, re.M)
    flags = re.search(r"^flags\s*:(.*)$", info, re.M)
    return bool(vendor and vendor.group(1) in ("AuthenticAMD", "HygonGenuine") and
                flags and "erms" in flags.group(1).split())


def _wait_log(p, text, timeout=5):
    wait_until(lambda: text in p.log(), timeout, what="%r in the log:\n%s" % (text, p.log()))


def test_cpu_tuning_reexec(wmproxy):
    """On AMD CPUs with ERMS the process re-executes itself once (same pid:
    exec, not fork) with glibc's rep movsb threshold raised (glibc bug
    30994), added to the user's own GLIBC_TUNABLES, and logs it; elsewhere
    nothing happens. (/proc/PID/environ cannot show it: glibc rewrites the
    variable in place when it parses it.)"""
    port = free_port()
    p = wmproxy(proxy_args(port), port=port,
                env={"GLIBC_TUNABLES": "glibc.malloc.trim_threshold=1048576"})
    with open("/proc/%d/comm" % p.p.pid) as f:   # ps/pgrep/killall still see us
        assert f.read().strip() == os.path.basename(BIN)[:15]
    if _amd_with_erms():
        _wait_log(p, "cpu: AMD CPU with ERMS: glibc's rep movsb copies are off")
    else:
        _wait_log(p, "listening on")  # the cpu line would come with it
        assert "rep movsb" not in p.log()
    assert p.alive()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET http://127.0.0.1:1/ HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 502")


def test_cpu_tuning_opt_out(wmproxy):
    port = free_port()
    p = wmproxy(proxy_args(port), port=port, env={"WMPROXY_NO_CPUTUNE": "1"})
    if _amd_with_erms():
        _wait_log(p, "rep movsb tuning not applied")


def _start_and_check_untuned(argv, port, preexec=None):
    """Start argv (a wmproxy proxy on port), expect it to serve within 10 s
    without re-executing itself (the 'not applied' line on AMD/ERMS)."""
    log = tempfile.TemporaryFile()
    p = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, preexec_fn=preexec)
    try:
        assert wait_port("127.0.0.1", port, 10, p), "did not start"
        def started():
            log.seek(0)
            out = log.read().decode("utf-8", "replace")
            return out if "listening on" in out and (not _amd_with_erms() or "cpu:" in out) else None
        out = wait_until(started, 5, what="the start lines")
        if _amd_with_erms():
            assert "rep movsb tuning not applied" in out, out
    finally:
        p.terminate()
        p.wait(15)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setcap"),
                    reason="needs root and setcap (libcap2-bin, installed by make test)")
def test_cpu_tuning_skipped_in_secure_mode(tmp_path):
    """A binary with file capabilities (setcap, the usual way to bind :80
    without root) runs in secure mode; glibc then drops the tunable, and a
    re-exec guarded only by it looped forever at 100% CPU."""
    d = tempfile.mkdtemp(prefix="wmcap-")
    try:
        os.chmod(d, 0o755)
        b = os.path.join(d, "wmproxy")
        shutil.copy(BIN, b)
        os.chmod(b, 0o755)
        subprocess.run(["setcap", "cap_net_bind_service+ep", b], check=True)
        port = free_port()

        def drop():
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
        _start_and_check_untuned([b, "proxy", "-b", "127.0.0.1:%d" % port, "--disable-control"],
                                 port, preexec=drop)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_cpu_tuning_skipped_through_the_loader():
    """Started as `ld.so wmproxy ...`, /proc/self/exe names the loader: a
    re-exec of it would try to load a program called "proxy"."""
    ld = "/lib64/ld-linux-x86-64.so.2"
    if not os.path.exists(ld):
        pytest.skip("no x86-64 loader here")
    port = free_port()
    _start_and_check_untuned([ld, BIN, "proxy", "-b", "127.0.0.1:%d" % port, "--disable-control"],
                             port)
