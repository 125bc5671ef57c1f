"""Resource exhaustion: a process out of descriptors neither spins nor floods
its log on any listener, keeps the connections it has, and serves again once
descriptors are free. Every wait is bounded."""

import os
import socket
import threading
import time

from helpers import control as ctl
from helpers import http1
from helpers.net import (connect, free_ports, is_closed, no_free_fds, recv_all, recv_exact,
                         wait_port, wait_until)
from helpers.origin import pattern
from helpers.stream import config, echo_reply, exchange, server


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


def holds_peer(pid, sock):
    """Whether process pid holds the accepted end of sock, a client
    connected on 127.0.0.1 (its socket inode among the process's fds)."""
    here = "0100007F:%04X" % sock.getsockname()[1]
    with open("/proc/%d/net/tcp" % pid) as f:
        inodes = {"socket:[%s]" % ln.split()[9] for ln in f.readlines()[1:]
                  if ln.split()[2] == here}
    fds = []
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            fds.append(os.readlink("/proc/%d/fd/%s" % (pid, fd)))
        except OSError:
            pass
    return bool(inodes.intersection(fds))


def held_tunnel(port, echo):
    """A CONNECT tunnel to the echo server through port, and a check that
    it still relays (call it while the process is starved)."""
    tunnel = connect(port)
    tunnel.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo.port)
    assert tunnel.recv(4096).startswith(b"HTTP/1.1 200")

    def held():
        tunnel.sendall(b"ping")
        assert tunnel.recv(16) == b"ping"
    return tunnel, held


def conf(cport, port):
    return ('control = "127.0.0.1:%d"\n'
            'workers = 1\n'
            '[proxy]\n'
            'bind_addr = "127.0.0.1:%d"\n' % (cport, port))


def starve(p, port, what, held, listeners=1):
    """With no descriptor left: connections queue on port, the process pauses
    that listener (no busy loop; one line a second at most for each of its
    listeners, one per worker), and its established connection held still
    relays."""
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
        assert lines <= 3 * listeners, "%s: %d accept lines in 2 s" % (what, lines)
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
    tunnel, held = held_tunnel(port, echo)
    waiting = starve(p, cport, "control API", held)
    # the connections that queued meanwhile are served now
    for s in waiting:
        s.sendall(b"GET /status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        s.settimeout(10)
        assert s.recv(12) == b"HTTP/1.1 200", "a queued control request was not served"
        s.close()
    assert ctl.api(cport, "GET", "/status")[0] == 200
    tunnel.close()


def test_out_of_descriptors_proxy_listeners_pause_quietly(wmproxy, tmp_path, echo):
    """A proxy listener out of descriptors pauses 200 ms between tries; it
    logged a line at every pause (5 a second for each worker's listener):
    now one a second at most, with the count of pauses not logged."""
    port, cport = free_ports(2)
    text = conf(cport, port).replace("workers = 1", "workers = 2")
    p = wmproxy(["run", "-c", ctl.write(tmp_path / "wm.toml", text)], port=port)
    tunnel, held = held_tunnel(port, echo)
    waiting = starve(p, port, "proxy", held, listeners=2)
    wait_until(lambda: "more pauses since the last such line" in p.log(), what="the count")
    for s in waiting:  # queued meanwhile, served now
        s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo.port)
        s.settimeout(10)
        assert s.recv(12) == b"HTTP/1.1 200", "a queued client was not served"
        s.close()
    tunnel.close()


def test_out_of_descriptors_stream_dial_says_so(wmproxy, tmp_path, echo):
    """A [stream] client whose upstream socket cannot be made (the process
    out of descriptors) was logged 'no upstream server of stream:NAME is up'
    and ended upstream-unreachable, though every server was up and none was
    marked down: the end reason is now no-socket, with the dial's own line,
    and the next client is served as soon as descriptors are free."""
    port = free_ports(1)[0]
    srv = '{ addr = "127.0.0.1:%d", fall_times = 1, fail_timeout = "60s" }' % echo.port
    body = ('[[stream.upstream]]\nname = "st"\nserver = [%s, %s]\n' % (srv, srv)
            + server(bind_addr="127.0.0.1:%d" % port, up_name="st", accept_proxy_protocol=True))
    p = wmproxy(["run", "-c", config(tmp_path, body, workers=1)], port=port)
    pp = b"PROXY TCP4 192.0.2.7 192.0.2.8 1111 2222\r\n"
    s = connect(port)
    # accepted (its descriptor taken) before the process runs out; the dial
    # waits for its PROXY header
    wait_until(lambda: holds_peer(p.p.pid, s), what="the client accepted")
    with no_free_fds(p.p.pid):
        s.sendall(pp + b"hi")
        assert is_closed(s, timeout=10), "the client was not let go"
    s.close()
    wait_until(lambda: "end=no-socket" in p.log(), what="the no-socket access line")
    log = p.log()
    assert "192.0.2.7:1111 target=127.0.0.1:%d: no socket for the connection" % echo.port in log
    assert "no upstream server of stream:st is up" not in log, log[-2000:]
    assert exchange(port, pp + b"again") == echo_reply(b"again")


