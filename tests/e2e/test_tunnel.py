"""Tunnel: two-level proxy and intranet penetration over one multiplexed
carrier (docs/tunnel.md), with plain, TLS and mutual TLS carriers."""

import base64
import json
import os
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time

import pytest

from conftest import BIN, sha256
from helpers import http1, socks
from helpers.net import connect, free_port, is_closed, listen_local, recv_exact, wait_port, wait_until
from helpers.origin import pattern, pattern_sha256
from helpers.tunnel import make_certs, wait_log, write_config

CRED = {"username": "wm", "password": "s3cret"}


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


class Nodes:
    """Start server/client nodes from configs; ports chosen here."""

    def __init__(self, wmproxy, tmp_path):
        self.wmproxy = wmproxy
        self.tmp = tmp_path
        self.n = 0

    def start(self, proxy, mappings=(), wait_port_of="bind_addr", top=None, **kw):
        self.n += 1
        path = write_config(self.tmp / ("node%d.toml" % self.n), proxy, mappings,
                            top=top or {"disable_control": True})
        addr = proxy.get(wait_port_of) or proxy.get("center_addr")
        port = int(addr.rsplit(":", 1)[1])
        return self.wmproxy(["run", "-c", path, "--workers", "2", "--grace", "2"], port=port, **kw)

    def server(self, tls=None, extra=None, center=True, env=None, top=None):
        cp = free_port()
        p = {"bind_addr": "127.0.0.1:%d" % cp, "mode": "server"}
        p.update(CRED)
        if tls:
            p.update(tls)
        if extra:
            p.update(extra)
        proc = self.start(p, env=env, top=top)
        proc.center = "127.0.0.1:%d" % cp
        return proc

    def client(self, server, mappings=(), tls=None, extra=None, creds=CRED, attach=True,
               srv_proc=None, env=None):
        ep = free_port()
        p = {"bind_addr": "127.0.0.1:%d" % ep, "server": server}
        if creds:
            p.update(creds)
        if tls:
            p.update(tls)
        if extra:
            p.update(extra)
        before = srv_proc.log().count("attached") if srv_proc is not None else 0
        proc = self.start(p, mappings, env=env)
        proc.entry = ep
        if attach and srv_proc is not None:
            assert wait_log(srv_proc, "attached", count=before + 1), proc.log()
        if attach:
            # the server logs "attached" as it answers REGISTER: the client
            # is connected only once that answer arrived
            assert wait_log(proc, "tunnel: connected"), proc.log()
        return proc


@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


def tls_server(certs, mtls=False):
    t = {"tc": True, "cert": certs["srv.pem"], "key": certs["srv.key"]}
    if mtls:
        t.update({"two_way_tls": True, "ca": certs["ca.pem"]})
    return t


def tls_client(certs, mtls=False, rogue=False):
    t = {"ts": True, "ca": certs["ca.pem"]}
    if mtls:
        t["two_way_tls"] = True
        t["cert"] = certs["rogue.pem" if rogue else "cli.pem"]
        t["key"] = certs["rogue.key" if rogue else "cli.key"]
    return t


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), capture_output=True,
                          timeout=30)


def http_get(port, path, host, hdrs=()):
    s = connect(port)
    s.sendall(http1.request("GET", path, [("Host", host)] + list(hdrs)))
    r = http1.Reader(s).response()
    s.close()
    return r


# ---- two-level proxy ----

@pytest.mark.parametrize("mode", ["plain", "tls", "mtls"])
def test_two_level_proxy(nodes, origin, certs, mode):
    srv = nodes.server(tls=None if mode == "plain" else tls_server(certs, mode == "mtls"))
    cli = nodes.client(srv.center, tls=None if mode == "plain" else tls_client(certs, mode == "mtls"),
                       srv_proc=srv)
    url = "http://127.0.0.1:%d/bytes/300000?seed=4" % origin.port
    # HTTP, CONNECT and SOCKS5 are parsed by the server node, with its credentials
    for args in (["-x", "http://wm:s3cret@127.0.0.1:%d" % cli.entry],
                 ["-p", "-x", "http://wm:s3cret@127.0.0.1:%d" % cli.entry],
                 ["--socks5", "wm:s3cret@127.0.0.1:%d" % cli.entry]):
        r = curl(*(args + [url]))
        assert r.returncode == 0, (args, r.stderr, srv.log()[-2000:])
        assert r.stdout == pattern(300000, 4)
    # without credentials the server answers 407
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", "http://127.0.0.1:%d" % cli.entry, url)
    assert r.stdout == b"407"
    # the carrier's records are OpenSSL's TLS records
    transport = "plain" if mode == "plain" else "TLS"
    assert wait_log(srv, "attached (%s)" % transport), srv.log()[-3000:]
    assert wait_log(cli, "(%s), " % transport), cli.log()


def test_openssl_records_key_is_ignored(nodes, echo, certs):
    # Our previous release sealed the carrier's records itself unless
    # `openssl_records = true`; configs written for it still load, with one
    # warning each, and the carrier is TLS with OpenSSL's records as always.
    tp = free_port()
    srv = nodes.server(tls=tls_server(certs), extra={"map_tcp_bind": "127.0.0.1:%d" % tp,
                                                     "openssl_records": True})
    cli = nodes.client(srv.center, tls=tls_client(certs), srv_proc=srv,
                       extra={"openssl_records": False},
                       mappings=[{"name": "t", "mode": "tcp",
                                  "local_addr": "127.0.0.1:%d" % echo.port}])
    for p in (srv, cli):
        assert p.log().count("proxy.openssl_records: ignored") == 1, p.log()
    assert wait_log(srv, "attached (TLS)"), srv.log()[-3000:]
    assert wait_log(cli, "(TLS), "), cli.log()
    assert wait_port("127.0.0.1", tp, 5)
    data = os.urandom(3 * 1024 * 1024)
    s = connect(tp)
    w = threading.Thread(target=lambda: (s.sendall(data), s.shutdown(socket.SHUT_WR)))
    w.start()
    assert recv_exact(s, len(data)) == data
    w.join()
    assert recv_exact(s, 64).decode() == sha256(data)
    s.close()


