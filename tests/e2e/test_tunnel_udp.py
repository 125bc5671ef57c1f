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