def test_out_of_descriptors_established_relay_keeps_its_data(wmproxy, tmp_path, echo):
    """A plain relay switches to splice(2) when a read fills its buffer,
    through a pipe made then; a process out of descriptors at that moment
    cut the connection (pipe2: EMFILE) in the middle of its data. It now
    goes on copying, and every byte arrives."""
    port, cport = free_ports(2)
    p = wmproxy(["run", "-c", ctl.write(tmp_path / "wm.toml", conf(cport, port))], port=port)
    s = connect(port)
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n\r\n" % echo.port)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    s.sendall(b"small")  # copied: no pipe yet
    assert recv_exact(s, 5) == b"small"
    data = os.urandom(1 << 20)
    got = []

    def reader():
        got.append(recv_all(s))
    with no_free_fds(p.p.pid):
        t = threading.Thread(target=reader)
        t.start()
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        t.join(30)
    s.close()
    assert not t.is_alive(), "the relay stalled"
    assert got[0] == echo_reply(b"small" + data)[5:], "the relay lost data (%d bytes back)" % len(got[0])
    assert "Too many open files" not in p.log(), p.log()[-2000:]


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([ln for ln in f if ln.startswith("VmRSS")][0].split()[1])


def test_pipelined_local_answers_wait_for_the_client_to_read(wmproxy, tmp_path):
    """Pipelined requests answered by the proxy itself (static_response,
    redirects, 404s, 407s) were all read and answered whatever the client
    read: one connection sending requests and reading nothing grew the
    process by the size of every answer (2 GB in 15 s from 60 MB of GETs).
    Reading now stops while 256 KiB of answers wait, resumes as they go,
    and every answer arrives, in order."""
    port = free_ports(1)[0]
    answer = "x" * 4000
    text = ('disable_control = true\nworkers = 1\n[http]\n[[http.server]]\n'
            'bind_addr = "127.0.0.1:%d"\n[[http.server.location]]\nrule = "/"\n'
            'static_response = "%s"\n' % (port, answer))
    p = wmproxy(["run", "-c", ctl.write(tmp_path / "wm.toml", text)], port=port)
    n = 20000
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    s.connect(("127.0.0.1", port))
    base = rss_kib(p.p.pid)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * n)  # 540 KB: the kernel's buffers take it
    peak = base
    deadline = time.monotonic() + 3  # a measurement window: what it grows to meanwhile
    while time.monotonic() < deadline:
        peak = max(peak, rss_kib(p.p.pid))
        time.sleep(0.1)
    # the answers are 80 MB in all; what waits in the kernel and 256 KiB are allowed
    assert peak - base < 24 * 1024, "one connection grew the process by %d KiB" % (peak - base)
    s.shutdown(socket.SHUT_WR)
    got = recv_all(s)
    s.close()
    assert got.count(b"HTTP/1.1 200 ") == n, "answers lost"
    assert got.count(answer.encode()) == n


def test_half_closed_client_gets_the_whole_answer(wmproxy, tmp_path, origin):
    """A client that sends its request and half-closes (HTTP/1.0, `nc -N`)
    still reads the answer; when the connection ends after that answer, its
    last flush enabled reading again, saw the FIN once more and closed with
    up to 256 KiB of the answer unsent. It now flushes it all."""
    port = free_ports(1)[0]
    text = ('disable_control = true\nworkers = 1\n[http]\n[[http.server]]\n'
            'bind_addr = "127.0.0.1:%d"\n[[http.server.location]]\nrule = "/"\n'
            'proxy_url = "http://127.0.0.1:%d"\n' % (port, origin.port))
    p = wmproxy(["run", "-c", ctl.write(tmp_path / "wm.toml", text)], port=port)
    size = 4 << 20
    for _ in range(3):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(20)
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /bytes/%d?seed=3 HTTP/1.0\r\nHost: x\r\n\r\n" % size)
        s.shutdown(socket.SHUT_WR)
        got = recv_all(s)
        s.close()
        assert got.endswith(pattern(size, 3)[-65536:]) and len(got) > size, \
            "an answer cut short: %d of %d body bytes" % (len(got) - got.find(b"\r\n\r\n") - 4, size)
    assert p.alive()


