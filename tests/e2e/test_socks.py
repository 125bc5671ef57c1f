"""SOCKS5 (CONNECT, UDP ASSOCIATE, user/password, IPv6) and SOCKS4/4a."""

import socket
import struct
import subprocess
import threading

import pytest

from conftest import proxy_args, sha256
from helpers import socks
from helpers.net import connect, free_port, free_udp_port, full_listener, is_closed, recv_exact, recv_head, wait_until
from helpers.origin import pattern, start_udp_echo


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "30"] + list(args), capture_output=True, timeout=40)


def test_curl_socks5_variants(proxy, origin):
    url = "http://127.0.0.1:%d/bytes/65536?seed=9" % origin.port
    for flag in ("--socks5", "--socks5-hostname"):
        r = curl(flag, "127.0.0.1:%d" % proxy, url)
        assert r.returncode == 0, r.stderr
        assert r.stdout == pattern(65536, 9)
    r = curl("--socks5-hostname", "127.0.0.1:%d" % proxy, "http://localhost:%d/bytes/10" % origin.port)
    assert r.stdout == pattern(10)


def test_socks5_auth(auth_proxy, origin):
    url = "http://127.0.0.1:%d/bytes/1000" % origin.port
    r = curl("--socks5", "alice:s3cret@127.0.0.1:%d" % auth_proxy, url)
    assert r.returncode == 0 and r.stdout == pattern(1000)
    r = curl("--socks5", "alice:nope@127.0.0.1:%d" % auth_proxy, url)
    assert r.returncode != 0
    # raw: wrong password -> 01 01, then close
    s, rep, st = socks.handshake(auth_proxy, "127.0.0.1", origin.port, "alice", "nope")
    assert rep is None and st == b"\x01\x01"
    assert is_closed(s)
    # only NO AUTH offered while credentials are configured -> 05 FF
    s = connect(auth_proxy)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\xff"
    assert is_closed(s)


def test_no_auth_server_refuses_userpass_only(proxy):
    s = connect(proxy)
    s.sendall(b"\x05\x01\x02")
    assert recv_exact(s, 2) == b"\x05\xff"


def test_early_data_after_request(proxy, echo):
    # greeting + request + payload in one packet: nothing may be lost
    s, rep, _ = socks.handshake(proxy, "127.0.0.1", echo.port, early=b"early-bytes")
    assert rep == 0
    assert recv_exact(s, 11) == b"early-bytes"
    s.sendall(b"more")
    assert recv_exact(s, 4) == b"more"
    s.shutdown(socket.SHUT_WR)  # half-close reaches the target ...
    digest = recv_exact(s, 64).decode()
    assert digest == sha256(b"early-bytesmore")  # ... which still answers after EOF
    assert is_closed(s)


def test_large_early_data_while_dialing(proxy, echo):
    # a client that does not wait for any reply and streams 300 KB right
    # behind its request: read ahead during the dial is bounded, nothing is
    # lost and the handshake limit does not apply to it
    payload = pattern(300 * 1024, seed=7)
    s = connect(proxy)
    head = b"\x05\x01\x00" + b"\x05\x01\x00" + socks.addr_bytes("127.0.0.1", echo.port)
    t = threading.Thread(target=lambda: (s.sendall(head + payload), s.shutdown(socket.SHUT_WR)))
    t.start()
    assert recv_exact(s, 2) == b"\x05\x00"
    rep, _ = socks.read_reply(s)
    assert rep == 0
    assert recv_exact(s, len(payload)) == payload
    assert recv_exact(s, 64).decode() == sha256(payload)
    t.join(10)
    assert is_closed(s)


@pytest.mark.parametrize("version", [5, 4])
def test_half_close_right_after_pipelined_request(proxy, echo, version):
    # request, data and FIN in one go, before the proxy's dial completes:
    # the data still reaches the target and the FIN follows it
    payload = b"early bytes then EOF"
    s = connect(proxy)
    if version == 5:
        head = b"\x05\x01\x00" + b"\x05\x01\x00" + socks.addr_bytes("127.0.0.1", echo.port)
    else:
        head = b"\x04\x01" + struct.pack(">H", echo.port) + bytes([127, 0, 0, 1]) + b"u\x00"
    s.sendall(head + payload)
    s.shutdown(socket.SHUT_WR)
    if version == 5:
        assert recv_exact(s, 2) == b"\x05\x00"
        rep, _ = socks.read_reply(s)
        assert rep == 0
    else:
        assert recv_exact(s, 8)[:2] == b"\x00\x5a"
    assert recv_exact(s, len(payload)) == payload
    assert recv_exact(s, 64).decode() == sha256(payload)
    assert is_closed(s)


def test_split_request_gets_method_reply_first(proxy, echo):
    # greeting + the first bytes of the request, then the client waits for
    # the method reply before sending the rest: it must not wait forever
    req = b"\x05\x01\x00" + socks.addr_bytes("127.0.0.1", echo.port)
    s = connect(proxy)
    s.settimeout(3)
    s.sendall(b"\x05\x01\x00" + req[:3])
    assert recv_exact(s, 2) == b"\x05\x00"
    s.sendall(req[3:])
    rep, _ = socks.read_reply(s)
    assert rep == 0