def test_chain_of_three(nodes, origin):
    top = nodes.server()
    mid_center = free_port()
    mid = nodes.start({"bind_addr": "127.0.0.1:%d" % free_port(), "server": top.center,
                       "center_addr": "127.0.0.1:%d" % mid_center, **CRED},
                      wait_port_of="center_addr")
    assert wait_log(mid, "tunnel: connected")
    low = nodes.client("127.0.0.1:%d" % mid_center, srv_proc=mid)
    r = curl("-x", "http://wm:s3cret@127.0.0.1:%d" % low.entry,
             "http://127.0.0.1:%d/bytes/1000" % origin.port)
    assert r.returncode == 0 and r.stdout == pattern(1000)
    assert wait_log(top, "access proto=http"), top.log()  # parsed at the top node


def test_flags_mode(wmproxy, origin, certs):
    sp, cp = free_port(), free_port()
    srv = wmproxy(["proxy", "-b", "127.0.0.1:%d" % sp, "--tc", "--cert", certs["srv.pem"],
                   "--key", certs["srv.key"], "--disable-control"], port=sp)
    cli = wmproxy(["proxy", "-b", "127.0.0.1:%d" % cp, "-S", "127.0.0.1:%d" % sp, "--ts",
                   "--ca", certs["ca.pem"], "--disable-control"], port=cp)
    assert wait_log(cli, "tunnel: connected")
    r = curl("--socks5-hostname", "127.0.0.1:%d" % cp, "http://localhost:%d/bytes/77" % origin.port)
    assert r.returncode == 0 and r.stdout == pattern(77)
    assert srv.alive()


# ---- refusals ----

def test_wrong_credentials_refused(nodes):
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % free_port()})
    cli = nodes.client(srv.center, creds={"username": "wm", "password": "nope"}, attach=False,
                       mappings=[{"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:1"}])
    assert wait_log(srv, "refused: wrong credentials"), srv.log()
    assert wait_log(cli, "the server refused us: wrong credentials"), cli.log()
    assert "registered mapping" not in srv.log()
    # without credentials: attached for the two-level proxy only, its mapping
    # refused (tests/e2e/test_tunnel_quickstart.py)
    cli2 = nodes.client(srv.center, creds=None, attach=False,
                        mappings=[{"name": "t2", "mode": "tcp", "local_addr": "127.0.0.1:1"}])
    assert wait_log(srv, 'mapping "t2" refused: this client presented no credentials'), srv.log()
    assert wait_log(cli2, "no credentials"), cli2.log()
    assert "registered mapping" not in srv.log()


def test_tls_mismatches_refused(nodes, certs):
    tls_srv = nodes.server(tls=tls_server(certs))
    # a plain-TCP client on the TLS port
    cli = nodes.client(tls_srv.center, attach=False)
    assert wait_log(tls_srv, "tls 127.0.0.1"), tls_srv.log()
    assert "attached" not in tls_srv.log()
    # a TLS client on a plain port
    plain_srv = nodes.server()
    nodes.client(plain_srv.center, tls=tls_client(certs), attach=False)
    assert wait_log(plain_srv, "TLS client on a plain-TCP tunnel port"), plain_srv.log()
    # a client that does not trust the server's certificate
    rogue = nodes.client(tls_srv.center, tls={"ts": True, "ca": certs["rogue-ca.pem"]},
                         attach=False)
    assert wait_log(rogue, "certificate verify failed"), rogue.log()
    assert "attached" not in tls_srv.log()
    cli.stop()


def test_reset_during_tls_handshake_keeps_serving(nodes, certs):
    # a broken ClientHello, then a reset before the alert can be written:
    # the failed alert write must not end the pump twice (it crashed)
    srv = nodes.server(tls=tls_server(certs))
    port = int(srv.center.rsplit(":", 1)[1])
    for _ in range(5):
        s = connect(port)
        s.sendall(bytes.fromhex("160301000401000000"))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    assert wait_log(srv, "refused: ", count=5), srv.log()
    nodes.client(srv.center, srv_proc=srv, tls=tls_client(certs))  # still serving


def test_mtls_requires_a_good_client_certificate(nodes, certs):
    srv = nodes.server(tls=tls_server(certs, mtls=True))
    bare = nodes.client(srv.center, tls=tls_client(certs), attach=False)  # no certificate
    rogue = nodes.client(srv.center, tls=tls_client(certs, mtls=True, rogue=True), attach=False)
    assert wait_log(srv, "handshake failed", count=2, timeout=10), srv.log()
    # the clients learn why too (TLS 1.3: by an alert after their handshake)
    assert wait_log(bare, "refused by the server: ", timeout=10), bare.log()
    assert wait_log(rogue, "refused by the server: ", timeout=10), rogue.log()
    assert "attached" not in srv.log()
    # the TLS line and the carrier's refusal line name the same connection
    ids = lambda text: {ln.split()[2] for ln in srv.log().splitlines() if text in ln}
    assert wait_until(lambda: ids("refused") and ids("handshake failed") <= ids("refused")), \
        srv.log()
    nodes.client(srv.center, tls=tls_client(certs, mtls=True), srv_proc=srv)


def test_wrong_version_and_garbage_refused(nodes):
    srv = nodes.server()
    port = int(srv.center.rsplit(":", 1)[1])
    s = connect(port)
    s.sendall(b"WMTUN/2\n")
    data = s.recv(4096)
    assert b"unsupported protocol version" in data
    assert is_closed(s)
    for junk in (b"GET / HTTP/1.1\r\n\r\n", b"WMTUN/1\n" + b"\xff" * 20, b"\x00" * 100):
        s = connect(port)
        s.sendall(junk)
        assert is_closed(s)
    assert wait_log(srv, "unsupported protocol version")
    assert wait_log(srv, "not a wmproxy tunnel client")
    assert "attached" not in srv.log()



def _frame(typ, payload=b"", sid=0):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, 0]) + struct.pack(">I", sid) + payload


