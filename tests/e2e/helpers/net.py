"""Socket helpers with bounded waits."""

import contextlib
import random
import resource
import select
import socket
import threading
import time


# Ports for the tests' listeners come from below the kernel's ephemeral range
# (net.ipv4.ip_local_port_range, 32768-60999 by default), in turn from a
# random start: a port the kernel picked with bind(0) could meanwhile become
# the source port of some client connection, and the listener's bind then
# fails ("Address already in use").
_PORT_LO, _PORT_HI = 20000, 32767
_next_port = [_PORT_LO + random.randrange(_PORT_HI - _PORT_LO)]


def _bindable(port):
    """Is port free on 127.0.0.1 and ::1, for TCP and UDP, right now?"""
    for fam, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            s = socket.socket(fam, kind)
            try:
                if fam == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                s.bind((host, port))
            except OSError:
                return False
            finally:
                s.close()
    return True


def free_port(family=socket.AF_INET):
    """A port free on loopback right now (TCP and UDP, both families; the
    family argument is kept for callers), outside the ephemeral range, and
    not one this run handed out lately."""
    for _ in range(_PORT_HI - _PORT_LO):
        port = _next_port[0]
        _next_port[0] = port + 1 if port < _PORT_HI else _PORT_LO
        if _bindable(port):
            return port
    raise RuntimeError("no free port")


def free_ports(n):
    """n distinct free TCP ports."""
    out = []
    while len(out) < n:
        p = free_port()
        if p not in out:
            out.append(p)
    return out


def free_udp_port():
    """A UDP port free on loopback right now (see free_port)."""
    return free_port()


def wait_until(cond, timeout=10, step=0.05, what="condition"):
    """Poll cond() until it returns a true value, which is returned; after
    timeout seconds raise AssertionError naming what. Use it for every wait
    on a state: a fixed sleep is either too short under load or wasted."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(step)


def holds_during(cond, seconds, step=0.2, what="condition"):
    """Check cond() over a window of seconds (every step, and once more at
    its end), raising AssertionError naming what the first time it is
    false; returns how many checks passed. For a state that must last, as
    wait_until() is for a state to come."""
    deadline = time.monotonic() + seconds
    n = 0
    while True:
        if not cond():
            raise AssertionError("%s stopped holding after %d check(s)" % (what, n))
        n += 1
        if time.monotonic() >= deadline:
            return n
        time.sleep(min(step, max(0.0, deadline - time.monotonic())))


def wait_port(host, port, timeout, proc=None):
    deadline = time.time() + timeout
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(0.5)
        try:
            s.connect((host, port))
            s.close()
            return True
        except OSError:
            s.close()
            time.sleep(0.05)
    return False


def full_listener():
    """A listener on 127.0.0.1 whose accept queue is full, so that a new
    connection to it hangs (its SYNs are dropped): (listener, fillers)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(0)
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(srv.getsockname())
        fillers.append(c)
    # With a backlog of 0 the queue is full once one handshake is complete.
    wait_until(lambda: select.select([], fillers, [], 0)[1], 5, what="a full accept queue")
    return srv, fillers


def refused(port, host="127.0.0.1"):
    """True if a connection to port is refused (nothing listens there).
    A reset is not yet that: the probe sat in the backlog of a listener
    that was closing (one per worker), so poll again."""
    try:
        connect(port, host, timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True
    except ConnectionResetError:
        return False


def connect(port, host="127.0.0.1", timeout=10):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect((host, port))
    return s


def listen_local(backlog=1):
    """A listening TCP socket on 127.0.0.1, on a port the kernel picks."""
    lst = socket.socket()
    lst.bind(("127.0.0.1", 0))
    lst.listen(backlog)
    return lst


def serve_tcp(handler, backlog=64):
    """A TCP server on 127.0.0.1 calling handler(conn) for each connection
    in a thread of its own. Returns the listening socket: its port is
    getsockname()[1], closing it stops the server."""
    lst = listen_local(backlog)

    def loop():
        while True:
            try:
                c, _ = lst.accept()
            except OSError:
                return
            threading.Thread(target=handler, args=(c,), daemon=True).start()
    threading.Thread(target=loop, daemon=True).start()
    return lst


def recv_head(s):
    """Read byte by byte up to the end of an HTTP head (nothing beyond it)."""
    head = b""
    while b"\r\n\r\n" not in head:
        b = s.recv(1)
        if not b:
            raise EOFError("closed before the end of the head: %r" % head)
        head += b
    return head


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError("EOF after %d of %d bytes" % (len(buf), n))
        buf += b
    return bytes(buf)


def recv_until(s, marker, limit=1 << 20):
    buf = bytearray()
    while marker not in buf:
        b = s.recv(65536)
        if not b:
            raise EOFError("EOF before %r; got %r" % (marker, bytes(buf[:200])))
        buf += b
        if len(buf) > limit:
            raise ValueError("marker not found within limit")
    return bytes(buf)


def recv_all(s, limit=1 << 30):
    buf = bytearray()
    while True:
        b = s.recv(65536)
        if not b:
            return bytes(buf)
        buf += b
        if len(buf) > limit:
            raise ValueError("too much data")


def read_slowly(s, seconds, size, pause):
    """Behave as a slow reader for that long: recv up to size bytes, pause,
    again. The pause paces the client (it reads slower than the proxy
    sends), it waits for no state. Returns (bytes read, EOF came)."""
    got = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        b = s.recv(size)
        if not b:
            return got, True
        got += len(b)
        time.sleep(pause)
    return got, False


def is_closed(s, timeout=5):
    """True if the peer closes (EOF or reset) within timeout."""
    s.settimeout(timeout)
    try:
        while True:
            b = s.recv(65536)
            if not b:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


@contextlib.contextmanager
def no_free_fds(pid):
    """Within it, process pid can open no new descriptor (its soft
    RLIMIT_NOFILE is 0; those it has keep working); restored after."""
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (0, old[1]))
    try:
        yield
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