@pytest.mark.parametrize("target,code", [
    ("refused", 5),
    ("no-such-host.invalid", 4),
])
def test_reply_codes(proxy, target, code):
    if target == "refused":
        s, rep, _ = socks.handshake(proxy, "127.0.0.1", free_port())
    else:
        s, rep, _ = socks.handshake(proxy, target, 80)
    assert rep == code
    assert is_closed(s)


def test_failed_dial_access_line_end_is_one_token(wmproxy):
    """README, Logs: key=value fields, end= one word (`closed`, `idle`,
    ...). A SOCKS dial that failed wrote end=connection refused, whose
    second word a log parser takes for a field of its own."""
    port = free_port()
    p = wmproxy(proxy_args(port), port=port)
    dead = free_port()
    s, rep, _ = socks.handshake(port, "127.0.0.1", dead)
    assert rep == 5
    s.close()
    s = connect(port)
    s.sendall(b"\x04\x01" + struct.pack(">H", dead) + b"\x7f\x00\x00\x01u\x00")
    assert s.recv(8)[:2] == b"\x00\x5b"
    s.close()
    for proto in ("socks5", "socks4"):
        line = "access proto=%s client=" % proto
        wait_until(lambda: line in p.log(), what="the %s access line" % proto)
        got = [x for x in p.log().splitlines() if line in x][0]
        assert got.endswith(" end=connection-refused"), got


def test_names_too_long_for_dns_fail_at_once(wmproxy):
    # over 253 bytes (254 with its root dot), or a label over 63 bytes: no
    # DNS name, so "does not resolve" at once (4, 502), never a query that
    # waits out the connect timeout (6, 504) for an answer that may not come
    proxy = free_port()
    wmproxy(proxy_args(proxy, "--connect-timeout", "3"), port=proxy)
    for name in ("a." * 126 + "aa", "a." * 127 + "a", "b" * 64 + ".test"):
        s, rep, _ = socks.handshake(proxy, name, 80)
        assert rep == 4, (len(name), rep)
        s.close()
        s = connect(proxy)
        s.sendall(b"CONNECT %s:80 HTTP/1.1\r\n\r\n" % name.encode())
        assert recv_head(s).startswith(b"HTTP/1.1 502"), len(name)
        s.close()


def test_reply_timeout_6(wmproxy):
    srv, fillers = full_listener()
    port = free_port()
    wmproxy(proxy_args(port, "--connect-timeout", "1"), port=port)
    s, rep, _ = socks.handshake(port, "127.0.0.1", srv.getsockname()[1])
    assert rep == 6
    srv.close()
    for c in fillers:
        c.close()


def test_bind_unsupported_7_and_bad_atyp_8(proxy):
    s, rep, _ = socks.handshake(proxy, "127.0.0.1", 80, cmd=2)
    assert rep == 7
    s = connect(proxy)
    s.sendall(b"\x05\x01\x00\x05\x01\x00\x09\x01\x02\x03\x04\x00\x50")
    assert recv_exact(s, 2) == b"\x05\x00"
    rep, _ = socks.read_reply(s)
    assert rep == 8
    assert is_closed(s)


def test_malformed_handshakes_closed(proxy, origin):
    for raw in (b"\x05\x00", b"\x05\x01\x00\x04\x01\x00\x01", b"\x05" + b"\xff" * 2000):
        s = connect(proxy)
        s.sendall(raw)
        assert is_closed(s)
    # the proxy keeps serving
    r = curl("--socks5", "127.0.0.1:%d" % proxy, "http://127.0.0.1:%d/bytes/10" % origin.port)
    assert r.stdout == pattern(10)