def _read_frame(s):
    hdr = recv_exact(s, 9)
    n = struct.unpack(">I", b"\0" + hdr[:3])[0]
    return hdr[3], recv_exact(s, n) if n else b""


def _s16(b):
    return struct.pack(">H", len(b)) + b


def _raw_attach(center, name=b"raw"):
    """A tunnel client spoken by hand (plain carrier): preface, HELLO, AUTH
    with the HMAC of docs/tunnel.md. Returns the socket, ready for REGISTER."""
    import hashlib
    import hmac
    s = connect(int(center.rsplit(":", 1)[1]))
    s.sendall(b"WMTUN/1\n" + _frame(0x10, bytes([2]) + struct.pack(">I", 65536) + _s16(name)))
    typ, ch = _read_frame(s)
    assert typ == 0x11 and ch[32] == 1  # flags: credentials, plain carrier (no binding)
    nonce_s, nonce_c = ch[:32], os.urandom(32)
    user, pw = CRED["username"].encode(), CRED["password"].encode()
    mac = hmac.new(pw, b"wmtun/2 client" + nonce_s + nonce_c + user, hashlib.sha256).digest()
    s.sendall(_frame(0x12, nonce_c + _s16(user) + mac))
    typ, res = _read_frame(s)
    assert typ == 0x13 and res[0] == 1, res
    return s


def _raw_mapping(name, mode, domain=b"", group=b"", rules=()):
    """rules: (request 0/1, op byte, name, value) as on the wire."""
    out = _s16(name) + bytes([mode]) + _s16(domain) + b"\0\0" + _s16(b"") + _s16(group)
    out += struct.pack(">H", len(rules))
    for req, op, k, v in rules:
        out += bytes([req]) + op + _s16(k) + _s16(v)
    return out


def _raw_register(s, maps):
    """REGISTER maps; returns [(ok, reason)] from REGISTER_RESULT."""
    s.sendall(_frame(0x14, struct.pack(">H", len(maps)) + b"".join(maps)))
    typ, rr = _read_frame(s)
    assert typ == 0x15
    n, off, got = struct.unpack(">H", rr[:2])[0], 2, []
    for _ in range(n):
        ok, ln = rr[off], struct.unpack(">H", rr[off + 1:off + 3])[0]
        got.append((ok, rr[off + 3:off + 3 + ln].decode()))
        off += 3 + ln
    return got


def test_server_refuses_names_it_would_have_to_cut(nodes):
    """A client (not ours: ours checks its config) announcing a mapping
    name or group over 63 bytes or a domain over 253 gets that mapping
    refused with a reason; the server used to cut them, so streams were
    opened for a name the client does not know and groups compared on a
    prefix. Header rules with CR/LF/NUL (response splitting on the public
    port) or no valid header name are refused the same way, and so are
    names and groups with control characters."""
    srv = nodes.server()
    s = _raw_attach(srv.center)
    mapping = _raw_mapping
    maps = [mapping(b"n" * 64, 1, b"a.test"), mapping(b"ok", 1, b"ok.test"),
            mapping(b"g", 1, b"g.test", b"x" * 64), mapping(b"d", 1, b"d" * 250 + b".test"),
            mapping(b"n" * 63, 1, b"fits.test", b"y" * 63),
            # header rules that would split responses or name no header
            mapping(b"crlf", 1, b"c.test", rules=[(0, b"+", b"x-a", b"1\r\n\r\nHTTP/1.1 200 OK")]),
            mapping(b"nul", 1, b"n.test", rules=[(1, b"=", b"\0x", b"v")]),
            mapping(b"fine", 1, b"f.test", rules=[(1, b"+", b"x-a", b"tab\tok \xc3\xa9")]),
            # fields of the route tables and the cluster's records are tab-separated
            mapping(b"a\tb", 1, b"t.test"), mapping(b"nl", 1, b"l.test", b"g\nh")]
    got = _raw_register(s, maps)
    assert [ok for ok, _ in got] == [0, 1, 0, 0, 1, 0, 0, 1, 0, 0], got
    assert "longer than 63 bytes" in got[0][1] and "253" in got[3][1], got
    assert "control character" in got[5][1] and "invalid header" in got[6][1], got
    assert "name or group with a control character" in got[8][1] == got[9][1], got
    s.close()



def test_status_json_stays_valid_with_any_client_name(nodes, tmp_path):
    """/status lists attached clients and their mappings by the names they
    announce; a mapping name with a quote and a byte that is not UTF-8 still
    gives valid JSON (U+FFFD for the bad byte; it used to go out raw, and the
    whole answer was not UTF-8). Control characters are refused at REGISTER
    (test_server_refuses_names_it_would_have_to_cut)."""
    from helpers import control as ctl
    cport, cp = free_port(), free_port()
    path = write_config(tmp_path / "srv.toml", dict(bind_addr="127.0.0.1:%d" % cp, mode="server",
                                                   **CRED), top={"control": "127.0.0.1:%d" % cport})
    nodes.wmproxy(["run", "-c", path], port=cp)
    s = _raw_attach("127.0.0.1:%d" % cp, name=b'ev"il\x01\xff\xc3(name')
    assert _raw_register(s, [_raw_mapping(b'w"e\xffb', 1, b"Web.Test")]) == [(1, "")]
    code, _, doc = ctl.api(cport, "GET", "/status")
    assert code == 200 and isinstance(doc, dict), doc  # bytes: not valid UTF-8 JSON
    clients = doc["tunnel"]["clients"]
    # the handshake already keeps client names printable ASCII
    assert len(clients) == 1 and clients[0]["name"] == "ev?il???(name"
    assert clients[0]["transport"] == "plain"
    assert clients[0]["mappings"] == [{"name": 'w"e\ufffdb', "route": "web.test"}]
    s.close()


def _ping_unread(s, limit):
    """Send PINGs and read none of the answers, until the server stops
    taking them (a send blocked for 2 s) or limit bytes went. Returns the
    bytes sent (the last PING may be cut)."""
    s.settimeout(2)
    chunk = _frame(0x05, b"\0" * 8) * 4096
    sent = 0
    while sent < limit:
        try:
            sent += s.send(chunk[sent % len(chunk):])
        except socket.timeout:
            break
    return sent


