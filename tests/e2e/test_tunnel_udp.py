"""UDP through the tunnel (mode = "udp", docs/tunnel.md "UDP mappings"): the
server publishes remote_port as a UDP port; each peer address gets a session
and a stream to the client node, whose datagrams reach local_addr and come
back; IPv4 sizes up to 65,507 bytes pass whole; sessions end on idle; a udp
mapping without a port is refused by the config check."""

import socket

from helpers.net import free_port, free_udp_port, wait_until
from helpers.stream import udp_echo
from helpers.tunnel import wait_log
from test_tunnel import Nodes  # noqa: F401 (the fixture's class)
from test_tunnel import nodes  # noqa: F401 (fixture)


def roundtrip(sock, port, payload, timeout=5):
    sock.settimeout(timeout)
    sock.sendto(payload, ("127.0.0.1", port))
    return sock.recvfrom(70000)[0]


def test_udp_mapping_sessions(nodes):  # noqa: F811
    up, stop, seen = udp_echo("127.0.0.1")
    pub = free_udp_port()
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "dns", "mode": "udp", "local_addr": "127.0.0.1:%d" % up, "remote_port": pub}])
    assert wait_log(srv, "public port udp:127.0.0.1:%d opened" % pub), srv.log()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
    # the first datagram of a session waits for its stream; retry until it opened
    for i, s in enumerate(socks):
        wait_until(lambda: _try(s, pub, b"hi %d" % i), timeout=10, what="udp session %d" % i)
        for size in (1, 1400, 20000, 65507):
            payload = bytes([65 + i]) * size
            assert roundtrip(s, pub, payload) == payload
    assert len(seen) == 3  # one local socket (source port) per visitor
    for s in socks:
        s.close()
    stop.set()
    assert "access proto=tunnel-udp" not in srv.log()  # sessions still open
    srv.stop()
    assert wait_log(cli, "access proto=tunnel-udp", count=3)


def _try(s, port, payload):
    try:
        return roundtrip(s, port, payload, timeout=0.5) == payload
    except socket.timeout:
        return False


def test_udp_mapping_needs_a_port(wmproxy, tmp_path):
    from helpers.tunnel import write_config
    import subprocess
    from conftest import BIN
    path = write_config(tmp_path / "c.toml", {"server": "127.0.0.1:%d" % free_port(),
                                              "username": "wm", "password": "s3cret"},
                        [{"name": "u", "mode": "udp", "local_addr": "127.0.0.1:53"}])
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "needs remote_port or bind" in (r.stdout + r.stderr)


def test_udp_mapping_flood_evicts_with_one_line_per_second(nodes):  # noqa: F811
    """More peers than the port's 1,024 sessions evict the least recently
    active ones, logged once per second with a count (it was a WARN line per
    evicted session, so a flood from many ports wrote one per datagram), and
    a live session keeps working."""
    import time
    up, stop, seen = udp_echo("127.0.0.1")
    pub = free_udp_port()
    srv = nodes.server()
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "dns", "mode": "udp", "local_addr": "127.0.0.1:%d" % up, "remote_port": pub}])
    assert wait_log(srv, "public port udp:127.0.0.1:%d opened" % pub), srv.log()
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(1300)]
    live = socks[0]
    wait_until(lambda: _try(live, pub, b"first"), timeout=10, what="the first session")
    t0 = time.monotonic()
    for i, s in enumerate(socks[1:]):  # 1,299 more peers, each answered: 276 evictions
        wait_until(lambda: _try(s, pub, b"x"), timeout=10, what="peer %d answered" % i)
        if i % 200 == 0:  # the live session stays among the most recently active
            assert _try(live, pub, b"keep")
    wait_until(lambda: srv.log().count("end=evicted") >= 276, timeout=10,
               what="the evictions' access lines")
    lines = srv.log().count("sessions, evicting")
    assert 1 <= lines <= 2 * (time.monotonic() - t0 + 2), lines
    assert "evicted in all" in srv.log()
    assert _try(live, pub, b"still here")
    for s in socks:
        s.close()
    stop.set()


def _udp_bind_mapping(name, bind):
    """A udp mapping as on the wire (REGISTER), with its own bind address."""
    import struct
    from test_tunnel import _s16
    return _s16(name) + bytes([5]) + _s16(b"") + b"\0\0" + _s16(bind) + _s16(b"") + \
        struct.pack(">H", 0)


