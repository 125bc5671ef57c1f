"""The reverse proxy ([http]): virtual hosts, locations, upstreams with
balancing, passive health and a keep-alive pool, header rules, access rules,
local answers, TLS termination with SNI, https upstreams, WebSocket, reload,
and bad input."""

import json
import os
import re
import shlex
import struct
import socket
import ssl
import subprocess
import time

import pytest

from conftest import BIN
from helpers import origin as origin_mod
from helpers.control import api
from helpers.net import connect, free_port, recv_all, serve_tcp, wait_until
from helpers.ref import need_ref, ref_file
from helpers.revconf import get
from helpers.tunnel import wait_log


def write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def start(wmproxy, tmp_path, body, name="rev.toml", cport=None):
    """Run a config whose [http] servers listen on the ports in `body`."""
    top = 'control = "127.0.0.1:%d"\n' % cport if cport else "disable_control = true\n"
    path = write(tmp_path / name, top + "workers = 2\n" + body)
    p = wmproxy(["run", "-c", path])
    return p


def start_plain(wmproxy, tmp_path, port, up_port, extra=""):
    """One [http] server on port to 127.0.0.1:up_port (extra: more of its
    keys), serving when it returns."""
    p = start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://127.0.0.1:%(o)d"
%(x)s""" % {"p": port, "o": up_port, "x": extra})
    wait_serving(port, path="/conn")
    return p


def wait_serving(port, host="a.test", path="/"):
    def ok():
        try:
            get(port, path, host)
            return True
        except OSError:
            return False
    wait_until(ok, what="reverse proxy on %d" % port)


@pytest.fixture
def two_origins():
    a = origin_mod.start("127.0.0.1")
    b = origin_mod.start("127.0.0.1")
    yield a, b
    a.stop()
    b.stop()


def test_virtual_hosts_locations_and_static(wmproxy, tmp_path, origin):
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[http.match_names]
api = "^/api/v[0-9]+/"

[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
up_name = "a.test"
[[http.server.location]]
rule = "=/exact"
static_response = "exact {method} {client_ip}"
[[http.server.location]]
rule = "/files/*.txt"
static_response = "glob"
[[http.server.location]]
rule = "@api"
static_response = "regex"
[[http.server.location]]
rule = { path = "/m", method = "POST PUT" }
static_response = "posted"
[[http.server.location]]
rule = { path = "/m", host = "A.TEST" }
static_response = "host rule"
[[http.server.location]]
rule = "/proxy"
proxy_url = "http://127.0.0.1:%(o)d"

[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
up_name = "*.wild.test other.test"
static_response = "second server {host}"
""" % {"p": port, "o": origin.port})
    wait_serving(port, path="/exact")
    st, hd, body = get(port, "/exact")
    assert (st, body) == (200, b"exact GET 127.0.0.1")
    assert hd["content-type"].startswith("text/plain")
    assert get(port, "/exactly")[0] == 404  # "=" is exact, and nothing else matches
    assert get(port, "/files/a/b.txt")[2] == b"glob"
    assert get(port, "/files/a/b.png")[0] == 404
    assert get(port, "/api/v2/users")[2] == b"regex"
    assert get(port, "/api/vX/")[0] == 404
    assert get(port, "/m", method="POST", body=b"x")[2] == b"posted"
    assert get(port, "/m")[2] == b"host rule"  # first match in config order wins
    # Host: case-insensitive, port ignored, wildcard; unknown -> the first server
    assert get(port, "/x", host="Deep.Wild.TEST:8080")[2] == b"second server Deep.Wild.TEST:8080"
    assert get(port, "/x", host="other.test")[2].startswith(b"second server")
    # a fully qualified name (trailing dot) is the same name, as in nginx
    assert get(port, "/x", host="other.test.:8080")[2].startswith(b"second server")
    assert get(port, "/x", host="deep.wild.test.")[2].startswith(b"second server")
    assert get(port, "/exact", host="unknown.test")[2].startswith(b"exact")
    # the path is normalised before matching: no bypass with %XX or dot segments
    assert get(port, "/%65xact")[2].startswith(b"exact")
    assert get(port, "/files/../exact")[2].startswith(b"exact")
    assert get(port, "/../../etc/passwd")[0] == 400
    st, _, body = get(port, "/proxy/../headers")
    assert st == 404  # normalised path /headers matches no location


def test_proxy_headers_and_host(wmproxy, tmp_path, origin):
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
headers = ["proxy X-From-Http 1"]
[[http.upstream]]
name = "back"
server = [{ addr = "127.0.0.1:%(o)d" }]

[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
headers = ["+ X-Served-By wmproxy", "- Server"]
[[http.server.location]]
rule = "/keep"
proxy_url = "http://back"
headers = ["proxy X-Client {client_ip}", "proxy - X-Drop"]
[[http.server.location]]
rule = "/"
proxy_url = "http://back"
proxy_set_host = true
""" % {"p": port, "o": origin.port})
    wait_serving(port)
    st, hd, body = get(port, "/headers", host="a.test")
    doc = json.loads(body)
    h = {k.lower(): v for k, v in doc["headers"]}
    assert h["host"] == "127.0.0.1:%d" % origin.port  # proxy_set_host = true
    assert h["x-forwarded-proto"] == "http" and h["x-real-ip"] == "127.0.0.1"
    assert h["x-from-http"] == "1"
    assert hd["x-served-by"] == "wmproxy" and "server" not in hd


def test_forwarded_headers_default_keep_client_host(wmproxy, tmp_path, origin):
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(o)d"
headers = ["proxy X-Client {client_ip}", "proxy - X-Drop"]
""" % {"p": port, "o": origin.port})
    wait_serving(port)
    st, hd, body = get(port, "/headers", host="app.test:%d" % port,
                       headers={"X-Forwarded-For": "10.1.1.1", "X-Drop": "secret"})
    assert st == 200
    h = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert h["host"] == "app.test:%d" % port
    assert h["x-forwarded-for"] == "10.1.1.1, 127.0.0.1"
    assert h["x-client"] == "127.0.0.1" and "x-drop" not in h


def test_round_robin_keepalive_pool_and_passive_health(wmproxy, tmp_path, two_origins):
    a, b = two_origins
    dead = free_port()
    port = free_port()
    p = start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "rr"
balance = "round_robin"
server = [{ addr = "127.0.0.1:%(a)d" }, { addr = "127.0.0.1:%(b)d", weight = 200 }]
[[http.upstream]]
name = "half"
balance = "round_robin"   # the dead server is chosen within two requests (the default
                          # random choice skipped it 6 times in a row once in 64 runs)
server = [{ addr = "127.0.0.1:%(d)d", fall_times = 1, fail_timeout = "30s" },
          { addr = "127.0.0.1:%(a)d" }]
[[http.upstream]]
name = "none"
server = [{ addr = "127.0.0.1:%(d)d" }]