def test_a_client_that_reads_nothing_is_not_buffered_for(nodes):
    """A client that sends PINGs (OPENs, RSTs...) and reads none of the
    answers: the server used to queue every answer, 2.5 GB of memory in 20
    s from one carrier. Now it stops reading that carrier once 1 MiB waits
    for it and goes on when the client reads: no answer is lost. A client
    that never reads is closed after heartbeat_timeout, saying why."""
    srv = nodes.server()
    s = _raw_attach(srv.center)
    assert _raw_register(s, []) == []
    limit = 64 << 20
    sent = _ping_unread(s, limit)
    assert sent < limit, "the server took 64 MB of PINGs without its answers being read"
    # finish the cut PING once the server reads again, and read every answer
    rest = (-sent) % 17
    t = threading.Thread(target=lambda: s.sendall(b"\0" * rest), daemon=True)
    t.start()
    s.settimeout(20)
    acks, want = 0, (sent + rest) // 17
    while acks < want:  # the server's own heartbeat PINGs may come between
        hdr = recv_exact(s, 9)
        body = recv_exact(s, 8)
        assert hdr[:4] == b"\0\0\x08\x05", hdr
        acks += hdr[4] == 1
        assert hdr[4] == 0 or body == b"\0" * 8, body
    t.join(10)
    s.sendall(_frame(0x05, b"12345678"))
    while True:
        hdr = recv_exact(s, 9)
        if recv_exact(s, 8) == b"12345678" and hdr[4] == 1:
            break
    s.close()

    hb = {"heartbeat_interval": "1s", "heartbeat_timeout": "3s"}
    srv2 = nodes.server(extra=hb)
    s = _raw_attach(srv2.center, name=b"deaf")
    assert _raw_register(s, []) == []
    assert _ping_unread(s, limit) < limit
    assert wait_log(srv2, "detached: the peer stopped reading", timeout=20), srv2.log()[-2000:]
    s.close()


def test_an_open_the_client_never_answers_times_out(nodes):
    """A client (stuck, or hostile) that registers mappings, answers PINGs
    but never answers the OPEN of a stream: the public visitor used to wait
    as long as the carrier lived (its socket held on the server). Now the
    stream is reset after connect_timeout + heartbeat_timeout: an HTTP
    visitor gets 504, a TCP one is closed, the server says why."""
    tp, hp = free_port(), free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp,
                              "map_http_bind": "127.0.0.1:%d" % hp, "connect_timeout": "1s",
                              "heartbeat_interval": "1s", "heartbeat_timeout": "3s"})
    s = _raw_attach(srv.center)
    assert _raw_register(s, [_raw_mapping(b"t", 3), _raw_mapping(b"w", 1, b"w.test")]) == \
        [(1, ""), (1, "")]
    v = connect(tp)
    v.sendall(b"hello")
    h = connect(hp)
    h.sendall(b"GET / HTTP/1.1\r\nHost: w.test\r\n\r\n")
    opened, reset = [], {}
    s.settimeout(1)
    deadline = time.time() + 20
    while len(reset) < 2 and time.time() < deadline:
        try:
            hdr = recv_exact(s, 9)
        except socket.timeout:
            continue
        n, typ, sid = struct.unpack(">I", b"\0" + hdr[:3])[0], hdr[3], struct.unpack(">I", hdr[5:])[0]
        payload = recv_exact(s, n) if n else b""
        if typ == 0x05 and hdr[4] == 0:  # stay alive: answer the server's PINGs
            s.sendall(hdr[:4] + b"\x01" + hdr[5:] + payload)
        elif typ == 0x01:
            opened.append(sid)
        elif typ == 0x03:
            reset[sid] = struct.unpack(">I", payload[:4])[0]  # code 4: timeout
    assert len(opened) == 2 and reset == {sid: 4 for sid in opened}, (opened, reset, srv.log())
    h.settimeout(10)
    r = http1.Reader(h).response()
    assert r.status == 504, r
    assert is_closed(v)
    assert wait_log(srv, "did not answer its OPEN in 4 s", count=2), srv.log()
    assert wait_log(srv, "code=504") and wait_log(srv, "end=timeout"), srv.log()
    s.close()


def _fake_server_handshake(ls):
    """Be the tunnel server (plain carrier, CRED) for the client that
    connects to listening socket ls; returns its carrier once registered."""
    import hashlib
    import hmac
    c, _ = ls.accept()
    c.settimeout(10)
    assert recv_exact(c, 8) == b"WMTUN/1\n"
    _read_frame(c)  # HELLO
    nonce_s = os.urandom(32)
    c.sendall(_frame(0x11, nonce_s + b"\x01" + struct.pack(">I", 65536)))
    typ, auth = _read_frame(c)
    user, pw = CRED["username"].encode(), CRED["password"].encode()
    mac = hmac.new(pw, b"wmtun/2 server" + auth[:32] + nonce_s + user, hashlib.sha256).digest()
    c.sendall(_frame(0x13, b"\x01" + mac + _s16(b"")))
    typ, reg = _read_frame(c)
    assert typ == 0x14, typ
    n = struct.unpack(">H", reg[:2])[0]
    c.sendall(_frame(0x15, struct.pack(">H", n) + (b"\x01" + _s16(b"")) * n))
    return c


