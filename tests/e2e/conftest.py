"""Shared fixtures for the end-to-end tests: they start the real binary
(WMPROXY_BIN, the ASan build under `make test`) on 127.0.0.1/::1 and drive it
with real clients. Every wait is bounded."""

import hashlib
import os
import signal
import subprocess

import pytest

from helpers import origin as origin_mod
from helpers.net import free_port, wait_port

BIN = os.environ.get("WMPROXY_BIN", os.path.join(os.path.dirname(__file__), "../../build/wmproxy"))


class Proc:
    """A running wmproxy. stop() sends SIGTERM, waits, and checks the exit
    status and that the sanitizers reported nothing; wait_exit() does the same
    for a process expected to exit by itself."""

    def __init__(self, args, port=None, tmp_path=None, env=None, wait=True, host="127.0.0.1"):
        self.args = [BIN] + args
        self.tmp = tmp_path
        self.log_path = os.path.join(str(tmp_path), "wmproxy-%d.log" % free_port()) if tmp_path else None
        self.logf = open(self.log_path, "w+b") if self.log_path else subprocess.DEVNULL
        e = dict(os.environ)
        e.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0:exitcode=66")
        e.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1:exitcode=67")
        if tmp_path:
            # what a node keeps on disk (its tunnel key pair, known_hosts)
            # stays in the test's directory, never in the user's home
            e.pop("STATE_DIRECTORY", None)
            e["XDG_STATE_HOME"] = os.path.join(str(tmp_path), "xdg-state")
            e["XDG_CONFIG_HOME"] = os.path.join(str(tmp_path), "xdg-config")
        if env:
            e.update(env)
        self.p = subprocess.Popen(self.args, stdout=self.logf, stderr=subprocess.STDOUT, env=e)
        self.port = port
        self.stopped = False
        if wait and port:
            if not wait_port(host, port, 10, self.p):
                out = self.log()
                self.p.kill()
                raise RuntimeError("wmproxy did not start: %s\n%s" % (self.args, out))

    def log(self):
        if not self.log_path:
            return ""
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        self.p.send_signal(sig)

    def stop(self, timeout=20, expect_code=0):
        """SIGTERM, then wait_exit()."""
        if self.stopped:
            return self.p.returncode
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout, expect_code, after="SIGTERM")

    def wait_exit(self, timeout=20, expect_code=0, after="its own decision"):
        """Wait, without signalling, for the process to exit; check its exit
        code (None: any) and that the sanitizers reported nothing."""
        if self.stopped:
            return self.p.returncode
        self.stopped = True
        try:
            code = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(5)
            raise AssertionError("wmproxy did not exit within %ss after %s\n%s"
                                 % (timeout, after, self.log()[-4000:]))
        out = self.log()
        bad = [m for m in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:") if m in out]
        assert not bad, "sanitizer report:\n" + out[-8000:]
        if expect_code is not None:
            assert code == expect_code, "exit code %s\n%s" % (code, out[-4000:])
        return code


@pytest.fixture
def wmproxy(tmp_path):
    """Factory: wmproxy(["proxy", ...], port=P) -> Proc. All are stopped and
    checked at teardown."""
    procs = []

    def start(args, port=None, **kw):
        p = Proc(args, port=port, tmp_path=tmp_path, **kw)
        procs.append(p)
        return p

    yield start
    errors = []
    for p in procs:
        try:
            p.stop()
        except AssertionError as e:
            errors.append(str(e))
    if errors:
        raise AssertionError("\n".join(errors))


def proxy_args(port, *extra, control=False):
    args = ["proxy", "-b", "127.0.0.1:%d" % port, "--workers", "2"]
    if not control:
        args.append("--disable-control")
    return args + list(extra)


@pytest.fixture
def proxy(wmproxy):
    """A plain forward proxy without auth; returns its port."""
    port = free_port()
    wmproxy(proxy_args(port), port=port)
    return port


@pytest.fixture
def auth_proxy(wmproxy):
    port = free_port()
    wmproxy(proxy_args(port, "--user", "alice", "--pass", "s3cret"), port=port)
    return port


@pytest.fixture(scope="session")
def origin():
    """HTTP/1.1 origin on 127.0.0.1 with test endpoints (see helpers/origin.py)."""
    srv = origin_mod.start("127.0.0.1")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def origin6():
    srv = origin_mod.start("::1")
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def echo():
    """TCP echo server; a connection that sends EOF gets the sha256 of all it
    sent, then EOF (tests half-close)."""
    srv = origin_mod.start_echo("127.0.0.1")
    yield srv
    srv.stop()


def sha256(b):
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def backends():
    """Factory: backends("a", "b") -> named HTTP backends (helpers/revconf.py),
    stopped at teardown."""
    from helpers.revconf import NamedBackend
    made = []

    def make(*names):
        bs = [NamedBackend(n) for n in names]
        made.extend(bs)
        return bs
    yield make
    for b in made:
        b.stop()
