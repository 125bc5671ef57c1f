"""Destination and client rules of the forward proxy (deny_targets,
allow_targets, deny_clients, allow_clients), the safe default of a proxy
listening beyond loopback, the control API's refusal to listen beyond
loopback without a token, and a tunnel server config that opens only the
listeners it names (issue 16, points 1 and 8)."""

import socket
import subprocess

import pytest

from conftest import BIN
from helpers import control as ctl
from helpers import http1
from helpers import socks
from helpers.net import connect, free_port, free_ports, recv_exact, wait_port, wait_until
from helpers.origin import pattern, start_udp_echo
from helpers.tunnel import wait_log, write_config


def toml_list(v):
    return "[" + ", ".join('"%s"' % x for x in v) + "]"


def start(wmproxy, tmp_path, bind="127.0.0.1", name="wm.toml", control=None, **rules):
    """A proxy from a config file with the given rule lists; returns
    (proc, port, path)."""
    port = free_port()
    text = "workers = 2\n"
    text += 'control = "127.0.0.1:%d"\n' % control if control else "disable_control = true\n"
    text += '[proxy]\nbind_addr = "%s:%d"\n' % (bind, port)
    for k, v in rules.items():
        text += "%s = %s\n" % (k, toml_list(v))
    path = ctl.write(tmp_path / name, text)
    p = wmproxy(["run", "-c", path], port=port)
    return p, port, path


def get(port, url, host=None):
    s = connect(port)
    s.sendall(http1.request("GET", url, [("Host", host or url.split("/")[2])]))
    r = http1.Reader(s).response()
    s.close()
    return r


def connect_status(port, target):
    s = connect(port)
    s.sendall(b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (target.encode(), target.encode()))
    r = http1.Reader(s).response(head_request=True)
    return s, r


def socks_rep(port, host, tport):
    s, rep, _ = socks.handshake(port, host, tport)
    s.close()
    return rep


# ---- destination rules ----

def test_deny_cidr_http_connect_socks5(wmproxy, tmp_path, origin, origin6):
    p, port, _ = start(wmproxy, tmp_path, deny_targets=["127.0.0.0/8"])
    url = "http://127.0.0.1:%d/bytes/10" % origin.port
    r = get(port, url)
    assert r.status == 403 and b"not allowed by this proxy's rules" in r.body, (r.status, r.body)
    s, r = connect_status(port, "127.0.0.1:%d" % origin.port)
    s.close()
    assert r.status == 403
    assert socks_rep(port, "127.0.0.1", origin.port) == 2  # not allowed by ruleset
    # one line per refusal naming client, target and rule
    assert wait_until(lambda: p.log().count("acl: refused") >= 3, 5), p.log()
    assert wait_log(p, "acl: refused"), p.log()[-3000:]
    line = next(ln for ln in p.log().splitlines() if "acl: refused" in ln)
    assert "client=127.0.0.1:" in line and "target=127.0.0.1:%d" % origin.port in line
    assert 'rule=deny_targets "127.0.0.0/8"' in line
    # what the rule does not name still works (IPv6 loopback here)
    r = get(port, "http://[::1]:%d/bytes/10" % origin6.port, "[::1]:%d" % origin6.port)
    assert r.status == 200 and r.body == pattern(10)


def test_deny_loopback_covers_the_unspecified_address(wmproxy, tmp_path, origin, origin6):
    # a connect to 0.0.0.0 (::) reaches 127.0.0.1 (::1): a rule denying
    # loopback refuses it too, in every spelling and protocol
    p, port, _ = start(wmproxy, tmp_path, deny_targets=["127.0.0.0/8", "[::1]"])
    for target in ("0.0.0.0:%d" % origin.port, "[::ffff:0.0.0.0]:%d" % origin.port,
                   "[::]:%d" % origin6.port):
        s, r = connect_status(port, target)
        s.close()
        assert r.status == 403, (target, r.status)
        assert get(port, "http://%s/bytes/10" % target, target).status == 403, target
    assert socks_rep(port, "0.0.0.0", origin.port) == 2
    assert socks_rep(port, "::", origin6.port) == 2
    assert wait_log(p, 'addr=0.0.0.0:%d rule=deny_targets "127.0.0.0/8"' % origin.port), \
        p.log()[-3000:]
    # a rule for another address leaves it alone
    _, port2, _ = start(wmproxy, tmp_path, name="b.toml", deny_targets=["10.0.0.0/8"])
    s, r = connect_status(port2, "0.0.0.0:%d" % origin.port)
    s.close()
    assert r.status == 200