def test_a_server_opening_unknown_mappings_is_logged_once_a_second(nodes):
    """A server (buggy, or hostile) that opens streams for mappings the
    client does not have: each is refused, and the client used to write a
    WARN line for each (2,000 OPENs, 2,000 lines). Now one line per second
    at most, naming the server, with a count."""
    ls = listen_local()
    port = ls.getsockname()[1]
    got = {}
    t = threading.Thread(target=lambda: got.update(c=_fake_server_handshake(ls)), daemon=True)
    t.start()
    cli = nodes.client("127.0.0.1:%d" % port, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:9"}])
    t.join(10)
    c = got["c"]
    n = 2000
    c.sendall(b"".join(_frame(0x01, b"\x02" + _s16(b"nope") + _s16(b"192.0.2.1:5"), 2 * i + 2)
                       for i in range(n)))
    refused = 0
    while refused < n:
        typ, payload = _read_frame(c)
        if typ == 0x02:
            assert payload[:1] == b"\x04", payload  # no such mapping
            refused += 1
    lines = [ln for ln in cli.log().splitlines() if "unknown mapping" in ln]
    assert 1 <= len(lines) <= 3, lines[:5]
    assert 'server 127.0.0.1:%d opened a stream for unknown mapping "nope", refused (1 in all' \
        % port in lines[0], lines
    c.close()
    ls.close()


# ---- penetration ----

def test_http_mapping_routes_by_host_per_request(nodes, origin, origin6):
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "a", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "A.test",
        "headers": ["proxy x-forwarded-for {client_ip}", "+ x-via yes", "- x-kept"]}])
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "b", "mode": "http", "local_addr": "[::1]:%d" % origin6.port,
        "domain": "*.b.test"}])
    s = connect(hp)
    rd = http1.Reader(s)
    conns = {}
    for i, host in enumerate(["a.test", "x.b.test:%d" % hp, "A.TEST", "deep.x.b.test"] * 3):
        s.sendall(http1.request("GET", "/headers", [("Host", host)]))
        r = rd.response()
        assert r.status == 200, (host, r.status, r.body)
        doc = json.loads(r.body)
        hdrs = {k.lower(): v for k, v in doc["headers"]}
        if "b.test" in host:
            conns.setdefault("b", set()).add(doc["conn"])
            assert "x-forwarded-for" not in hdrs
        else:
            conns.setdefault("a", set()).add(doc["conn"])
            assert hdrs["x-forwarded-for"] == "127.0.0.1"
            assert r.header("x-via") == "yes"
    # rules on the response: "- x-kept" removes a header the origin sends
    r = http_get(hp, "/hop", "a.test")
    assert r.body == b"ok" and r.header("X-Kept") is None
    assert http_get(hp, "/hop", "y.b.test").header("X-Kept") == "yes"
    assert http_get(hp, "/", "unknown.test").status == 404
    assert http_get(hp, "/", "b.test").status == 404  # the wildcard needs a label



def test_http_mapping_absolute_form_goes_as_origin_form(nodes, origin):
    """An absolute-form target is routed by its authority (RFC 9112 3.2.2)
    and reaches the private service in origin-form with that Host, so the
    service cannot serve another site than the one routed."""
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "a", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "a.test"}])
    s = connect(hp)
    s.sendall(b"GET http://a.test/headers?x=1 HTTP/1.1\r\nHost: other.test\r\n\r\n")
    r = http1.Reader(s).response()
    s.close()
    assert r.status == 200, (r.status, r.body)
    doc = json.loads(r.body)
    assert doc["reqline"].split(" ")[1] == "/headers?x=1", doc["reqline"]
    hosts = [v for k, v in doc["headers"] if k.lower() == "host"]
    assert hosts == ["a.test"], hosts

def test_http_mapping_malformed_host_400(nodes, origin):
    """A Host that is no uri-host[:port] (RFC 9110 7.2) is 400 and reaches no
    private service, as on the reverse proxy: the routing lookup drops what
    follows the last ':' and tries the wildcards of every dot, so a bad port,
    userinfo or a path was routed (to "a.test" or "*.w.test") and forwarded
    to the service as written."""
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "a", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "a.test"}, {
        "name": "w", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "*.w.test"}])
    assert http_get(hp, "/headers", "a.test:8080").status == 200
    assert http_get(hp, "/headers", "x.w.test").status == 200
    for host in ("a.test:8x", "evil@x.w.test", "a/b.x.w.test", "x.w.test?q", "a.test b"):
        r = http_get(hp, "/headers", host)
        assert r.status == 400 and b"malformed Host" in r.body, (host, r.status, r.body)


def test_header_rules_arrive_whole(nodes, origin):
    """Every header rule the client announces is applied as written: 40
    rules (more than the 32 the server used to keep) and long names and
    values (a 600-byte value, a 150-byte name: the server used to cut them
    at 255 and 127 bytes without a word)."""
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    long_name = "x-" + "n" * 148
    long_value = "".join(chr(ord("a") + i % 26) for i in range(600))
    rules = ["proxy x-r%02d v%02d" % (i, i) for i in range(38)]
    rules += ["proxy %s short" % long_name, "proxy x-long %s" % long_value]
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "w", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "w.test", "headers": rules}])
    r = http_get(hp, "/headers", "w.test")
    assert r.status == 200, (r.status, r.body)
    hdrs = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
    for i in range(38):
        assert hdrs.get("x-r%02d" % i) == "v%02d" % i, i
    assert hdrs.get(long_name) == "short"
    assert hdrs.get("x-long") == long_value
    # two Host headers: 400 (RFC 9112 3.2), never routed on one of them
    s = connect(hp)
    s.sendall(b"GET /headers HTTP/1.1\r\nHost: w.test\r\nHost: other.test\r\n\r\n")
    assert http1.Reader(s).response().status == 400
    s.close()

def test_https_mapping(nodes, origin, certs):
    sp = free_port()
    srv = nodes.server(extra={"map_https_bind": "127.0.0.1:%d" % sp, "map_cert": certs["srv.pem"],
                              "map_key": certs["srv.key"]})
    nodes.client(srv.center, srv_proc=srv, mappings=[{
        "name": "s", "mode": "https", "local_addr": "127.0.0.1:%d" % origin.port,
        "domain": "a.test"}])
    r = curl("--cacert", certs["ca.pem"], "--resolve", "a.test:%d:127.0.0.1" % sp,
             "https://a.test:%d/bytes/50000?seed=2" % sp)
    assert r.returncode == 0, r.stderr
    assert r.stdout == pattern(50000, 2)