[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/rr/"
proxy_url = "http://rr/"
[[http.server.location]]
rule = "/half/"
proxy_url = "http://half/"
[[http.server.location]]
rule = "/none/"
proxy_url = "http://none/"
""" % {"a": a.port, "b": b.port, "d": dead, "p": port})
    wait_serving(port, path="/rr/conn")
    before = (a.stats["connections"], b.stats["connections"])
    seen = []
    for _ in range(30):
        st, hd, body = get(port, "/rr/headers")
        assert st == 200
        seen.append(json.loads(body)["conn"])
    # weights 1:2 in a smooth order; upstream connections come from the pool:
    # 30 requests on 30 client connections need far fewer upstream ones
    made = (a.stats["connections"] - before[0], b.stats["connections"] - before[1])
    assert sum(made) <= 8, made
    assert len(set(seen)) <= 8
    # a dead server: the request is retried on the next one, the dead one is
    # marked down and skipped afterwards
    for _ in range(6):
        st, _, body = get(port, "/half/conn")
        assert st == 200
    assert wait_log(p, "marked down")
    # nothing up: 502 with a body, at once
    t0 = time.time()
    st, _, body = get(port, "/none/conn")
    assert st == 502 and b"upstream" in body
    assert time.time() - t0 < 5


def test_ip_hash_sticks_and_least_conn(wmproxy, tmp_path, two_origins):
    a, b = two_origins
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "h"
balance = "ip_hash"
server = [{ addr = "127.0.0.1:%(a)d" }, { addr = "127.0.0.1:%(b)d" }]
[[http.upstream]]
name = "lc"
balance = "least_conn"
server = [{ addr = "127.0.0.1:%(a)d" }, { addr = "127.0.0.1:%(b)d" }]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/h/"
proxy_url = "http://h/"
[[http.server.location]]
rule = "/lc/"
proxy_url = "http://lc/"
""" % {"a": a.port, "b": b.port, "p": port})
    wait_serving(port, path="/h/conn")
    ra, rb = a.stats["requests"], b.stats["requests"]
    for _ in range(10):
        assert get(port, "/h/conn")[0] == 200
    da, db = a.stats["requests"] - ra, b.stats["requests"] - rb
    assert sorted((da, db)) == [0, 10], (da, db)
    # least_conn: a slow request holds one server; the next goes to the other
    s = connect(port)
    s.sendall(b"GET /lc/slow?ms=1500 HTTP/1.1\r\nHost: a\r\n\r\n")
    time.sleep(0.3)  # deliberate: the slow request must be in flight first
    ra, rb = a.stats["requests"], b.stats["requests"]
    for _ in range(4):
        assert get(port, "/lc/conn")[0] == 200
    da, db = a.stats["requests"] - ra, b.stats["requests"] - rb
    assert min(da, db) == 0 and max(da, db) == 4, (da, db)
    s.close()


def test_access_rules_and_body_limit(wmproxy, tmp_path, origin):
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
client_max_body_size = "1k"
[[http.server.location]]
rule = "/deny"
deny_ip = ["127.0.0.0/8", "::1"]
static_response = "no"
[[http.server.location]]
rule = "/allow"
allow_ip = "10.0.0.0/8 2001:db8::/32"
static_response = "no"
[[http.server.location]]
rule = "/ok"
allow_ip = "127.0.0.1/32"
static_response = "yes"
[[http.server.location]]
rule = "/echo"
proxy_url = "http://127.0.0.1:%(o)d"
""" % {"p": port, "o": origin.port})
    wait_serving(port, path="/ok")
    assert get(port, "/deny")[0] == 403
    assert get(port, "/allow")[0] == 403
    assert get(port, "/ok")[2] == b"yes"
    assert get(port, "/echo", method="POST", body=b"x" * 100)[0] == 200
    assert get(port, "/echo", method="POST", body=b"x" * 2000)[0] == 413


def test_websocket_through_location(wmproxy, tmp_path, origin):
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/ws"
is_ws = true
proxy_url = "ws://127.0.0.1:%(o)d"
""" % {"p": port, "o": origin.port})
    wait_serving(port, path="/ws")
    s = connect(port)
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    f = s.makefile("rb")
    assert b"101" in f.readline()
    while f.readline() not in (b"\r\n", b""):
        pass
    s.sendall(origin_mod.ws_frame(1, b"hello"))
    op, data = origin_mod.ws_read_frame(f)
    assert (op, data) == (1, b"hello")
    s.close()