def test_ipv6_target_and_listener(wmproxy, origin6):
    port = free_port()
    wmproxy(["proxy", "-b", "[::1]:%d" % port, "--disable-control"], port=port, host="::1")
    s, rep, bound = socks.handshake(port, "::1", origin6.port, proxy_host="::1")
    assert rep == 0 and ":" in bound[0]
    s.sendall(b"GET /bytes/3000 HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    assert data.endswith(pattern(3000))


def test_udp_associate(proxy):
    u = start_udp_echo("127.0.0.1")
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(3)
        s, rep, relay = socks.handshake(proxy, "0.0.0.0", 0, cmd=3)
        assert rep == 0 and relay[0] == "127.0.0.1" and relay[1] > 0
        for i, payload in enumerate((b"one", b"x" * 8000, b"")):
            c.sendto(socks.udp_header("127.0.0.1", u.port) + payload, relay)
            data, src = c.recvfrom(65535)
            assert src == relay
            host, port, body = socks.parse_udp(data)
            assert (host, port) == ("127.0.0.1", u.port)
            assert body == b"echo:" + payload
        # domain-name target
        c.sendto(socks.udp_header("localhost", u.port) + b"named", relay)
        host, port, body = socks.parse_udp(c.recvfrom(65535)[0])
        assert body == b"echo:named"
        # fragmented datagrams are dropped
        c.sendto(b"\x00\x00\x01" + socks.udp_header("127.0.0.1", u.port)[3:] + b"frag", relay)
        with pytest.raises(socket.timeout):
            c.settimeout(0.5)
            c.recvfrom(65535)
        # another port of the same host is not the client: ignored
        other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other.bind(("127.0.0.1", 0))
        other.settimeout(0.5)
        other.sendto(socks.udp_header("127.0.0.1", u.port) + b"intruder", relay)
        with pytest.raises(socket.timeout):
            other.recvfrom(65535)
        # the association ends with its TCP connection
        s.close()

        def relay_gone():
            c.setblocking(False)
            try:
                while True:  # answers to earlier probes
                    c.recvfrom(65535)
            except (BlockingIOError, ConnectionRefusedError):
                pass
            c.settimeout(0.5)
            c.sendto(socks.udp_header("127.0.0.1", u.port) + b"after", relay)
            try:
                c.recvfrom(65535)
                return False
            except (socket.timeout, ConnectionRefusedError):
                return True
        wait_until(relay_gone, 10, what="the UDP relay to close")
    finally:
        u.close()


def test_udp_malformed_first_datagram_does_not_take_the_association(proxy):
    """With DST.PORT 0 the relay learns the client's port from its first
    datagram; a malformed one from another program on the client's host
    (or behind the same NAT) took the association, and the client's own
    datagrams were then ignored. Only a well-formed datagram fixes it now."""
    u = start_udp_echo("127.0.0.1")
    try:
        s, rep, relay = socks.handshake(proxy, "0.0.0.0", 0, cmd=3)
        assert rep == 0
        stray = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        stray.bind(("127.0.0.1", 0))
        for junk in (b"junk", b"\x00\x00\x05", b"\x00\x00\x01\x01"):
            stray.sendto(junk, relay)
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(3)
        c.sendto(socks.udp_header("127.0.0.1", u.port) + b"mine", relay)
        assert socks.parse_udp(c.recvfrom(65535)[0])[2] == b"echo:mine"
        s.close()
    finally:
        u.close()


def test_udp_reply_too_large_for_the_client_is_logged(wmproxy):
    """A reply that cannot reach the client in one datagram once the SOCKS
    header is in front (65,502 bytes to an IPv4 client: 10 more make it
    over 65,507) is dropped, as it must be, but it was dropped without a
    word; now the first of an association is logged, and the association
    goes on."""
    port = free_port()
    p = wmproxy(proxy_args(port), port=port)
    u = start_udp_echo("127.0.0.1")
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(0.5)
        s, rep, relay = socks.handshake(port, "0.0.0.0", 0, cmd=3)
        assert rep == 0
        hdr = socks.udp_header("127.0.0.1", u.port)
        for _ in range(3):  # the echo's answer is 5 bytes longer: too large
            c.sendto(hdr + b"b" * (65507 - len(hdr)), relay)
        wait_until(lambda: "does not fit" in p.log(), 10, what="the too-large reply's line")
        c.settimeout(3)
        c.sendto(hdr + b"small", relay)
        # the too-large replies never come: the first to arrive is this one's
        assert socks.parse_udp(c.recvfrom(70000)[0])[2] == b"echo:small"
        assert p.log().count("does not fit") == 1, p.log()[-3000:]
        s.close()
    finally:
        u.close()


def test_udp_associate_with_auth(auth_proxy):
    u = start_udp_echo("127.0.0.1")
    try:
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(3)
        s, rep, relay = socks.handshake(auth_proxy, "127.0.0.1", c.getsockname()[1], "alice", "s3cret", cmd=3)
        assert rep == 0
        c.sendto(socks.udp_header("127.0.0.1", u.port) + b"hi", relay)
        assert socks.parse_udp(c.recvfrom(65535)[0])[2] == b"echo:hi"
        s.close()
    finally:
        u.close()


def test_socks4_and_4a(proxy, auth_proxy, origin):
    url = "http://127.0.0.1:%d/bytes/500" % origin.port
    assert curl("--socks4", "127.0.0.1:%d" % proxy, url).stdout == pattern(500)
    assert curl("--socks4a", "127.0.0.1:%d" % proxy, "http://localhost:%d/bytes/5" % origin.port).stdout == pattern(5)
    # SOCKS4 cannot carry a password: refused with 5B, never a hang
    s = connect(auth_proxy)
    s.sendall(b"\x04\x01" + struct.pack("!H", origin.port) + socket.inet_aton("127.0.0.1") + b"alice\x00")
    assert recv_exact(s, 8)[:2] == b"\x00\x5b"
    assert is_closed(s)
    # malformed SOCKS4 gets the failure reply too
    s = connect(proxy)
    s.sendall(b"\x04\x01\x00\x50\x00\x00\x00\x01" + b"u" * 300)
    assert recv_exact(s, 8)[:2] == b"\x00\x5b"