def test_tcp_mappings_default_and_own_port(nodes, echo):
    tp, own = free_port(), free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port},
        {"name": "p", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": own}])
    for port in (tp, own):
        assert wait_port("127.0.0.1", port, 5)
        s = connect(port)
        s.sendall(b"hello-" + str(port).encode())
        assert recv_exact(s, 6 + len(str(port))) == b"hello-" + str(port).encode()
        s.shutdown(socket.SHUT_WR)  # half-close crosses the tunnel
        assert recv_exact(s, 64).decode() == sha256(b"hello-" + str(port).encode())
        assert is_closed(s)


def test_proxy_mode_mapping(nodes, origin):
    pp = free_port()
    srv = nodes.server(extra={"map_proxy_bind": "127.0.0.1:%d" % pp})
    # the mapping publishes this node's proxy: its loopback (where the test
    # origin listens) must be allowed explicitly (test_acl.py)
    nodes.client(srv.center, srv_proc=srv, mappings=[{"name": "inside", "mode": "proxy"}],
                 extra={"allow_targets": ["127.0.0.1:%d" % origin.port]})
    # the client node parses the proxy protocol (with its credentials)
    r = curl("-x", "http://wm:s3cret@127.0.0.1:%d" % pp, "http://127.0.0.1:%d/bytes/900" % origin.port)
    assert r.returncode == 0 and r.stdout == pattern(900)
    r = curl("--socks5", "wm:s3cret@127.0.0.1:%d" % pp, "http://127.0.0.1:%d/bytes/9" % origin.port)
    assert r.stdout == pattern(9)


def test_allow_ports_limits_what_clients_claim(nodes, echo, tmp_path):
    """frp's allowPorts: with allow_ports set, a tcp mapping's own public port
    (remote_port or bind) must be in the list; others are refused by name,
    the default map_tcp_bind mapping is the server's own choice."""
    ok_port, bad_port, tp = free_port(), free_port(), free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp,
                              "allow_ports": "%d, 1-1023" % ok_port})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "in", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": ok_port},
        {"name": "out", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "bind": "127.0.0.1:%d" % bad_port},
        {"name": "dflt", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    assert wait_log(srv, 'mapping "out" refused: port of 127.0.0.1:%d is not in the server\'s '
                         'allow_ports' % bad_port), srv.log()
    for port in (ok_port, tp):
        assert wait_port("127.0.0.1", port, 5)
        s = connect(port)
        s.sendall(b"ping")
        assert recv_exact(s, 4) == b"ping"
        s.close()
    with pytest.raises(OSError):
        connect(bad_port).recv(1)
    # a bad list is a config error naming file, line and key
    path = write_config(tmp_path / "bad.toml", {"center_addr": "127.0.0.1:1",
                                                "allow_ports": "3000-2000"})
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True)
    assert r.returncode == 1 and "%s:3:15: proxy.allow_ports: bad port range" % path in r.stderr, r


def test_reload_narrowing_allow_ports_withdraws_ports(nodes, echo):
    """A reload that takes a port out of allow_ports closes that published
    port at once (the mapping is withdrawn and logged); the others stay."""
    keep, drop = free_port(), free_port()
    srv = nodes.server(extra={"allow_ports": "%d,%d" % (keep, drop)})
    path = nodes.tmp / ("node%d.toml" % nodes.n)
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "keep", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": keep},
        {"name": "drop", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": drop}])
    for port in (keep, drop):
        assert wait_port("127.0.0.1", port, 5)
    text = path.read_text().replace('"%d,%d"' % (keep, drop), '"%d"' % keep)
    path.write_text(text)
    srv.signal(signal.SIGHUP)
    assert wait_log(srv, 'mapping "drop" withdrawn: port of 127.0.0.1:%d is no longer in '
                         'allow_ports' % drop), srv.log()
    with pytest.raises(OSError):
        connect(drop).recv(1)
    s = connect(keep)
    s.sendall(b"still")
    assert recv_exact(s, 5) == b"still"
    s.close()


def test_open_server_is_warned_about(tmp_path):
    """A tunnel server reachable beyond loopback without credentials or
    mutual TLS lets anyone register domains and ports: say so."""
    warn = "tunnel server without username/password"
    for proxy, want in (({"center_addr": "0.0.0.0:1"}, True),
                        ({"center_addr": "127.0.0.1:1"}, False),
                        ({"center_addr": "localhost:1"}, False),
                        ({"center_addr": "0.0.0.0:1", "two_way_tls": True}, True),  # no tc
                        (dict(center_addr="0.0.0.0:1", **CRED), False)):
        path = write_config(tmp_path / "s.toml", proxy)
        r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True)
        assert r.returncode == 0 and (warn in r.stdout + r.stderr) == want, (proxy, r)


def test_mapping_cannot_take_a_port_the_server_listens_on(nodes, echo):
    # our listeners use SO_REUSEPORT: a client's tcp mapping naming one of
    # the server's own ports would share it and get part of its traffic
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    center_port = int(srv.center.rsplit(":", 1)[1])
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "steal", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "bind": "127.0.0.1:%d" % hp},
        {"name": "steal2", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": center_port}])
    assert wait_log(srv, 'mapping "steal" refused: bind 127.0.0.1:%d' % hp), srv.log()
    assert wait_log(srv, 'mapping "steal2" refused'), srv.log()
    for _ in range(10):  # every request still reaches the server's HTTP port
        assert http_get(hp, "/", "nobody.test").status == 404
    cli.stop()


def test_conflicts_and_groups(nodes, origin, origin6):
    hp = free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp})
    m = {"name": "w", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port, "domain": "a.test"}
    first = nodes.client(srv.center, srv_proc=srv, mappings=[m])
    second = nodes.client(srv.center, srv_proc=srv, mappings=[m])
    assert wait_log(second, "refused by the server: domain a.test is already registered"), \
        second.log()
    # groups: balanced over the members, failover when one leaves
    g1 = dict(m, domain="g.test", group="blue", local_addr="127.0.0.1:%d" % origin.port)
    g2 = dict(m, domain="g.test", group="blue", local_addr="[::1]:%d" % origin6.port)
    c1 = nodes.client(srv.center, srv_proc=srv, mappings=[g1])
    c2 = nodes.client(srv.center, srv_proc=srv, mappings=[g2])
    before = srv.log()
    for _ in range(8):
        r = http_get(hp, "/headers", "g.test")
        assert r.status == 200
    # access lines leave through the writer thread: wait for all eight
    wait_until(lambda: srv.log()[len(before):].count('req="GET /headers"') >= 8,
               what="eight access lines")
    new = srv.log()[len(before):]
    targets = {ln.split("target=")[1].split()[0] for ln in new.splitlines()
               if "proto=tunnel-http" in ln and 'req="GET /headers"' in ln}
    assert len(targets) == 2, new  # both members of the group served
    c1.stop()
    for _ in range(4):
        assert http_get(hp, "/bytes/10", "g.test").body == pattern(10)
    first.stop()
    second.stop()
    c2.stop()


