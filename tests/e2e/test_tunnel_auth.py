"""Tunnel authentication and authorization (issue 16, points 3, 4, 7):
MACs bound to the TLS session (a relayed handshake fails), a client that
refuses a server which does not ask for its credentials, caps on carriers
that have not authenticated, per-client rights ([[proxy.clients]]),
throttling of failed carrier logins, and the center's /status counters."""

import hashlib
import hmac
import json
import os
import socket
import ssl
import struct
import threading
import time

import pytest

from conftest import BIN
from helpers import control as ctl
from helpers.net import connect, free_port, is_closed, recv_exact, wait_until
from helpers.tunnel import make_certs, wait_log, write_config
from test_tunnel import CRED, Nodes, curl, tls_client, tls_server
from helpers.origin import pattern


@pytest.fixture(scope="session")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs-auth")))


@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


def _frame(typ, payload=b"", sid=0):
    return struct.pack(">I", len(payload))[1:] + bytes([typ, 0]) + struct.pack(">I", sid) + payload


def _read_frame(s):
    hdr = recv_exact(s, 9)
    n = struct.unpack(">I", b"\0" + hdr[:3])[0]
    return hdr[3], recv_exact(s, n) if n else b""


def _s16(b):
    return struct.pack(">H", len(b)) + b


def _hello(version=2):
    return b"WMTUN/1\n" + _frame(0x10, bytes([version]) + struct.pack(">I", 65536) + _s16(b"raw"))


def _try_login(port, user, password, timeout=15, src=None):
    """One hand-made plain carrier login (from the address src when given):
    ('challenge-missing', None) when the server closes before its
    CHALLENGE, else (ok byte, seconds between our AUTH and the answer)."""
    if src is None:
        s = connect(port, timeout=timeout)
    else:
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(timeout)
        s.connect(("127.0.0.1", port))
    try:
        s.sendall(_hello())
        try:
            typ, ch = _read_frame(s)
        except (EOFError, ConnectionError, OSError):
            return "challenge-missing", None
        assert typ == 0x11, (typ, ch)
        nonce_s, nonce_c = ch[:32], os.urandom(32)
        mac = hmac.new(password, b"wmtun/2 client" + nonce_s + nonce_c + user,
                       hashlib.sha256).digest()
        t0 = time.monotonic()
        s.sendall(_frame(0x12, nonce_c + _s16(user) + mac))
        typ, res = _read_frame(s)
        return res[0], time.monotonic() - t0
    finally:
        s.close()


def _server_conf(tmp_path, name, text, cport=None):
    top = 'control = "127.0.0.1:%d"\n' % cport if cport else "disable_control = true\n"
    path = tmp_path / name
    path.write_text(top + text)
    return str(path)


# ---- point 3: channel binding ----