def test_host_pattern_port_range_and_yaml(wmproxy, tmp_path, origin, echo):
    port = free_port()
    path = ctl.write(tmp_path / "wm.yaml",
                     "disable_control: true\nworkers: 2\nproxy:\n"
                     "  bind_addr: 127.0.0.1:%d\n"
                     "  deny_targets:\n"
                     "    - \"*.internal\"\n"
                     "    - 127.0.0.1:%d-%d\n" % (port, origin.port, origin.port))
    p = wmproxy(["run", "-c", path], port=port)
    # a name the pattern names is refused before any lookup (else: 502)
    r = get(port, "http://DB.Internal:%d/" % origin.port)
    assert r.status == 403, r.status
    assert socks_rep(port, "x.y.internal", 80) == 2
    assert wait_log(p, 'rule=deny_targets "*.internal"'), p.log()[-3000:]
    # the port range: the origin's port is refused, another port is not
    assert get(port, "http://127.0.0.1:%d/bytes/5" % origin.port).status == 403
    s, r = connect_status(port, "127.0.0.1:%d" % echo.port)
    assert r.status == 200
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.close()


def test_dns_rebinding_name_resolving_to_denied_address(wmproxy, tmp_path, origin):
    # "localhost" is not listed, but every address it resolves to is
    p, port, _ = start(wmproxy, tmp_path, deny_targets=["127.0.0.0/8", "::1"])
    r = get(port, "http://localhost:%d/bytes/10" % origin.port)
    assert r.status == 403, (r.status, r.body)
    assert socks_rep(port, "localhost", origin.port) == 2
    assert wait_log(p, "acl: refused"), p.log()[-3000:]
    line = next(ln for ln in p.log().splitlines() if "acl: refused" in ln)
    assert "target=localhost:%d" % origin.port in line
    assert "addr=127.0.0.1:%d" % origin.port in line or "addr=[::1]:%d" % origin.port in line


def test_allow_list(wmproxy, tmp_path, origin, echo):
    p, port, _ = start(wmproxy, tmp_path, allow_targets=["127.0.0.1:%d" % origin.port])
    assert get(port, "http://127.0.0.1:%d/bytes/7" % origin.port).body == pattern(7)
    s, r = connect_status(port, "127.0.0.1:%d" % echo.port)
    s.close()
    assert r.status == 403
    assert wait_log(p, "rule=not in allow_targets"), p.log()[-3000:]


def test_socks5_udp_datagrams_are_judged(wmproxy, tmp_path):
    denied, allowed = start_udp_echo("127.0.0.1"), start_udp_echo("127.0.0.1")
    try:
        p, port, _ = start(wmproxy, tmp_path, deny_targets=["127.0.0.1:%d" % denied.port])
        c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        c.bind(("127.0.0.1", 0))
        c.settimeout(5)
        s, rep, relay = socks.handshake(port, "0.0.0.0", 0, cmd=3)
        assert rep == 0
        # in order: the denied one first, so once the allowed answer is
        # back the denied one was judged (and dropped)
        c.sendto(socks.udp_header("127.0.0.1", denied.port) + b"no", relay)
        c.sendto(socks.udp_header("localhost", denied.port) + b"no", relay)
        c.sendto(socks.udp_header("127.0.0.1", allowed.port) + b"yes", relay)
        host, uport, body = socks.parse_udp(c.recvfrom(65535)[0])
        assert (uport, body) == (allowed.port, b"echo:yes")
        c.settimeout(0.3)
        with pytest.raises(socket.timeout):
            c.recvfrom(65535)
        assert wait_log(p, "acl: refused udp"), p.log()
        assert p.log().count("acl: refused udp") == 1  # once per association
        assert "target=127.0.0.1:%d addr=" % denied.port in p.log(), p.log()
        s.close()
        c.close()
    finally:
        denied.close()
        allowed.close()