def test_a_refused_mapping_takes_the_port_when_its_holder_goes(nodes, echo):
    """A client that reconnects after a silent cut while the server still
    holds its stale carrier has its mappings refused ('already registered
    by client ...'). When the server drops the stale carrier, the port used
    to close and stay closed: the new carrier was never given it. Now the
    waiting mapping takes it, with a line saying so, and visitors reach the
    client again."""
    tp = free_port()
    srv = nodes.server(extra={"heartbeat_interval": "1s", "heartbeat_timeout": "3s"})
    stale = _raw_attach(srv.center, name=b"stale")
    port_map = _s16(b"t") + bytes([3]) + _s16(b"") + struct.pack(">H", tp) + _s16(b"") + \
        _s16(b"") + b"\0\0"
    assert _raw_register(stale, [port_map]) == [(1, "")]
    # the stale carrier now neither reads nor writes, as after a silent cut
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": tp}])
    assert wait_log(cli, 'mapping "t" refused by the server: port 127.0.0.1:%d is already '
                         'registered' % tp), cli.log()
    assert wait_log(srv, 'mapping "t" (127.0.0.1:%d) active now' % tp, timeout=15), srv.log()

    def through():
        try:
            s = connect(tp, timeout=2)
            s.sendall(b"again")
            return recv_exact(s, 5) == b"again"
        except (OSError, EOFError):
            return False
    wait_until(through, timeout=10, what="the public port reaching the new carrier")
    stale.close()


def test_many_streams_with_checksums(nodes, origin):
    tp = free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % origin.port}])
    n, size = 200, 5 * 1000 * 1000
    results = {}

    def run(i):
        try:
            s = connect(tp, timeout=60)
            s.sendall(http1.request("GET", "/bytes/%d?seed=%d" % (size, i), [("Host", "x")]))
            rd = http1.Reader(s)
            r = rd.response()
            results[i] = sha256(r.body) == pattern_sha256(size, i)
            s.close()
        except Exception as e:  # noqa: BLE001 - recorded below
            results[i] = repr(e)

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(180)
    bad = {k: v for k, v in results.items() if v is not True}
    assert len(results) == n and not bad, bad


def _throughput(port, streams, size):
    done = []

    def run(i):
        s = connect(port, timeout=60)
        s.sendall(http1.request("GET", "/bytes/%d?seed=%d" % (size, i), [("Host", "x")]))
        r = http1.Reader(s).response()
        done.append(len(r.body))
        s.close()

    t0 = time.time()
    ts = [threading.Thread(target=run, args=(i,)) for i in range(streams)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    assert sum(done) == streams * size
    return streams * size / (time.time() - t0)


def _rss_kib(proc):
    with open("/proc/%d/status" % proc.p.pid) as f:
        return [int(ln.split()[1]) for ln in f if ln.startswith("VmRSS")][0]


# ASan's quarantine (256 MB by default) keeps freed buffers resident and
# fills at its own pace, which the RSS growth below would measure instead.
ASAN_LOW_RSS = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66:quarantine_size_mb=1"}


def test_stalled_stream_does_not_slow_others(nodes, origin):
    tp = free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp}, env=ASAN_LOW_RSS)
    cli = nodes.client(srv.center, srv_proc=srv, env=ASAN_LOW_RSS, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % origin.port}])
    _throughput(tp, 2, 5_000_000)  # warm up
    base = _throughput(tp, 4, 40_000_000)
    rss_before = {p: _rss_kib(p) for p in (srv, cli)}
    # a stream whose reader stops: the origin pushes 500 MB into it
    stalled = connect(tp)
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(http1.request("GET", "/bytes/%d" % 500_000_000, [("Host", "x")]))
    time.sleep(1)  # deliberate: the origin fills the stalled stream meanwhile
    # A stall that blocked the carrier would stop the others (each try ends
    # at its 60 s socket timeout). The Python readers' own speed under ASan
    # swings by a third between runs on a shared host (a fresh-clone run
    # once measured 0.66-0.78 of a fast base run), so the bar is half the
    # base, best of three tries.
    tries = []
    while len(tries) < 3 and (not tries or max(tries) < 0.5 * base):
        tries.append(_throughput(tp, 4, 40_000_000))
    assert max(tries) >= 0.5 * base, (base, tries)
    # memory stays bounded: one stream window and relay buffers, not the
    # hundreds of MB the origin pushes (ASan build: allow for its overhead)
    for p in (srv, cli):
        grown = _rss_kib(p) - rss_before[p]
        assert grown < 48 * 1024, grown
    stalled.close()


def test_server_restart_recovers_within_5s(nodes, echo, wmproxy, tmp_path):
    tp = free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    cfg = srv.args[srv.args.index("-c") + 1]
    os.kill(srv.p.pid, signal.SIGKILL)
    srv.p.wait(5)
    srv.stopped = True
    assert wait_log(cli, "closed: "), cli.log()
    t0 = time.time()
    srv2 = wmproxy(["run", "-c", cfg, "--workers", "2"], port=int(srv.center.rsplit(":", 1)[1]))
    deadline = t0 + 5
    ok = False
    while time.time() < deadline and not ok:
        try:
            s = connect(tp, timeout=1)
            s.sendall(b"ping")
            ok = recv_exact(s, 4) == b"ping"
            s.close()
        except (OSError, EOFError):
            time.sleep(0.1)
    assert ok, (cli.log()[-2000:], srv2.log()[-2000:])