def test_udp_port_cannot_be_shared_by_another_spelling(nodes):  # noqa: F811
    """A second client asking for the UDP port another holds, spelled
    differently ("127.0.0.1:0PORT", "localhost:PORT"), used to get it:
    the routing keys differed, and UDP ports are opened with SO_REUSEPORT,
    so the kernel split the first client's datagrams between the two. Now
    the address is compared as the kernel sees it, and a port held by any
    socket of ours is refused as in use, as for TCP."""
    from test_tunnel import _raw_attach, _raw_register
    up, stop, seen = udp_echo("127.0.0.1")
    pub = free_udp_port()
    srv = nodes.server()
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "dns", "mode": "udp", "local_addr": "127.0.0.1:%d" % up,
         "bind": "127.0.0.1:%d" % pub}])
    s = _raw_attach(srv.center, name=b"thief")
    for bind in (b"127.0.0.1:0%d" % pub, b"localhost:%d" % pub):
        got = _raw_register(s, [_udp_bind_mapping(b"steal", bind)])
        assert len(got) == 1 and got[0][0] == 0, got
        assert got[0][1].startswith("port udp:127.0.0.1:%d is already registered" % pub), got
        assert got[0][1].endswith('(mapping "dns")'), got
    # a UDP port some other socket of ours holds with SO_REUSEPORT
    held = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    held.bind(("127.0.0.1", 0))
    other = held.getsockname()[1]
    got = _raw_register(s, [_udp_bind_mapping(b"other", b"127.0.0.1:%d" % other)])
    assert got == [(0, "bind 127.0.0.1:%d: Address already in use" % other)], got
    held.close()
    s.close()
    # every datagram still reaches the first client's service
    v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wait_until(lambda: _try(v, pub, b"x"), timeout=10, what="udp session")
    for i in range(20):
        assert roundtrip(v, pub, b"d%d" % i) == b"d%d" % i
    v.close()
    stop.set()


def test_udp_mapping_local_addr_by_name(nodes):  # noqa: F811
    """local_addr may be a name: it is resolved without blocking the worker
    (evdns; /etc/hosts knows localhost), and one that does not resolve
    refuses its streams while the node's other mappings go on."""
    up, stop, seen = udp_echo("127.0.0.1")
    good, bad = free_udp_port(), free_udp_port()
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "byname", "mode": "udp", "local_addr": "localhost:%d" % up, "remote_port": good},
        {"name": "nowhere", "mode": "udp", "local_addr": "no-such-host.invalid:9",
         "remote_port": bad}])
    assert wait_log(srv, "public port udp:127.0.0.1:%d opened" % bad), srv.log()
    lost = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    lost.sendto(b"void", ("127.0.0.1", bad))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    wait_until(lambda: _try(s, good, b"hello"), timeout=10, what="udp session by name")
    assert roundtrip(s, good, b"x" * 1400) == b"x" * 1400
    assert wait_log(srv, "cannot resolve local_addr", timeout=20), srv.log()[-3000:]
    for x in (s, lost):
        x.close()
    stop.set()
    assert cli.alive()


def test_udp_mapping_local_service_down_is_logged(nodes):  # noqa: F811
    """Nothing listens at local_addr: the service's ICMP port unreachable
    is said on the client node (it went unlogged: the visitor's datagrams
    vanished without a word), once per second at most with a count, not a
    line per datagram; the session stays (local_addr is all there is)."""
    import time
    dead = free_udp_port()
    pub = free_udp_port()
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "dns", "mode": "udp", "local_addr": "127.0.0.1:%d" % dead, "remote_port": pub}])
    assert wait_log(srv, "public port udp:127.0.0.1:%d opened" % pub), srv.log()
    v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t0 = time.monotonic()

    def said():
        for _ in range(20):
            v.sendto(b"q" * 100, ("127.0.0.1", pub))
        return "Connection refused" in cli.log()
    wait_until(said, timeout=10, what="the local service's refusal in the client's log")
    for _ in range(200):
        v.sendto(b"q" * 100, ("127.0.0.1", pub))
    wait_until(lambda: "lost (" in cli.log(), timeout=10, what="the count")
    lines = cli.log().count("Connection refused")
    assert 1 <= lines <= 2 * (time.monotonic() - t0 + 2), cli.log()[-3000:]
    assert "access proto=tunnel-udp" not in cli.log()  # the session goes on
    v.close()