def test_socks5_udp_refusal_names_a_long_target_whole(wmproxy, tmp_path):
    """The refusal line of a UDP datagram names its target in full: a name
    longer than an address was cut at 71 bytes."""
    p, port, _ = start(wmproxy, tmp_path, deny_targets=[".example"])
    name = "x" * 60 + "." + "y" * 60 + ".example"
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.bind(("127.0.0.1", 0))
    s, rep, relay = socks.handshake(port, "0.0.0.0", 0, cmd=3)
    assert rep == 0
    c.sendto(socks.udp_header(name, 5353) + b"no", relay)
    assert wait_log(p, "acl: refused udp"), p.log()
    assert "target=%s:5353 addr=- rule=deny_targets" % name in p.log(), p.log()[-2000:]
    s.close()
    c.close()


# ---- the safe default beyond loopback, and hot reload ----

def test_wildcard_bind_guards_local_addresses_until_allowed(wmproxy, tmp_path, origin, echo):
    cport = free_port()
    p, port, path = start(wmproxy, tmp_path, bind="0.0.0.0", control=cport)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    r = get(port, "http://127.0.0.1:%d/bytes/3" % origin.port)
    assert r.status == 403, r.status
    assert wait_log(p, "loopback address (refused by default"), p.log()[-3000:]
    assert socks_rep(port, "localhost", origin.port) == 2
    # cloud metadata: refused at once, nothing is dialled
    r = get(port, "http://169.254.169.254/latest/meta-data/")
    assert r.status == 403
    assert wait_log(p, "link-local address"), p.log()[-3000:]
    s, r = connect_status(port, "[::]:%d" % origin.port)
    s.close()
    assert r.status == 403

    # listed explicitly: allowed (a reload; connections in flight stay)
    ctl.write(path, open(path).read() + 'allow_targets = ["127.0.0.1:%d"]\n' % echo.port)
    code, _, doc = ctl.api(cport, "POST", "/reload", timeout=30)
    assert code == 200, doc
    tunnel, r = connect_status(port, "127.0.0.1:%d" % echo.port)
    assert r.status == 200
    assert get(port, "http://127.0.0.1:%d/bytes/3" % origin.port).status == 403
    ctl.write(path, open(path).read().replace(
        '"127.0.0.1:%d"' % echo.port, '"127.0.0.1:%d", "0.0.0.0/0"' % origin.port))
    code, _, doc = ctl.api(cport, "POST", "/reload", timeout=30)
    assert code == 200, doc
    assert get(port, "http://127.0.0.1:%d/bytes/3" % origin.port).body == pattern(3)
    # a catch-all is no explicit allow of loopback; the old tunnel goes on
    s, r = connect_status(port, "127.0.0.1:%d" % echo.port)
    s.close()
    assert r.status == 403
    tunnel.sendall(b"still")
    assert recv_exact(tunnel, 5) == b"still"
    tunnel.close()


def test_proxy_mapping_guards_the_client_loopback(wmproxy, tmp_path, origin):
    """A `proxy` mapping publishes the client node's proxy on the server's
    public port: its loopback is guarded unless allowed by address."""
    cp, pp, ep = free_ports(3)
    cred = {"username": "wm", "password": "pw"}
    srv_path = write_config(tmp_path / "s.toml", dict(
        bind_addr="127.0.0.1:%d" % cp, mode="server", map_proxy_bind="127.0.0.1:%d" % pp,
        **cred), top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_path, "--workers", "2"], port=cp)
    for allow, want in ((None, b"403"), (["127.0.0.1:%d" % origin.port], b"200")):
        extra = {"allow_targets": allow} if allow else {}
        path = write_config(tmp_path / "c.toml", dict(
            bind_addr="127.0.0.1:%d" % ep, server="127.0.0.1:%d" % cp, **cred, **extra),
            [{"name": "inside", "mode": "proxy"}], top={"disable_control": True})
        before = srv.log().count("attached")
        cli = wmproxy(["run", "-c", path, "--workers", "2"], port=ep)
        assert wait_log(srv, "attached", count=before + 1), cli.log()
        assert wait_log(cli, "tunnel: connected"), cli.log()
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time",
                            "20", "-x", "http://wm:pw@127.0.0.1:%d" % pp,
                            "http://127.0.0.1:%d/bytes/9" % origin.port],
                           capture_output=True, timeout=30)
        assert r.stdout == want, (allow, r, cli.log()[-2000:])
        cli.stop()