def gencert(tmp_path, *names):
    os.makedirs(str(tmp_path), exist_ok=True)
    d = str(tmp_path / "ca")
    r = subprocess.run([BIN, "gen-cert", "--ca-dir", d, "server"] + list(names),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return d


def test_tls_sni_and_https_upstream(wmproxy, tmp_path, origin):
    d1 = gencert(tmp_path / "one", "one.test")
    d2 = gencert(tmp_path / "two", "two.test")
    tport = free_port()
    front = free_port()
    start(wmproxy, tmp_path, """
[http]
access_log = "%(tmp)s/tls.log tlsfmt"
log_format = { tlsfmt = "{host} {ssl_protocol} {ssl_cipher}" }
[[http.server]]
bind_ssl = "127.0.0.1:%(t)d"
up_name = "one.test"
cert = "%(d1)s/server.crt"
key = "%(d1)s/server.key"
static_response = "one {scheme}"
[[http.server]]
bind_ssl = "127.0.0.1:%(t)d"
up_name = "two.test"
cert = "%(d2)s/server.crt"
key = "%(d2)s/server.key"
static_response = "two"
""" % {"t": tport, "d1": d1, "d2": d2, "tmp": tmp_path}, name="tls.toml")
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(f)d"
[[http.server.location]]
rule = "/verify"
proxy_url = "https://one.test:%(t)d"
[[http.server.location]]
rule = "/"
proxy_url = "https://127.0.0.1:%(t)d"
proxy_ssl_verify = false
""" % {"t": tport, "f": front}, name="front.toml")

    def fetch(name, ca):
        ctx = ssl.create_default_context(cafile=ca + "/ca.crt")
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        with socket.create_connection(("127.0.0.1", tport), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                assert s.selected_alpn_protocol() == "h2"  # preferred (test_h2.py)
        ctx.set_alpn_protocols(["http/1.1"])
        with socket.create_connection(("127.0.0.1", tport), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                assert s.selected_alpn_protocol() == "http/1.1"
                s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                          % name.encode())
                return recv_all(s)

    wait_until(lambda: _can_connect(tport), what="TLS port")
    assert fetch("one.test", d1).endswith(b"one https")
    assert fetch("two.test", d2).endswith(b"two")
    tls_log = wait_until(lambda: open(str(tmp_path / "tls.log")).read()
                         if os.path.exists(str(tmp_path / "tls.log")) else "", what="tls log")
    assert "one.test TLSv1.3 TLS_" in tls_log, tls_log
    wait_serving(front)
    # an https upstream without verification; with verification the
    # certificate is for one.test, which nothing trusts here: 502
    st, _, body = get(front, "/", host="one.test")
    assert st == 200 and body.startswith(b"one")
    assert get(front, "/verify", host="one.test")[0] == 502


def test_https_named_upstream_verifies_each_server_by_its_host(wmproxy, tmp_path):
    """proxy_url = "https://NAME" of a named upstream: SNI and the verified
    name are each server's own host (a DNS name, or an IP checked against
    the certificate's IP SAN), not the upstream's name;
    proxy_ssl_trusted_certificate gives the CA, proxy_ssl_name overrides."""
    d = gencert(tmp_path / "up", "localhost", "127.0.0.1")
    tport = free_port()
    front = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_ssl = "127.0.0.1:%(t)d"
cert = "%(d)s/server.crt"
key = "%(d)s/server.key"
static_response = "up {scheme}"
""" % {"t": tport, "d": d}, name="up.toml")
    fp = start(wmproxy, tmp_path, """
[http]
proxy_ssl_trusted_certificate = "%(d)s/ca.crt"
[[http.upstream]]
name = "backend"
server = [{ addr = "localhost:%(t)d" }]
[[http.upstream]]
name = "byip"
server = [{ addr = "127.0.0.1:%(t)d" }]
[[http.server]]
bind_addr = "127.0.0.1:%(f)d"
[[http.server.location]]
rule = "/named"
proxy_url = "https://backend"
[[http.server.location]]
rule = "/ip"
proxy_url = "https://byip"
[[http.server.location]]
rule = "/wrongname"
proxy_url = "https://backend"
proxy_ssl_name = "other.test"
[[http.server.location]]
rule = "/untrusted"
proxy_url = "https://backend"
proxy_ssl_trusted_certificate = "%(d)s/server.crt"
""" % {"t": tport, "f": front, "d": d}, name="front.toml")
    wait_until(lambda: _can_connect(tport), what="TLS port")
    wait_serving(front)
    for path in ("/named", "/ip"):
        st, _, body = get(front, path)
        assert (st, body) == (200, b"up https"), (path, st, body)
    for path in ("/wrongname", "/untrusted"):
        st, _, body = get(front, path)
        # the page says the connection failed (the log line gives the cause)
        assert st == 502 and b"connection to the target failed" in body, (path, st, body)
    assert wait_log(fp, "hostname mismatch"), fp.log()[-2000:]
    assert wait_log(fp, "unable to get local issuer certificate"), fp.log()[-2000:]
    bad = tmp_path / "bad.toml"
    write(bad, '[http]\n[[http.server]]\nbind_addr = "127.0.0.1:%d"\n'
          'proxy_url = "https://x.test"\nproxy_ssl_certificate = "%s/server.crt"\n'
          % (free_port(), d))
    r = subprocess.run([BIN, "check", "-c", str(bad)], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode != 0 and "bad.toml:" in r.stderr \
        and "proxy_ssl_certificate_key" in r.stderr, r.stderr


def test_tls_sni_chooses_among_the_servers_of_the_address_only(wmproxy, tmp_path):
    """SNI picks the certificate among the servers listening on the address
    connected to: a name served only on another TLS address gets this
    address's default (its first server's) certificate, as its Host gets
    this address's default server. (The certificate came from the other
    address's server, so a client verifying that name was served another
    server's content.)"""
    d1 = gencert(tmp_path / "one", "one.test")
    d3 = gencert(tmp_path / "three", "three.test")
    pa, pb = free_port(), free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_ssl = "127.0.0.1:%(a)d"
up_name = "one.test"
cert = "%(d1)s/server.crt"
key = "%(d1)s/server.key"
static_response = "one"
[[http.server]]
bind_ssl = "127.0.0.1:%(b)d"
up_name = "three.test"
cert = "%(d3)s/server.crt"
key = "%(d3)s/server.key"
static_response = "three"
""" % {"a": pa, "b": pb, "d1": d1, "d3": d3}, name="sni.toml")

    def cert_for(port, name):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=name) as s:
                return ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True))

    def pem(d):
        with open(d + "/server.crt") as f:
            return ssl.DER_cert_to_PEM_cert(ssl.PEM_cert_to_DER_cert(f.read()))

    wait_until(lambda: _can_connect(pa) and _can_connect(pb), what="TLS ports")
    assert cert_for(pb, "three.test") == pem(d3)
    assert cert_for(pa, "one.test") == pem(d1)
    assert cert_for(pa, "three.test") == pem(d1)  # not the other address's
    # so a client that trusts three.test's certificate never reaches "one"
    ctx = ssl.create_default_context(cafile=d3 + "/ca.crt")
    with socket.create_connection(("127.0.0.1", pa), timeout=10) as raw:
        with pytest.raises(ssl.SSLCertVerificationError):
            ctx.wrap_socket(raw, server_hostname="three.test")


def _run_on_a_terminal(args, timeout=20):
    """Run args with a terminal as its controlling tty (where OpenSSL asks
    for a key's passphrase), through script(1) from bsdutils: no fork in
    the test process. Nothing is ever typed: its input stays open and
    empty. Returns (exit status, output); a process still running after
    timeout seconds is killed and the test fails."""
    p = subprocess.Popen(["script", "-qec", shlex.join(args), "/dev/null"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        status = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        status = None
    text = p.stdout.read().decode("utf-8", "replace")
    p.stdin.close()
    p.stdout.close()
    assert status is not None, "still waiting after %ss:\n%s" % (timeout, text)
    return status, text


def test_encrypted_key_is_refused_without_a_prompt(tmp_path):
    """An encrypted key is refused at once with a message saying so, by
    [http] as by [stream] (and at a start or a reload alike): OpenSSL's
    default asked for its passphrase on the terminal, which blocked the
    start, a check, or a reload for as long as nobody typed."""
    d = gencert(tmp_path / "one", "one.test")
    enc = str(tmp_path / "enc.key")
    r = subprocess.run(["openssl", "pkey", "-in", d + "/server.key", "-aes256", "-passout",
                        "pass:secret", "-out", enc], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    confs = {
        "http.toml": '[http]\n[[http.server]]\nbind_ssl = "127.0.0.1:%d"\ncert = "%s"\n'
                     'key = "%s"\nstatic_response = "x"\n',
        "stream.toml": '[stream]\n[[stream.server]]\nbind_ssl = "127.0.0.1:%d"\ncert = "%s"\n'
                       'key = "%s"\nproxy_url = "tcp://127.0.0.1:1"\n',
    }
    for name, text in confs.items():
        path = write(tmp_path / name, "disable_control = true\n" +
                     text % (free_port(), d + "/server.crt", enc))
        code, out = _run_on_a_terminal([BIN, "check", "-c", path])
        assert code == 1, out
        assert "pass phrase" not in out, out
        assert "encrypted keys are not supported" in out and enc in out, out


def _can_connect(port):
    try:
        connect(port).close()
        return True
    except OSError:
        return False


def test_reload_changes_routes_without_failures(wmproxy, tmp_path):
    port = free_port()
    cport = free_port()
    text = """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
static_response = "%(v)s"
"""
    path = tmp_path / "rev.toml"
    start(wmproxy, tmp_path, text % {"p": port, "v": "one"}, cport=cport)
    wait_serving(port)
    assert get(port)[2] == b"one"
    write(path, 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport + text % {"p": port, "v": "two"})
    st, _, _ = api(cport, "POST", "/reload")
    assert st == 200
    wait_until(lambda: get(port)[2] == b"two", what="reloaded answer")
    # a broken file is refused; the old settings keep serving
    write(path, 'control = "127.0.0.1:%d"\n[http]\n[[http.server]]\nbind_addr = "x"\n' % cport)
    st, _, _ = api(cport, "POST", "/reload")
    assert st != 200
    assert get(port)[2] == b"two"


def test_check_reports_bad_http_config(tmp_path):
    path = write(tmp_path / "bad.toml", """
[http]
[[http.server]]
bind_addr = "127.0.0.1:1 127.0.0.1:9-:5"
[[http.server.location]]
rule = "/(unclosed"
proxy_url = "http://nowhere-defined"
""")
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "bind_addr" in r.stderr and "ends before it starts" in r.stderr


def test_bad_requests(wmproxy, tmp_path, origin):
    port = free_port()
    start_plain(wmproxy, tmp_path, port, origin.port)
    for raw in (b"GET /conn HTTP/1.1\r\n\r\n",  # no Host
                b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
                b"GET /conn HTTP/1.1\r\nHost : a\r\n\r\n",
                b"GET /%00 HTTP/1.1\r\nHost: a\r\n\r\n"):
        s = connect(port)
        s.sendall(raw)
        data = recv_all(s)
        s.close()
        assert data.split(b" ")[1] in (b"400", b"501"), (raw, data[:80])
    assert get(port, "/conn")[0] == 200


def test_chunked_answer_to_an_http10_client_goes_decoded(wmproxy, tmp_path, origin):
    """RFC 9112 6.1: no Transfer-Encoding to an HTTP/1.0 client, which
    cannot read chunk framing: a chunked answer goes to it decoded, ended by
    the close (as nginx does; the framing reached it raw). An HTTP/1.1
    client on the same server still gets it chunked, trailer and all."""
    port = free_port()
    p = start_plain(wmproxy, tmp_path, port, origin.port)
    for i in range(2):  # the second on a kept upstream connection
        s = connect(port)
        s.sendall(b"GET /chunked/70000 HTTP/1.0\r\nHost: a\r\n\r\n")
        data = recv_all(s)
        s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 "), head
        low = head.lower()
        assert b"transfer-encoding" not in low and b"connection: close" in low, head
        assert body == origin_mod.pattern(70000), (i, len(body), body[:40])
    s = connect(port)
    s.sendall(b"GET /chunked/100 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
    data = recv_all(s)
    s.close()
    assert b"transfer-encoding: chunked" in data.lower() and b"X-Sum" in data, data[:400]
    wait_until(lambda: p.log().count('req="GET /chunked/70000"') >= 2, what="access lines")


def test_local_answers_carry_a_date(wmproxy, tmp_path):
    """RFC 9110 6.6.1: an origin with a clock sends Date in its 2xx-4xx
    answers. The proxy's own answers (a static_response, a 404 for no
    location, an error page) had none; files had theirs."""
    import email.utils
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%d"
[[http.server.location]]
rule = "/s"
static_response = "hi"
""" % port)
    wait_serving(port, path="/s")
    for raw, code in ((b"GET /s HTTP/1.1\r\nHost: a\r\n", b"200"),
                      (b"GET /none HTTP/1.1\r\nHost: a\r\n", b"404"),
                      (b"GET /s HTTP/1.1\r\nHost: a\r\nExpect: x\r\n", b"417")):
        s = connect(port)
        s.sendall(raw + b"Connection: close\r\n\r\n")
        head = recv_all(s).split(b"\r\n\r\n")[0].decode()
        s.close()
        assert head.split(" ")[1] == code.decode(), head
        dates = [ln[6:] for ln in head.split("\r\n") if ln.lower().startswith("date: ")]
        assert len(dates) == 1, head
        assert abs(email.utils.parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 60


def test_yaml_config(wmproxy, tmp_path):
    port = free_port()
    path = write(tmp_path / "rev.yaml", """
disable_control: true
http:
  server:
    - bind_addr: "127.0.0.1:%d"
      up_name: y.test
      location:
        - rule: /hello
          static_response: "yaml {host}"
""" % port)
    wmproxy(["run", "-c", path])
    wait_serving(port, host="y.test", path="/hello")
    assert get(port, "/hello", host="y.test")[2] == b"yaml y.test"




@need_ref
def test_wmproxy_reference_reverse_config_serves(wmproxy, tmp_path):
    """wmproxy's demo reverse.toml (ports moved to free loopback ones, its
    junk key `aa` dropped) starts and serves its static location."""
    text = open(ref_file("reverse.toml")).read()
    hp, pp, cp = free_port(), free_port(), free_port()
    text = text.replace('\naa = "b"\n', "\n")
    text = text.replace('"127.0.0.1:8837"', '"127.0.0.1:%d"' % cp)
    text = text.replace('"0.0.0.0:8090"', '"127.0.0.1:%d"' % pp)
    text = text.replace('bind_addr = "0.0.0.0:82"', 'bind_addr = "127.0.0.1:%d"' % hp)
    text = text.replace("logs/", str(tmp_path) + "/")
    path = write(tmp_path / "reverse.toml", text)
    wmproxy(["run", "-c", path])
    wait_serving(hp, host="soft.wm-proxy.com", path="/static")

    def answer(path):
        """Its limit_req (rate=1000r/s, burst 1) answers 503 to requests
        less than a millisecond apart: ask again."""
        def once():
            r = get(hp, path, host="soft.wm-proxy.com")
            return r if r[0] != 503 else None
        r = wait_until(once, what=path + " past limit_req")
        return r[0], r[2]
    assert answer("/static") == (200, b"I'm Ok 127.0.0.1")
    # /root: file_server (root: the working directory, as wmproxy) with try_paths
    # "{path}/ '/ro(\\w+)/(.*) {path} /ro$1/Cargo.toml' /root/README.md": /root/x
    # is not there, nor /root/Cargo.toml, so the last candidate answers
    assert answer("/root/x") == (200, open("README.md", "rb").read())
    assert answer("/nothing")[0] == 404


def test_reverse_proxy_command(wmproxy, origin):
    port = free_port()
    wmproxy(["reverse-proxy", "-f", "127.0.0.1:%d" % port, "-t", "127.0.0.1:%d" % origin.port,
             "-H", "+ X-Via rp", "-H", "proxy X-Asked yes", "--workers", "1"])
    wait_serving(port, path="/conn")
    st, hd, body = get(port, "/headers", host="svc.test")
    assert st == 200 and hd["x-via"] == "rp"
    h = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert h["x-asked"] == "yes" and h["host"] == "svc.test"
    r = subprocess.run([BIN, "reverse-proxy", "-f", "127.0.0.1:1"], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 2 and "--to" in r.stderr
    r = subprocess.run([BIN, "reverse-proxy", "--help"], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0 and "--from" in r.stdout and "--header" in r.stdout
    r = subprocess.run([BIN, "reverse-proxy", "-t", "no port", "-f", "127.0.0.1:%d" % free_port()],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "addr" in r.stderr


def test_limit_req_token_bucket_kept_across_reload(wmproxy, tmp_path):
    port, cport = free_port(), free_port()
    text = """
[http]
[http.limit_req_zone]
perip = "{client_ip} limit=1m rate=1r/m"
perhost = "{host} limit=1m rate=1r/m"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/ip"
limit_req = "zone=perip brust=2"
static_response = "%(v)s"
[[http.server.location]]
rule = "/host"
limit_req = "zone=perhost burst=0"
limit_req_status = 429
static_response = "host"
[[http.server.location]]
rule = "/free"
static_response = "free"
"""
    start(wmproxy, tmp_path, text % {"p": port, "v": "one"}, cport=cport)
    wait_serving(port, path="/free")
    codes = [get(port, "/ip")[0] for _ in range(6)]
    assert codes == [200, 200, 200, 503, 503, 503], codes  # 1 + burst 2, then refused
    st, hd, _ = get(port, "/host", host="h1.test")
    assert st == 200
    st, hd, body = get(port, "/host", host="h1.test")
    assert st == 429 and hd.get("retry-after") == "1" and b"rate" in body
    assert get(port, "/host", host="h2.test")[0] == 200  # its own key
    assert get(port, "/free")[0] == 200
    # a reload keeps what the zone learnt
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport +
          text % {"p": port, "v": "two"})
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: get(port, "/free")[2] == b"free" and get(port, "/ip")[0] == 503,
               what="reloaded")


def test_limit_req_refused_reload_keeps_the_rate(wmproxy, tmp_path):
    """A reload refused after [http] compiled its zones (a bad regex further
    down) used to set the zone's new rate anyway: the old settings ran on
    with the refused rate. Now only an accepted reload changes it."""
    port, cport = free_port(), free_port()
    text = """
[http]
[http.limit_req_zone]
z = "{client_ip} limit=1m rate=%(rate)s"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/z"
limit_req = "zone=z"
static_response = "z"
[[http.server.location]]
rule = "%(rule)s"
static_response = "free"
"""
    conf = {"p": port, "rate": "1r/m", "rule": "/free"}
    start(wmproxy, tmp_path, text % conf, cport=cport)
    wait_serving(port, path="/free")
    assert get(port, "/z")[0] == 200
    assert get(port, "/z")[0] == 503
    bad = dict(conf, rate="100000r/s", rule="/x([")
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport + text % bad)
    st, _, body = api(cport, "POST", "/reload")
    assert st == 422 and "bad regex" in body["message"], (st, body)
    assert [get(port, "/z")[0] for _ in range(5)] == [503] * 5
    good = dict(conf, rate="100000r/s")
    write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport + text % good)
    assert api(cport, "POST", "/reload")[0] == 200
    # one 200 says the new rate is in force (the old one allows the next in
    # a minute); not several in a row: with burst 0 a second request in the
    # same millisecond is refused at any rate, as in nginx (ms clock)
    wait_until(lambda: get(port, "/z")[0] == 200, what="new rate")