class CutRelay:
    """A TCP relay between client and server that can go silent (keeps the
    sockets, drops every byte) to simulate a dead network path."""

    def __init__(self, target_port):
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.target = target_port
        self.silent = False
        self.stop = False
        self.socks = []
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        self.srv.settimeout(0.2)
        while not self.stop:
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            self.socks += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b, self.silent), daemon=True).start()

    def pipe(self, a, b, _):
        a.settimeout(0.2)
        while not self.stop:
            try:
                d = a.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            if not d:
                return
            if not self.silent:
                try:
                    b.sendall(d)
                except OSError:
                    return

    def cut(self):
        self.silent = True
        old = list(self.socks)
        self.socks = []
        self.silent_socks = old

    def heal(self):
        self.silent = False

    def close(self):
        self.stop = True
        self.srv.close()
        for s in self.socks + getattr(self, "silent_socks", []):
            s.close()


def test_silent_cut_detected_and_reconnected(nodes, echo):
    tp = free_port()
    hb = {"heartbeat_interval": "1s", "heartbeat_timeout": "3s"}
    srv = nodes.server(extra=dict(hb, map_tcp_bind="127.0.0.1:%d" % tp))
    relay = CutRelay(int(srv.center.rsplit(":", 1)[1]))
    try:
        cli = nodes.client("127.0.0.1:%d" % relay.port, srv_proc=srv, extra=hb, mappings=[
            {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
        relay.cut()  # existing carrier now black-holed, new connections would pass
        t0 = time.time()
        assert wait_log(cli, "no heartbeat", timeout=20), cli.log()
        detected = time.time() - t0
        relay.heal()
        assert wait_log(cli, "tunnel: connected", count=2, timeout=20), cli.log()
        ok = False
        deadline = time.time() + 10
        while not ok and time.time() < deadline:
            try:
                s = connect(tp, timeout=2)
                s.sendall(b"again")
                ok = recv_exact(s, 5) == b"again"
            except (OSError, EOFError):
                time.sleep(0.2)
        assert ok
        assert detected < 10
    finally:
        relay.close()


def test_client_starts_before_server(nodes, echo, wmproxy):
    tp, cp = free_port(), free_port()
    cli = nodes.client("127.0.0.1:%d" % cp, attach=False, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    assert wait_log(cli, "cannot reach", count=2), cli.log()  # and retries
    assert cli.alive()
    srv = nodes.start({"bind_addr": "127.0.0.1:%d" % cp, "mode": "server",
                       "map_tcp_bind": "127.0.0.1:%d" % tp, **CRED})
    assert wait_log(srv, "attached", timeout=10), cli.log()
    s = connect(tp)
    s.sendall(b"x")
    assert recv_exact(s, 1) == b"x"


def test_tiny_writes_to_a_paused_reader_all_arrive(nodes):
    """A private service writing 100 bytes at a time (one DATA frame each)
    to a public client that pauses, then reads: every byte arrives. (The
    receiving node once queued one buffer chain per frame and stopped
    after a 128-chain writev that did not fill the socket.)"""
    total = 8_000_000  # beyond what the kernel buffers on the way hold (~3 MB)
    data = pattern(total, seed=7)
    lst = listen_local()

    def produce():
        c, _ = lst.accept()
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            for i in range(0, total, 100):
                c.sendall(data[i:i + 100])
            c.shutdown(socket.SHUT_WR)
            c.recv(1)
        except OSError:
            pass
        c.close()

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    tp = free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % lst.getsockname()[1]}])
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", tp))
    time.sleep(3)  # deliberate: the window fills with tiny frames meanwhile
    s.settimeout(10)
    got = bytearray()
    while len(got) < total:
        d = s.recv(65536)
        if not d:
            break
        got += d
    assert len(got) == total
    assert bytes(got) == data
    s.close()
    lst.close()


def _echo_ok(s, tag):
    s.sendall(tag)
    try:
        return recv_exact(s, len(tag)) == tag
    except (OSError, EOFError):
        return False


def test_max_streams_caps_a_carrier_both_ways(nodes, echo):
    """max_streams bounds the streams open at once on a carrier (and so
    what it can make a node hold: that many windows). At the server's cap a
    new public visitor is closed and the client's OPEN is refused, a WARN
    line says why; a stream that ends makes room again."""
    tp = free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp, "max_streams": 2})
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    assert wait_port("127.0.0.1", tp, 5)
    # the port probes above opened streams of their own: they end soon
    held = []

    def one_more():
        s = connect(tp)
        s.settimeout(5)
        if _echo_ok(s, b"held"):
            held.append(s)
            return True
        s.close()
        return False
    for _ in range(2):
        wait_until(one_more, what="a stream under the cap")
    # a third public visitor: no stream for it
    s3 = connect(tp)
    s3.settimeout(10)
    try:
        s3.sendall(b"third")
        assert s3.recv(64) == b""
    except ConnectionResetError:
        pass
    s3.close()
    assert wait_log(srv, "2 streams open on the carrier (max_streams): a new stream refused"), \
        srv.log()[-2000:]
    assert "end=stream-limit" in srv.log()
    # the client's own streams (two-level proxy) count too: its OPEN is refused
    px = connect(cli.entry)
    px.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n"
               b"Proxy-Authorization: Basic %s\r\n\r\n"
               % (echo.port, base64.b64encode(b"wm:s3cret")))
    px.settimeout(10)
    head = px.recv(4096)
    assert head.startswith(b"HTTP/1.1 5"), head
    px.close()
    assert wait_log(srv, "(max_streams): the peer's OPEN refused"), srv.log()[-2000:]
    assert wait_log(cli, "proto=tunnel-entry") and "end=resource-limit" in cli.log()
    # one visitor leaves: a new one gets through
    held[0].close()

    def through():
        s = connect(tp)
        s.settimeout(5)
        try:
            return _echo_ok(s, b"again")
        except OSError:
            return False
        finally:
            s.close()
    wait_until(through, what="a stream once one ended")
    assert _echo_ok(held[1], b"still")
    held[1].close()
    assert srv.alive() and cli.alive()