class TlsRelay:
    """A man in the middle the client trusts: it terminates the client's TLS
    with a certificate of the client's CA and opens its own TLS to the real
    server, relaying the plaintext both ways."""

    def __init__(self, target_port, cert, key):
        self.target = target_port
        self.srv_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.srv_ctx.load_cert_chain(cert, key)
        self.cli_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.cli_ctx.check_hostname = False
        self.cli_ctx.verify_mode = ssl.CERT_NONE
        self.lst = socket.socket()
        self.lst.bind(("127.0.0.1", 0))
        self.lst.listen(8)
        self.port = self.lst.getsockname()[1]
        self.relayed = 0
        self.closed = False
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while not self.closed:
            try:
                c, _ = self.lst.accept()
                a = self.srv_ctx.wrap_socket(c, server_side=True)
                b = self.cli_ctx.wrap_socket(socket.create_connection(("127.0.0.1", self.target)))
            except OSError:
                continue
            self.relayed += 1
            threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()
            threading.Thread(target=self.pipe, args=(b, a), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for x in (a, b):
            try:
                x.close()
            except OSError:
                pass

    def close(self):
        self.closed = True
        self.lst.close()


def test_relayed_tls_handshake_fails(nodes, certs):
    """A relay that holds a certificate the client trusts sees the client's
    challenge-response in clear and hands it to the real server over its own
    TLS session: before, the server accepted it (the relay then read and
    injected the carrier's streams). The MACs now include the TLS exporter
    value of each side's session, so they differ and the server refuses."""
    srv = nodes.server(tls=tls_server(certs))
    relay = TlsRelay(int(srv.center.rsplit(":", 1)[1]), certs["srv.pem"], certs["srv.key"])
    try:
        cli = nodes.client("127.0.0.1:%d" % relay.port, tls=tls_client(certs), attach=False,
                           mappings=[{"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:1"}])
        assert wait_log(srv, "failed to authenticate: wrong credentials", timeout=15), srv.log()
        assert wait_log(cli, "the server refused us: wrong credentials"), cli.log()
        assert relay.relayed >= 1
        assert "attached" not in srv.log() and "registered mapping" not in srv.log()
        # the same client straight to the server attaches
        nodes.client(srv.center, tls=tls_client(certs), srv_proc=srv)
    finally:
        relay.close()


def test_client_refuses_a_server_that_does_not_ask_for_credentials(nodes, tmp_path):
    """A client with username/password used to register its private
    mappings with any server that said "no credentials needed" (a fake one
    in the path, or a misconfigured one). It now refuses, logs why, and
    retries with backoff."""
    cp = free_port()
    srv = nodes.wmproxy(["run", "-c", write_config(tmp_path / "open.toml", {
        "bind_addr": "127.0.0.1:%d" % cp, "mode": "server"}, top={"disable_control": True})],
        port=cp)
    cli = nodes.client("127.0.0.1:%d" % cp, attach=False,
                       mappings=[{"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:1"}])
    assert wait_log(cli, "does not ask for credentials", count=2, timeout=15), cli.log()
    assert wait_log(cli, "does not ask"), cli.log()[-3000:]
    assert "WARN" in [l for l in cli.log().splitlines() if "does not ask" in l][0]
    assert "registered mapping" not in srv.log() and "tunnel: connected" not in cli.log()
    # a client without credentials still attaches to an open server
    nodes.client("127.0.0.1:%d" % cp, creds=None, srv_proc=srv)


def test_old_protocol_version_gets_a_clear_answer(nodes):
    """A previous client (HELLO version 1, MACs without channel binding)
    gets GOAWAY naming the versions, never a hang."""
    srv = nodes.server()
    s = connect(int(srv.center.rsplit(":", 1)[1]))
    s.sendall(_hello(version=1))
    typ, p = _read_frame(s)
    assert typ == 0x06 and b"unsupported protocol version 1" in p and b"upgrade the client" in p
    assert is_closed(s)


# ---- point 3: caps on carriers that have not authenticated ----

def _idle(port, src):
    s = socket.socket()
    s.bind((src, 0))
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    return s


def test_unauthenticated_carrier_caps(nodes, tmp_path):
    """Idle connections to the center used to be kept without limit (each a
    descriptor and, under TLS, ~45 KiB of handshake state). Beyond
    max_unauth_carriers_per_ip from one address, or max_unauth_carriers in
    all, new ones are closed at accept, logged and counted; authenticated
    carriers do not count, and once the idle ones go a client attaches."""
    cport, cp = free_port(), free_port()
    conf = _server_conf(tmp_path, "cap.toml", """[proxy]
bind_addr = "127.0.0.1:%d"
mode = "server"
username = "wm"
password = "s3cret"
max_unauth_carriers = 6
max_unauth_carriers_per_ip = 4
""" % cp, cport)
    srv = nodes.wmproxy(["run", "-c", conf], port=cp)
    # the start-up probe of the port is a carrier too, until its EOF is seen
    wait_until(lambda: ctl.api(cport, "GET", "/status")[2]["tunnel"]["center"]["unauthenticated"] == 0,
               what="the port probe gone")
    idle = [_idle(cp, "127.0.0.1") for _ in range(4)]
    wait_until(lambda: ctl.api(cport, "GET", "/status")[2]["tunnel"]["center"]["unauthenticated"] == 4,
               what="4 idle carriers counted")
    extra = _idle(cp, "127.0.0.1")
    assert is_closed(extra, timeout=5), "a 5th idle carrier from one address must be closed"
    idle += [_idle(cp, "127.0.0.2"), _idle(cp, "127.0.0.2")]
    wait_until(lambda: ctl.api(cport, "GET", "/status")[2]["tunnel"]["center"]["unauthenticated"] == 6,
               what="6 idle carriers counted")
    other = _idle(cp, "127.0.0.3")
    assert is_closed(other, timeout=5), "beyond the global cap every address is refused"
    for s in idle[:4]:
        assert not is_closed(s, timeout=0.2)
    assert wait_log(srv, "refused: carriers waiting to authenticate from this address"), srv.log()
    doc = ctl.api(cport, "GET", "/status")[2]
    assert doc["tunnel"]["center"]["refused_cap"] >= 2, doc
    for s in idle:
        s.close()
    wait_until(lambda: ctl.api(cport, "GET", "/status")[2]["tunnel"]["center"]["unauthenticated"] == 0,
               what="idle carriers gone")
    nodes.client("127.0.0.1:%d" % cp, srv_proc=srv)


# ---- point 4: per-client authorization ----

CLIENTS_TOML = """[proxy]
bind_addr = "127.0.0.1:%(cp)d"
mode = "server"
map_http_bind = "127.0.0.1:%(hp)d"

[[proxy.clients]]
name = "alice"
password = "pw-alice"
domains = ["*.a.test", "g.test"]
ports = [%(p1)d, "%(p3)d-%(p3)d"]
groups = ["g1"]

[[proxy.clients]]
name = "bob"
password = "pw-bob"
domains = ["b.test", "g.test"]
"""

CLIENTS_YAML = """proxy:
  bind_addr: "127.0.0.1:%(cp)d"
  mode: server
  map_http_bind: "127.0.0.1:%(hp)d"
  clients:
    - name: alice
      password: pw-alice
      domains: ["*.a.test", g.test]
      ports: [%(p1)d, "%(p3)d-%(p3)d"]
      groups: [g1]
    - name: bob
      password: pw-bob
      domains: [b.test, g.test]
"""


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_per_client_authorization(nodes, origin, tmp_path, fmt):
    """[[proxy.clients]] says who may attach and what each may register:
    domains (wildcards), public ports, groups. A registration outside them is
    refused with a reason to the client and a line on the server; joining
    another client's group needs that group in one's own list (before, any
    client that knew the group name got a share of its traffic)."""
    cp, hp, p1, p2, p3 = free_port(), free_port(), free_port(), free_port(), free_port()
    text = (CLIENTS_TOML if fmt == "toml" else CLIENTS_YAML) % dict(cp=cp, hp=hp, p1=p1, p3=p3)
    path = tmp_path / ("clients." + fmt)
    path.write_text(("disable_control = true\n" if fmt == "toml" else "disable_control: true\n")
                    + text)
    srv = nodes.wmproxy(["run", "-c", str(path)], port=cp)
    center = "127.0.0.1:%d" % cp
    web = "127.0.0.1:%d" % origin.port
    alice = nodes.client(center, creds={"username": "alice", "password": "pw-alice"},
                         srv_proc=srv, mappings=[
                             {"name": "a1", "mode": "http", "local_addr": web, "domain": "x.a.test"},
                             {"name": "b", "mode": "http", "local_addr": web, "domain": "b.test"},
                             {"name": "t1", "mode": "tcp", "local_addr": web, "remote_port": p1},
                             {"name": "t2", "mode": "tcp", "local_addr": web, "remote_port": p2},
                             {"name": "g", "mode": "http", "local_addr": web, "domain": "g.test",
                              "group": "g1"}])
    assert wait_log(alice, 'mapping "b" refused by the server: client alice may not register '
                           'domain b.test'), alice.log()
    assert wait_log(alice, 'mapping "t2" refused by the server: client alice may not publish '
                           'port %d' % p2), alice.log()
    assert wait_log(srv, 'client alice: mapping "b" refused'), srv.log()
    assert 'mapping "a1" refused' not in alice.log() and 'mapping "t1" refused' not in alice.log()
    assert 'mapping "g" refused' not in alice.log()
    bob = nodes.client(center, creds={"username": "bob", "password": "pw-bob"}, srv_proc=srv,
                       mappings=[
                           {"name": "b", "mode": "http", "local_addr": web, "domain": "b.test"},
                           {"name": "g", "mode": "http", "local_addr": web, "domain": "g.test",
                            "group": "g1"}])
    assert wait_log(bob, 'mapping "g" refused by the server: client bob is not allowed in '
                         'group g1'), bob.log()
    assert 'mapping "b" refused' not in bob.log()
    # g.test goes to alice only: every request lands there
    for _ in range(4):
        r = curl("-H", "Host: g.test", "http://127.0.0.1:%d/bytes/5" % hp)
        assert r.returncode == 0 and r.stdout == pattern(5), r
    # wrong password and unknown names are refused
    bad = nodes.client(center, creds={"username": "bob", "password": "pw-alice"}, attach=False)
    assert wait_log(bad, "the server refused us: wrong credentials"), bad.log()
    nobody = nodes.client(center, creds={"username": "eve", "password": "x"}, attach=False)
    assert wait_log(nobody, "the server refused us: wrong credentials"), nobody.log()


def test_many_long_refusals_still_reach_the_client(nodes, tmp_path):
    """70 http mappings with 200-byte domains, none in the client's
    domains: the reasons (about 260 bytes each) do not fit in one
    REGISTER_RESULT frame. The server used to send an empty one: the client
    closed the carrier with 'malformed REGISTER_RESULT' and reconnected in a
    loop, never told why. Now each reason is cut to a share of the frame and
    the client stays attached, told which mapping was refused."""
    cp = free_port()
    srv = nodes.wmproxy(["run", "-c", _server_conf(tmp_path, "srv.toml", """[proxy]
bind_addr = "127.0.0.1:%d"
mode = "server"
[[proxy.clients]]
name = "office"
password = "pw"
domains = ["ok.test"]
""" % cp)], port=cp)
    long = ("x" * 60 + ".") * 3
    maps = [{"name": "m%02d" % i, "mode": "http", "local_addr": "127.0.0.1:9",
             "domain": long + "d%02d.test" % i} for i in range(70)]
    maps.append({"name": "ok", "mode": "http", "local_addr": "127.0.0.1:9", "domain": "ok.test"})
    cli = nodes.client("127.0.0.1:%d" % cp, creds={"username": "office", "password": "pw"},
                       srv_proc=srv, mappings=maps)
    assert wait_log(cli, 'mapping "m69" refused by the server: client office may not register '
                         'domain xxx'), cli.log()[-3000:]
    assert cli.log().count("refused by the server") == 70
    assert "..." in cli.log() and "malformed" not in cli.log()
    assert 'mapping "ok" refused' not in cli.log()
    assert srv.log().count("detached") == 0 and srv.log().count("attached") == 1


def test_clients_table_config_errors(tmp_path):
    """Mistakes in [[proxy.clients]] are config errors with file:line:col."""
    path = tmp_path / "bad.toml"
    path.write_text("""[proxy]
bind_addr = "127.0.0.1:%d"
mode = "server"
[[proxy.clients]]
name = "a"
[[proxy.clients]]
name = "b"
password = "x"
ports = "70000"
[[proxy.clients]]
name = "b"
subject = "b-cert"
""" % free_port())
    r = ctl.run(BIN, "check", "-c", path)
    log = r.stderr.decode()
    assert r.returncode != 0, log
    assert "needs a password or a subject" in log, log
    assert "ports" in log and "used twice" in log and "two_way_tls" in log, log


# ---- point 7: failed carrier logins, and the center's counters ----

def test_failed_carrier_logins_are_throttled_then_refused(nodes, tmp_path):
    """Wrong carrier credentials from one address: the first few are
    answered at once, later ones after a growing delay, and after 10 within
    a minute the address is refused for a while (closed before any
    CHALLENGE), logged once and counted. Before, a guesser could try as fast
    as the server answered."""
    cport, cp = free_port(), free_port()
    conf = _server_conf(tmp_path, "af.toml", """[proxy]
bind_addr = "127.0.0.1:%d"
mode = "server"
username = "wm"
password = "s3cret"
""" % cp, cport)
    srv = nodes.wmproxy(["run", "-c", conf], port=cp)
    results = []
    lock = threading.Lock()

    def guess(i):
        r = _try_login(cp, b"wm", b"guess-%d" % i)
        with lock:
            results.append(r)

    for i in range(3):  # answered at once
        ok, dt = _try_login(cp, b"wm", b"nope")
        assert ok == 0 and dt < 0.4, (ok, dt)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(7)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert all(r[0] == 0 for r in results), results
    assert max(r[1] for r in results) >= 0.4, results  # later answers wait
    assert wait_log(srv, "on hold") or wait_log(srv, "refus"), srv.log()
    r, _ = _try_login(cp, b"wm", b"s3cret")  # even the right password: on hold
    assert r == "challenge-missing", r
    doc = ctl.api(cport, "GET", "/status")[2]
    c = doc["tunnel"]["center"]
    assert c["auth_failed"] >= 10 and c["refused_hold"] >= 1 and c["auth_ok"] == 0, c


def test_status_center_counters(nodes, origin, tmp_path):
    """The tunnel-center listener's counters in /status stayed 0 (carriers
    were not counted as connections). Now the listener counts them, and
    tunnel.center counts accepted carriers, logins, active carriers, streams
    and bytes."""
    cport, cp = free_port(), free_port()
    conf = _server_conf(tmp_path, "st.toml", """[proxy]
bind_addr = "127.0.0.1:%d"
mode = "server"
username = "wm"
password = "s3cret"
""" % cp, cport)
    srv = nodes.wmproxy(["run", "-c", conf], port=cp)
    cli = nodes.client("127.0.0.1:%d" % cp, srv_proc=srv)
    r = curl("-x", "http://127.0.0.1:%d" % cli.entry, "-U", "wm:s3cret",
             "http://127.0.0.1:%d/bytes/3000" % origin.port)
    assert r.returncode == 0 and r.stdout == pattern(3000), r
    assert _try_login(cp, b"wm", b"wrong")[0] == 0
    doc = ctl.api(cport, "GET", "/status")[2]
    c = doc["tunnel"]["center"]
    assert c["accepted"] >= 2 and c["auth_ok"] >= 1 and c["auth_failed"] >= 1, c
    assert c["active"] == 1 and c["streams"] >= 1, c
    assert c["bytes_in"] > 0 and c["bytes_out"] > 3000, c
    lst = [l for l in doc["listeners"] if l["kind"] == "tunnel-center"]
    assert lst and lst[0]["accepted"] >= 2 and lst[0]["open"] >= 1, doc["listeners"]
    wait_until(lambda: [l for l in ctl.api(cport, "GET", "/status")[2]["listeners"]
                        if l["kind"] == "tunnel-center"][0]["bytes_in"] > 0,
               what="bytes of closed carriers on the listener")