class _Switch:
    """An HTTP backend whose /health answers `status` (switchable) and whose
    other paths answer its name."""

    def __init__(self, name):
        import http.server
        import threading
        sw = self
        self.status = 200
        self.hits = 0

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.startswith("/health"):
                    code, body = sw.status, b"h"
                else:
                    sw.hits += 1
                    code, body = 200, name.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_active_health_checks(wmproxy, tmp_path):
    a, b = _Switch("A"), _Switch("B")
    try:
        port = free_port()
        p = start(wmproxy, tmp_path, """
[http]
[[http.upstream]]
name = "app"
balance = "round_robin"
health_check = { path = "/health", interval = "200ms", timeout = "1s", expect_status = "2xx" }
server = [{ addr = "127.0.0.1:%(a)d", rise_times = 2, fall_times = 2 },
          { addr = "127.0.0.1:%(b)d", rise_times = 2, fall_times = 2 }]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_url = "http://app"
""" % {"a": a.port, "b": b.port, "p": port})
        wait_serving(port)
        b.status = 503
        assert wait_log(p, "health: app|127.0.0.1:%d is down" % b.port)
        before = b.hits
        bodies = {get(port)[2] for _ in range(8)}
        assert bodies == {b"A"} and b.hits == before
        b.status = 200
        assert wait_log(p, "health: app|127.0.0.1:%d is up again" % b.port)
        wait_until(lambda: {get(port)[2] for _ in range(6)} == {b"A", b"B"}, what="B back")
        b.status = 2000  # "HTTP/1.1 2000" is no status line (it was read as 200)
        assert wait_log(p, "health: app|127.0.0.1:%d is down" % b.port, count=2)
        assert "bad response head" in p.log()
        a.status = b.status = 500
        assert wait_log(p, "health: app|127.0.0.1:%d is down" % a.port)
        assert wait_log(p, "health: app|127.0.0.1:%d is down" % b.port)
        st, _, body = get(port)
        assert st == 502 and b"upstream" in body
    finally:
        a.stop()
        b.stop()