def test_max_connections_holds_new_clients_in_the_backlog(wmproxy, tmp_path, echo):
    """max_connections = 3: with three clients open every listener stops
    accepting (a warn line), a fourth client waits in the kernel's backlog
    unserved, and is served as soon as one of the three goes. A reload
    changes the cap."""
    port, cport = free_ports(2)
    body = server(bind_addr="127.0.0.1:%d" % port, proxy_url="tcp://127.0.0.1:%d" % echo.port)
    # one worker: one listening socket, so the cap is exact (each other
    # worker's socket may take one more before it stops too)
    path = config(tmp_path, body, control=cport, workers=1, top="max_connections = 3\n")
    p = wmproxy(["run", "-c", path], port=port)
    wait_until(lambda: p.log().count("access proto=tcp") >= 1, what="the start probe's end")

    def echoes(s, data):
        s.settimeout(10)
        s.sendall(data)
        return recv_exact(s, len(data)) == data

    held = [connect(port) for _ in range(3)]
    assert all(echoes(s, b"h%d" % i) for i, s in enumerate(held))
    wait_until(lambda: "max_connections (3) reached" in p.log(), what="the pause line")
    st = ctl.api(cport, "GET", "/status")[2]  # the control API is not counted, nor paused
    assert (st["client_connections"], st["max_connections"]) == (3, 3), st
    late = connect(port)  # the kernel completes the handshake: it waits, unaccepted
    late.settimeout(0.5)
    late.sendall(b"late")
    try:
        data = late.recv(100)
    except socket.timeout:
        data = None
    assert data is None, data
    held.pop().close()
    late.settimeout(10)
    assert recv_exact(late, 4) == b"late"
    for s in held + [late]:
        s.close()
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("max_connections = 3", "max_connections = 0"))
    assert ctl.api(cport, "POST", "/reload", timeout=30)[0] == 200
    many = [connect(port) for _ in range(6)]
    assert all(echoes(s, b"m%d" % i) for i, s in enumerate(many))
    for s in many:
        s.close()


def test_file_server_out_of_descriptors_says_why(wmproxy, tmp_path):
    """A file the server cannot open for want of descriptors is a 500, and
    the log says why (the operator saw a bare 500 before); a file it could
    open is served again once descriptors are free."""
    port = free_ports(1)[0]
    root = tmp_path / "www"
    root.mkdir()
    (root / "f.txt").write_bytes(b"file body")
    path = ctl.write(tmp_path / "f.toml", 'disable_control = true\nworkers = 1\n[http]\n'
                     '[[http.server]]\nbind_addr = "127.0.0.1:%d"\n[[http.server.location]]\n'
                     'rule = "/"\nfile_server = { root = "%s" }\n' % (port, root))
    p = wmproxy(["run", "-c", path], port=port)
    s = connect(port)  # taken before: the request needs no new descriptor for the client
    s.settimeout(10)
    s.sendall(b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n")
    assert http1.Reader(s).response().status == 404
    with no_free_fds(p.p.pid):
        s.sendall(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        data = recv_all(s)
    s.close()
    assert data.startswith(b"HTTP/1.1 500 ") and b"cannot open the file" in data, data[:200]
    wait_until(lambda: "files: cannot open /f.txt: Too many open files" in p.log(),
               what="the reason in the log")
    s = connect(port)
    s.sendall(b"GET /f.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    assert recv_all(s).endswith(b"file body")
    s.close()


def test_max_connections_flag(wmproxy):
    """--max-connections on the command line (flags mode) caps the same way."""
    from conftest import proxy_args
    port = free_ports(1)[0]
    p = wmproxy(proxy_args(port, "--max-connections", "2", "--workers", "1"), port=port)
    held = [connect(port) for _ in range(2)]
    for s in held:  # a CONNECT head each: both taken
        s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(10)
        assert recv_all(s).startswith(b"HTTP/1.1 502")
    wait_until(lambda: "max_connections (2) reached" in p.log(), what="the pause line")
