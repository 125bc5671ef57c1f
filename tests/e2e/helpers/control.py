"""Config files, the control API and process facts for the config/reload
tests. Every wait is bounded."""

import http.client
import json
import os
import re
import subprocess
import time

from helpers.net import wait_port, wait_until  # noqa: F401 (ctl.wait_until)


def write(path, text):
    """Write a config file atomically (a reload never sees half a file)."""
    tmp = str(path) + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, str(path))
    return str(path)


def wait_control(proc, text, args=()):
    """After a start from config text: wait for the control API it asks for
    on 127.0.0.1 (it opens just after the listeners the start waited for)."""
    m = re.search(r'^control = "127\.0\.0\.1:(\d+)"', text, re.M)
    if m and "disable_control = true" not in text and "--disable-control" not in args:
        assert wait_port("127.0.0.1", int(m.group(1)), 10, proc.p), proc.log()


def api(cport, method, path, token=None, timeout=10):
    """One control API call: (status, headers {lower-case: value}, JSON or None).
    A refused connection is retried for a few seconds: the control API opens
    just after the proxy port a test waits for."""
    deadline = time.time() + 5
    while True:
        c = http.client.HTTPConnection("127.0.0.1", cport, timeout=timeout)
        try:
            c.connect()
            break
        except ConnectionRefusedError:
            c.close()
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    try:
        h = {"Authorization": "Bearer " + token} if token else {}
        c.request(method, path, headers=h)
        r = c.getresponse()
        body = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = body
        return r.status, hdrs, doc
    finally:
        c.close()


def status(cport, token=None):
    code, _, doc = api(cport, "GET", "/status", token)
    assert code == 200, (code, doc)
    return doc


def run(binary, *args, timeout=30, env=None):
    e = dict(os.environ)
    if env:
        e.update(env)
    return subprocess.run([binary] + [str(a) for a in args], capture_output=True, timeout=timeout,
                          env=e)


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def rss_kb(pid):
    """Resident set size of pid in KiB (VmRSS)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def children(pid):
    """Pids of the direct children of pid."""
    out = []
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            out = [int(x) for x in f.read().split()]
    except OSError:
        pass
    return out
