"""Resource exhaustion: a process out of descriptors neither spins nor floods
its log on any listener, keeps the connections it has, and serves again once
descriptors are free. Every wait is bounded."""

import os
import socket
import time

from helpers import control as ctl
from helpers.net import connect, free_ports, no_free_fds, wait_port, wait_until


def cpu_seconds(pid):
    """User + system CPU time the process has used so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid, seconds):
    """CPU seconds the process burns within a window of that many seconds
    (a measurement: the window is the point, there is no state to wait for)."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)
    return cpu_seconds(pid) - c0


def conf(cport, port):
    return ('control = "127.0.0.1:%d"\n'
            'workers = 1\n'
            '[proxy]\n'
            'bind_addr = "127.0.0.1:%d"\n' % (cport, port))


def starve(p, port, what, held):
    """With no descriptor left: connections queue on port, the process pauses
    that listener (one line per pause, no busy loop), and its established
    connection held still relays."""
    waiting = []
    with no_free_fds(p.p.pid):
        for _ in range(3):
            waiting.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        wait_until(lambda: "accept on 127.0.0.1:%d: Too many open files; pausing" % port in p.log(),
                   what="the %s pause line" % what)
        before = p.log().count("accept on")
        burnt = cpu_over(p.p.pid, 2.0)
        lines = p.log().count("accept on") - before
        assert burnt < 0.5, "%s: %.2f s of CPU in 2 s out of descriptors" % (what, burnt)
        assert lines <= 20, "%s: %d accept lines in 2 s" % (what, lines)
        assert "Error from accept() call" not in p.log()
        held()
    return waiting


def test_out_of_descriptors_control_api_pauses(wmproxy, tmp_path, echo):
    """The control API's listener used libevent's default on an accept
    error: a warning on stderr and a retry at once, so a process out of
    descriptors burnt a whole core and wrote about 400,000 lines a second.
    It now pauses 200 ms with one line, as the proxy listeners, and answers
    again once descriptors are free."""
    port, cport = free_ports(2)
    path = ctl.write(tmp_path / "wm.toml", conf(cport, port))
    p = wmproxy(["run", "-c", path], port=port)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    tunnel = connect(port)
    tunnel.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo.port)
    assert tunnel.recv(4096).startswith(b"HTTP/1.1 200")

    def held():
        tunnel.sendall(b"ping")
        assert tunnel.recv(16) == b"ping"
    waiting = starve(p, cport, "control API", held)
    # the connections that queued meanwhile are served now
    for s in waiting:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        assert s.recv(12) == b"HTTP/1.1 200", "a queued control request was not served"
        s.close()
    assert ctl.api(cport, "GET", "/status")[0] == 200
    tunnel.close()