def _raw_backend(handler):
    """A one-purpose TCP backend: handler(conn) per connection, in a thread."""
    return serve_tcp(handler)


def _read_head(c):
    data = b""
    while b"\r\n\r\n" not in data:
        d = c.recv(4096)
        if not d:
            break
        data += d
    return data


def test_bad_upstreams(wmproxy, tmp_path):
    """A malformed response is a 502, never forwarded; a response that stalls
    mid-body ends the client's connection instead of looking complete."""
    def garbage(c):
        _read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\nhello!!")
        c.close()

    def stall(c):
        _read_head(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
        time.sleep(5)  # deliberate: the backend stalls longer than proxy_read_timeout
        c.close()

    g, s = _raw_backend(garbage), _raw_backend(stall)
    try:
        port = free_port()
        start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
proxy_read_timeout = "1s"
[[http.server.location]]
rule = "/garbage"
proxy_url = "http://127.0.0.1:%(g)d"
[[http.server.location]]
rule = "/stall"
proxy_url = "http://127.0.0.1:%(s)d"
[[http.server.location]]
rule = "/ok"
static_response = "ok"
""" % {"p": port, "g": g.getsockname()[1], "s": s.getsockname()[1]})
        wait_serving(port, path="/ok")
        st, _, body = get(port, "/garbage")
        assert st == 502 and b"hello" not in body
        c = connect(port)
        c.sendall(b"GET /stall HTTP/1.1\r\nHost: a\r\n\r\n")
        t0 = time.time()
        data = recv_all(c)  # ends when the proxy closes
        c.close()
        head, _, body = data.partition(b"\r\n\r\n")
        assert b" 200 " in head and len(body) == 1000, len(body)
        assert time.time() - t0 < 4
    finally:
        g.close()
        s.close()


def test_slow_clients_do_not_block_others(wmproxy, tmp_path):
    """Slowloris: many sockets trickling a head are cut by the head timeout,
    and other clients are served meanwhile."""
    port = free_port()
    start(wmproxy, tmp_path, """
[http]
[[http.server]]
bind_addr = "127.0.0.1:%d"
client_read_timeout = "1s"
static_response = "fast"
""" % port)
    wait_serving(port)
    slow = []
    for _ in range(300):
        s = connect(port)
        s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")
        slow.append(s)
    t0 = time.time()
    for _ in range(20):
        assert get(port)[2] == b"fast"
    assert time.time() - t0 < 3
    # each slow socket is answered 408 and closed after the head timeout
    deadline = time.time() + 10
    for s in slow:
        s.settimeout(max(0.1, deadline - time.time()))
        data = recv_all(s)
        assert data.startswith(b"HTTP/1.1 408"), data[:40]
        s.close()


def test_access_and_error_logs_with_every_variable(wmproxy, tmp_path, origin):
    port = free_port()
    logs = tmp_path / "logs"
    os.makedirs(str(logs))
    p = start(wmproxy, tmp_path, """
[http]
access_log = "access main"
error_log = "errors"
[http.log_names]
access = "%(d)s/access.log trace"
errors = "%(d)s/error.log"
[http.log_format]
main = "{d(%%Y)} {client_ip} {method} {url} path={path} query={query} host={host} st={status} up={up_status} body={body_bytes_sent} rt={request_time} urt={up_response_time} ua={addr_is}{up_addr} ref={referer} agent={user_agent} cookie={cookie} tls={ssl_protocol}/{ssl_cipher}"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/dead"
proxy_url = "http://127.0.0.1:%(dead)d"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(o)d"
""" % {"d": logs, "p": port, "o": origin.port, "dead": free_port()})
    wait_serving(port, path="/conn")
    get(port, "/bytes/100?x=1", host="log.test", headers={"Referer": "http://r/",
                                                          "User-Agent": 'ua"evil',
                                                          "Cookie": "c=1"})
    assert get(port, "/dead")[0] == 502

    def line_with(text):
        try:
            return [ln for ln in open(str(logs / "access.log")).read().splitlines() if text in ln]
        except OSError:
            return []
    lines = wait_until(lambda: line_with("/bytes/100"), what="access line")
    ln = lines[-1]
    year = time.strftime("%Y")
    assert ln.startswith(year + " 127.0.0.1 GET /bytes/100?x=1 path=/bytes/100 query=x=1 "
                         "host=log.test st=200 up=200 body=100 rt="), ln
    assert "urt=0." in ln and "ua={addr_is}127.0.0.1:%d" % origin.port in ln
    assert 'ref=http://r/ agent=ua?evil cookie=c=1 tls=-/-' in ln
    err = wait_until(lambda: open(str(logs / "error.log")).read() if os.path.exists(
        str(logs / "error.log")) else "", what="error line")
    assert "status:502" in err and "/dead" in err
    # logrotate: move the file away, SIGUSR1, new lines go to a new file
    os.rename(str(logs / "access.log"), str(logs / "access.log.1"))
    p.p.send_signal(__import__("signal").SIGUSR1)
    assert wait_log(p, "log files reopened")
    get(port, "/conn")
    wait_until(lambda: line_with("/conn"), what="line in the reopened file")


def test_reload_under_load_fails_no_request(wmproxy, tmp_path, origin):
    import threading
    port, cport = free_port(), free_port()
    text = """
[http]
[[http.upstream]]
name = "o"
server = [{ addr = "127.0.0.1:%(o)d", weight = %(w)d }]
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/"
proxy_url = "http://o"
headers = ["+ X-Gen %(w)d"]
"""
    start(wmproxy, tmp_path, text % {"o": origin.port, "p": port, "w": 1}, cport=cport)
    wait_serving(port, path="/conn")
    stop = threading.Event()
    results = {"ok": 0, "bad": []}

    def load():
        while not stop.is_set():
            try:
                s = connect(port)
                for _ in range(5):  # keep-alive requests across the reloads
                    s.sendall(b"GET /bytes/2000 HTTP/1.1\r\nHost: a\r\n\r\n")
                    head = b""
                    while b"\r\n\r\n" not in head:
                        d = s.recv(1)
                        if not d:
                            raise OSError("closed")
                        head += d
                    body = b""
                    while len(body) < 2000:
                        d = s.recv(2000 - len(body))
                        if not d:
                            raise OSError("closed mid-body")
                        body += d
                    if b" 200 " not in head.split(b"\r\n")[0]:
                        raise OSError(head[:40])
                    results["ok"] += 1
                s.close()
            except OSError as e:
                results["bad"].append(str(e))
    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for w in range(2, 6):
            write(tmp_path / "rev.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n' % cport +
                  text % {"o": origin.port, "p": port, "w": w})
            assert api(cport, "POST", "/reload")[0] == 200
            wait_until(lambda: get(port, "/conn")[1].get("x-gen") == str(w), what="gen %d" % w)
            # the load goes on across each generation (a fast reload is no excuse)
            done = results["ok"]
            wait_until(lambda: results["ok"] >= done + 15 or results["bad"],
                       what="requests after reload %d" % w)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert results["bad"] == [] and results["ok"] > 50, (results["ok"], results["bad"][:5])


@pytest.mark.parametrize("name,text,where", [
    ("regex.toml", '[[http.server]]\nbind_addr = "127.0.0.1:1"\n[[http.server.location]]\n'
     'rule = "/x(["\nstatic_response = "x"\n',
     (4, 8, "http.server[0].location[0].rule", "bad regex")),
    ("cidr.toml", '[[http.server]]\nbind_addr = "127.0.0.1:1"\nallow_ip = ["10.0.0.0/33"]\n'
     'static_response = "x"\n',
     (3, 12, "http.server[0].allow_ip", "10.0.0.0/33")),
    ("method.toml", '[[http.server]]\nbind_addr = "127.0.0.1:1"\n[[http.server.location]]\n'
     'rule = { path = "/", method = "GET FETCH" }\nstatic_response = "x"\n',
     (4, 8, "http.server[0].location[0].rule", "FETCH")),
    ("rate.toml", '[http]\nlimit_req_zone = { z = "{client_ip} limit=10m rate=fast" }\n',
     (2, 24, "http.limit_req_zone.z", "rate=")),
    # an unknown variable would stay as written: one key for every client
    ("zonekey.toml", '[http]\nlimit_req_zone = { z = "$binary_remote_addr rate=1r/s" }\n',
     (2, 24, "http.limit_req_zone.z", '"$binary_remote_addr" is not known')),
    ("zonekey2.toml", '[http]\nlimit_req_zone = { z = "{clientip} rate=1r/s" }\n',
     (2, 24, "http.limit_req_zone.z", '"{clientip}" is not known')),
    ("log.toml", '[[http.server]]\nbind_addr = "127.0.0.1:1"\n'
     'access_log = "nolog nofmt"\nstatic_response = "x"\n',
     (3, 14, "http.server[0].access_log", "log_format")),
    # a request rate as a file answer's bandwidth: named where it is written
    ("bwrate.toml", '[http]\nrate_limit = "10r/s"\n[[http.server]]\nbind_addr = "127.0.0.1:1"\n'
     '[[http.server.location]]\nrule = "/"\nfile_server = { root = "." }\n',
     (2, 14, "http.rate_limit", "bytes per time")),
    # inherited: the error points where the value is written, not at the location
    ("inherit.yaml", 'http:\n  proxy_url: "http://"\n  server:\n    - bind_addr: "127.0.0.1:1"\n'
     '      location:\n        - rule: "/"\n',
     (2, 14, "http.proxy_url", "expected a URL")),
])
def test_compile_errors_name_file_line_key(tmp_path, name, text, where):
    """Errors found while compiling [http] (after the schema accepted it) read
    "file:line:col: key: message" like every other config error."""
    top = "disable_control: true\n" if name.endswith(".yaml") else "disable_control = true\n"
    path = write(tmp_path / name, top + text)
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    line, col, key, msg = where
    first = r.stderr.splitlines()[0]
    assert first.startswith("%s:%d:%d: %s: " % (path, line + 1, col, key)), first
    assert msg in first, first


def test_rate_limit_on_a_location_without_files_is_a_warning(tmp_path):
    """rate_limit meters file_server answers (as in wmproxy): written on a
    location that only proxies, it would limit nothing without a word; check
    says so at file:line:col. Inherited from [http] or the server it stays
    quiet (those levels hold it for their file servers)."""
    path = write(tmp_path / "rl.toml", 'disable_control = true\n[http]\nrate_limit = "1m/s"\n'
                 '[[http.server]]\nbind_addr = "127.0.0.1:1"\n'
                 '[[http.server.location]]\nrule = "/api"\nproxy_url = "http://127.0.0.1:2"\n'
                 'rate_limit = "4m/s"\n'
                 '[[http.server.location]]\nrule = "/"\nfile_server = { root = "." }\n'
                 'rate_limit = "2m/s"\n')
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    warns = [ln for ln in r.stderr.splitlines() if "rate_limit" in ln]
    assert len(warns) == 1, r.stderr
    assert warns[0].startswith("warning: %s:9:14: http.server[0].location[0].rate_limit: " % path), warns
    assert "limits nothing here" in warns[0], warns


def test_idle_client_gives_its_upstream_connection_back(wmproxy, tmp_path, origin):
    """A keep-alive client waiting between requests holds no upstream
    connection: once it is quiet (WM_HTTP_QUIET_MS) the connection goes
    back to the pool, so another client reuses it (nginx's upstream
    keepalive), and the idle client's next request is served from the pool
    as well."""
    port = free_port()
    path = write(tmp_path / "one.toml", """disable_control = true
workers = 1
default_level = "debug"
[http]
[[http.upstream]]
name = "o"
server = [{ addr = "127.0.0.1:%d" }]
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://o"
""" % (origin.port, port))
    p = wmproxy(["run", "-c", path])
    wait_serving(port, path="/conn")

    def conn_id(s):
        s.sendall(b"GET /conn HTTP/1.1\r\nHost: a\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
        head, _, body = data.partition(b"\r\n\r\n")
        n = int([h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")][0]
                .split(b":")[1])
        while len(body) < n:
            body += s.recv(4096)
        return body.strip()

    a = connect(port)
    first = conn_id(a)           # a stays open and idle
    assert wait_log(p, "client idle, upstream back to the pool")
    b = connect(port)
    assert conn_id(b) == first   # b is served on the connection a used
    assert wait_log(p, "client idle, upstream back to the pool", count=2)
    assert conn_id(a) == first   # and a gets it back for its next request
    a.close()
    b.close()


def _full_listener():
    """A listening socket whose accept queue is full: a further connect gets
    no answer (its SYN is dropped), so only the connect timeout ends it."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(ls.getsockname())
        except BlockingIOError:
            pass
        fillers.append(s)
    return ls, fillers


def test_timeouts_each_side_each_direction(wmproxy, tmp_path):
    """client_read_timeout (request body stalls: 408), proxy_connect_timeout
    (no answer to the connect: 504), proxy_read_timeout (no response head:
    504), proxy_write_timeout (the upstream stops taking the request body:
    504) and client_write_timeout (a client that stops reading is cut), each
    honoured on its own: every other timeout is 30 s, and each case ends
    within a few seconds."""
    import threading

    def sink(c):  # reads the head, then nothing: the request body piles up
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        _read_head(c)
        time.sleep(20)  # deliberate: a backend that never reads on
        c.close()

    def mute(c):  # reads everything, never answers
        try:
            while c.recv(65536):
                pass
        except OSError:
            pass

    def big(c):  # a 64 MiB answer for a client that does not read
        _read_head(c)
        try:
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 67108864\r\n\r\n")
            chunk = b"x" * 65536
            for _ in range(1024):
                c.sendall(chunk)
        except OSError:
            pass
        c.close()

    sk, mu, bg = _raw_backend(sink), _raw_backend(mute), _raw_backend(big)
    full, fillers = _full_listener()
    port = free_port()
    path = write(tmp_path / "t.toml", """disable_control = true
workers = 1
default_level = "debug"
[http]
client_read_timeout = "30s"
client_write_timeout = "30s"
proxy_connect_timeout = "30s"
proxy_read_timeout = "30s"
proxy_write_timeout = "30s"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/body"
client_read_timeout = "1s"
proxy_url = "http://127.0.0.1:%(mu)d"
[[http.server.location]]
rule = "/connect"
proxy_connect_timeout = "1s"
proxy_url = "http://127.0.0.1:%(full)d"
[[http.server.location]]
rule = "/read"
proxy_timeout = "1s"
proxy_url = "http://127.0.0.1:%(mu)d"
[[http.server.location]]
rule = "/write"
proxy_write_timeout = "1s"
proxy_url = "http://127.0.0.1:%(sk)d"
[[http.server.location]]
rule = "/big"
client_write_timeout = "1s"
proxy_url = "http://127.0.0.1:%(bg)d"
[[http.server.location]]
rule = "/ok"
static_response = "ok"
""" % {"p": port, "mu": mu.getsockname()[1], "full": full.getsockname()[1],
       "sk": sk.getsockname()[1], "bg": bg.getsockname()[1]})
    p = wmproxy(["run", "-c", path])
    wait_serving(port, path="/ok")
    try:
        # client_read_timeout: 3 of 10 body bytes, then silence
        t0 = time.time()
        c = connect(port, timeout=20)
        c.sendall(b"POST /body HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        data = recv_all(c)
        c.close()
        assert data.startswith(b"HTTP/1.1 408"), data[:60]
        assert time.time() - t0 < 6

        for what in ("/connect", "/read"):
            t0 = time.time()
            st, _, _ = get(port, what, timeout=20)
            assert st == 504, (what, st)
            assert time.time() - t0 < 6, what

        # proxy_write_timeout: a 32 MiB body the upstream never reads
        t0 = time.time()
        c = connect(port, timeout=20)
        n = 32 << 20
        c.sendall(b"POST /write HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % n)

        def push():
            try:
                chunk = b"y" * 65536
                for _ in range(n // len(chunk)):
                    c.sendall(chunk)
            except OSError:
                pass
        th = threading.Thread(target=push, daemon=True)
        th.start()
        data = b""
        while b"\r\n\r\n" not in data:
            d = c.recv(4096)
            if not d:
                break
            data += d
        assert data.startswith(b"HTTP/1.1 504"), (data[:60], p.log()[-3000:])
        assert time.time() - t0 < 10
        c.close()

        # client_write_timeout: a client that stops reading a 64 MiB answer
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect(("127.0.0.1", port))
        c.sendall(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
        assert wait_log(p, "end=client-write-timeout", timeout=10), p.log()[-2000:]
        c.close()
    finally:
        for s in [sk, mu, bg, full] + fillers:
            s.close()


def test_early_answer_does_not_park_an_upstream_owed_a_body(wmproxy, tmp_path):
    """An upstream that answers before the request body came (405 at once,
    keep-alive) still waits for that body: its connection must not go back
    to the pool, or the next request's bytes would be read as the rest of
    the body (a desynchronised connection). The next client's request
    arrives first on a connection of its own."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(16)
    ls.settimeout(10)
    seen = []  # (upstream connection index, first line of what arrived)
    conns = []

    def upstream():
        for i in range(2):
            try:
                s, _ = ls.accept()
            except OSError:
                return
            conns.append(s)
            s.settimeout(10)
            data = b""
            while b"\r\n\r\n" not in data:
                d = s.recv(4096)
                if not d:
                    break
                data += d
            seen.append((i, data.split(b"\r\n", 1)[0]))
            s.sendall(b"HTTP/1.1 405 Not Allowed\r\nContent-Length: 2\r\n\r\nno")
            # keep-alive, the body is never read; whatever comes next is noted
            s.settimeout(1.5)
            try:
                more = s.recv(4096)
            except OSError:
                more = b""
            if more:
                seen.append((i, more.split(b"\r\n", 1)[0]))

    import threading
    t = threading.Thread(target=upstream, daemon=True)
    t.start()
    port = free_port()
    path = write(tmp_path / "early.toml", """disable_control = true
workers = 1
[http]
[[http.upstream]]
name = "o"
server = [{ addr = "127.0.0.1:%d" }]
[[http.server]]
bind_addr = "127.0.0.1:%d"
proxy_url = "http://o"
""" % (ls.getsockname()[1], port))
    wmproxy(["run", "-c", path])

    def listening():
        try:
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
            return True
        except OSError:
            return False
    wait_until(listening, what="listening")
    a = connect(port)
    a.sendall(b"POST /owed HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")  # body never sent
    data = b""
    while b"\r\n\r\nno" not in data:
        d = a.recv(4096)
        assert d, data
        data += d
    assert b" 405 " in data.split(b"\r\n", 1)[0]
    status, _, _ = get(port, "/next", host="a")
    assert status == 405
    t.join(timeout=5)
    a.close()
    for s in conns:
        s.close()
    ls.close()
    firsts = [line for i, line in seen if line.startswith(b"GET /next")]
    assert firsts, seen
    # GET /next came on connection 1, as its first request, not after POST /owed on 0
    assert (1, firsts[0]) in seen and (0, firsts[0]) not in seen, seen


def test_access_log_text_line_has_no_c1_controls(wmproxy, tmp_path, origin):
    """A header value carrying a C1 control (U+009B, CSI: 0xC2 0x9B in UTF-8)
    must not reach the text access log raw: a terminal that tails the file
    would take it as an escape sequence. Other UTF-8 (e, with an accent)
    stays as it is."""
    port = free_port()
    logs = tmp_path / "logs"
    start(wmproxy, tmp_path, """
[http]
access_log = "%(d)s/access.log main"
[http.log_format]
main = "{url} agent={user_agent} ref={referer}"
[[http.server]]
bind_addr = "127.0.0.1:%(p)d"
[[http.server.location]]
rule = "/"
proxy_url = "http://127.0.0.1:%(o)d"
""" % {"d": logs, "p": port, "o": origin.port})
    wait_serving(port, path="/conn")
    s = connect(port)
    s.sendall(b"GET /c1 HTTP/1.1\r\nHost: a\r\nUser-Agent: x\xc2\x9b31mred \xc3\xa9\r\n"
              b"Referer: y\xc2\x85z\r\nConnection: close\r\n\r\n")
    recv_all(s)
    s.close()

    def line():
        try:
            data = open(str(logs / "access.log"), "rb").read()
        except OSError:
            return None
        return [ln for ln in data.splitlines() if ln.startswith(b"/c1 ")]
    ln = wait_until(line, what="access line")[-1]
    assert b"\xc2\x9b" not in ln and b"\xc2\x85" not in ln, ln
    assert b"agent=x?31mred \xc3\xa9" in ln and b"ref=y?z" in ln, ln


def test_answer_cut_by_the_target_says_why(wmproxy, tmp_path):
    """An answer the target cuts short (it closes or resets before its
    Content-Length is sent, or stops sending until proxy_read_timeout) has
    an access line that says so: it looked like a complete 200 with fewer
    bytes, and the stalled one had no request line at all."""
    def answer(c):
        try:
            c.settimeout(10)
            req = c.recv(4096)
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
            if b"/reset" in req:
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif b"/stall" in req:
                c.recv(1)  # until the proxy closes
        except OSError:
            pass
        finally:
            c.close()
    ls = serve_tcp(answer)
    port = free_port()
    p = start_plain(wmproxy, tmp_path, port, ls.getsockname()[1], 'proxy_read_timeout = "1s"\n')
    for path, why in (("/close", "(the target closed|target connection error) before the answer "
                                 "ended"),
                      ("/reset", "(the target closed|target connection error) before the answer "
                                 "ended"),
                      ("/stall", "nothing of the answer moved in time")):
        s = connect(port)
        s.sendall(b"GET %s HTTP/1.1\r\nHost: a\r\n\r\n" % path.encode())
        assert b" 200 " in recv_all(s)
        s.close()
        wait_until(lambda: 'req="GET %s"' % path in p.log(), what="the access line")
        line = [ln for ln in p.log().splitlines() if 'req="GET %s"' % path in ln][0]
        assert re.search(r'code=200 .*why="%s"$' % why, line), line
    ls.close()