def test_two_level_proxy_server_applies_its_rules(wmproxy, tmp_path, origin, echo):
    cp, ep = free_ports(2)
    srv_path = write_config(tmp_path / "s.toml", dict(
        bind_addr="127.0.0.1:%d" % cp, mode="server",
        deny_targets=["127.0.0.1:%d" % origin.port]), top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_path, "--workers", "2"], port=cp)
    path = write_config(tmp_path / "c.toml", dict(bind_addr="127.0.0.1:%d" % ep,
                                                  server="127.0.0.1:%d" % cp),
                        top={"disable_control": True})
    cli = wmproxy(["run", "-c", path, "--workers", "2"], port=ep)
    assert wait_log(cli, "tunnel: connected"), cli.log()
    assert get(ep, "http://127.0.0.1:%d/bytes/3" % origin.port).status == 403
    s, r = connect_status(ep, "127.0.0.1:%d" % echo.port)
    assert r.status == 200
    s.close()
    assert wait_log(srv, "acl: refused"), srv.log()[-3000:]


# ---- client rules ----

def refused_answer(port, source):
    """Connect from source, send nothing, read until the proxy closes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    data = b""
    while True:
        try:
            b = s.recv(4096)
        except ConnectionResetError:
            break
        if not b:
            break
        data += b
    s.close()
    return data


def test_client_rules(wmproxy, tmp_path, origin):
    p, port, _ = start(wmproxy, tmp_path, deny_clients=["127.0.0.2"])
    data = refused_answer(port, "127.0.0.2")
    assert data.startswith(b"HTTP/1.1 403 Forbidden\r\n"), data
    assert wait_log(p, 'acl: refused client=127.0.0.2:'), p.log()
    assert wait_log(p, 'rule=deny_clients "127.0.0.2"'), p.log()[-3000:]
    assert get(port, "http://127.0.0.1:%d/bytes/4" % origin.port).body == pattern(4)

    p2, port2, _ = start(wmproxy, tmp_path, name="b.toml", allow_clients=["10.0.0.0/8", "::1"])
    assert b"client not allowed" in refused_answer(port2, "127.0.0.1")
    assert wait_log(p2, "rule=not in allow_clients"), p2.log()


def test_flags(wmproxy, origin, echo):
    port = free_port()
    wmproxy(["proxy", "-b", "127.0.0.1:%d" % port, "--disable-control", "--workers", "2",
             "--deny-target", "127.0.0.1:%d" % origin.port, "--deny-target", "*.internal",
             "--allow-client", "127.0.0.0/8"], port=port)
    assert get(port, "http://127.0.0.1:%d/" % origin.port).status == 403
    s, r = connect_status(port, "127.0.0.1:%d" % echo.port)
    s.close()
    assert r.status == 200
    for bad, want in ((["--deny-target", "10.0.0.0/33"], "prefix length"),
                      (["--deny-client", "example.com"], "client rules are IP")):
        r = ctl.run(BIN, "proxy", "--disable-control", *bad)
        assert r.returncode == 2 and want in r.stderr.decode(), r
    r = ctl.run(BIN, "proxy", "--help")
    for flag in ("--deny-target", "--allow-target", "--deny-client", "--allow-client"):
        assert flag in r.stdout.decode()


def test_check_names_each_bad_rule(tmp_path):
    path = ctl.write(tmp_path / "bad.toml",
                     '[proxy]\n'
                     'deny_targets = ["10.0.0.0/8", "10.0.0.0/40"]\n'
                     'allow_clients = "example.com"\n')
    r = ctl.run(BIN, "check", "-c", path)
    err = r.stderr.decode()
    assert r.returncode == 1
    assert "%s:2:31: proxy.deny_targets[1]: \"10.0.0.0/40\": prefix length" % path in err, err
    assert "%s:3:17: proxy.allow_clients: \"example.com\": client rules" % path in err, err


# ---- the control API beyond loopback ----

def test_control_beyond_loopback_needs_a_token(wmproxy, tmp_path):
    port, cport = free_ports(2)
    text = 'control = "0.0.0.0:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n' % (cport, port)
    path = ctl.write(tmp_path / "c.toml", text)
    r = ctl.run(BIN, "check", "-c", path)
    assert r.returncode == 1
    assert "%s:1:11: control: 0.0.0.0:%d is reachable beyond loopback: set control_token" % (
        path, cport) in r.stderr.decode(), r.stderr
    r = ctl.run(BIN, "run", "-c", path)
    assert r.returncode == 1 and "control_token" in r.stderr.decode(), r
    # YAML the same; with a token the file is valid
    ypath = ctl.write(tmp_path / "c.yaml", 'control: "[::]:%d"\n' % cport)
    r = ctl.run(BIN, "check", "-c", ypath)
    assert r.returncode == 1 and "%s:1:10: control:" % ypath in r.stderr.decode(), r.stderr
    ok = ctl.write(tmp_path / "ok.toml", 'control_token = "t0ken"\n' + text)
    assert ctl.run(BIN, "check", "-c", ok).returncode == 0
    ok2 = ctl.write(tmp_path / "ok2.toml", 'disable_control = true\n' + text)
    assert ctl.run(BIN, "check", "-c", ok2).returncode == 0
    # from flags there is no token: refused
    r = ctl.run(BIN, "proxy", "-b", "127.0.0.1:%d" % port, "--control", "0.0.0.0:%d" % cport)
    assert r.returncode == 1 and "beyond loopback" in r.stderr.decode(), r

    # a reload to such a file is refused, the instance goes on
    good = 'control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n' % (cport, port)
    path = ctl.write(tmp_path / "r.toml", good)
    p = wmproxy(["run", "-c", path, "--workers", "2"], port=port)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    ctl.write(path, good.replace("127.0.0.1:%d\"\n[" % cport, "0.0.0.0:%d\"\n[" % cport))
    code, _, doc = ctl.api(cport, "POST", "/reload", timeout=30)
    assert code != 200 and "beyond loopback" in doc["message"], doc


# ---- item 8: a config opens only the listeners it names ----

def test_tunnel_server_without_bind_opens_no_forward_proxy(wmproxy, tmp_path):
    center, cport = free_ports(2)
    text = ('control = "127.0.0.1:%d"\nworkers = 2\n[proxy]\ncenter_addr = "127.0.0.1:%d"\n'
            'username = "u"\npassword = "p"\n' % (cport, center))
    path = ctl.write(tmp_path / "s.toml", text)
    p = wmproxy(["run", "-c", path], port=center)
    assert wait_port("127.0.0.1", cport, 10, p.p)
    addrs = [(x["addr"], x["kind"]) for x in ctl.status(cport)["listeners"]]
    assert addrs == [("127.0.0.1:%d" % center, "tunnel-center")], addrs
    assert "8090" not in p.log()
    # naming bind_addr opens the forward proxy next to the center
    port = free_port()
    ctl.write(path, text + 'bind_addr = "127.0.0.1:%d"\n' % port)
    code, _, doc = ctl.api(cport, "POST", "/reload", timeout=30)
    assert code == 200, doc
    kinds = sorted(x["kind"] for x in ctl.status(cport)["listeners"])
    assert kinds == ["proxy", "tunnel-center"], kinds
