"""Tunnel: the visitor's real address travels with each stream (PROXY
protocol v1/v2 to the private service, the server's access line of a
two-level proxy), and a tunnel that cannot serve a request says so
(docs/tunnel.md)."""

import ipaddress
import re
import socket
import ssl
import struct
import threading

import pytest

from helpers import socks
from helpers.net import connect, free_port, recv_exact, wait_port, wait_until
from helpers.tunnel import wait_log
from test_tunnel import CRED, Nodes, curl

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


def read_pp(conn):
    """Read one PROXY protocol header (v1 or v2) from conn; returns
    (version, (src_ip, src_port), (dst_ip, dst_port)), or raises."""
    first = recv_exact(conn, 1)
    if first == b"P":
        line = first
        while not line.endswith(b"\r\n"):
            line += recv_exact(conn, 1)
            assert len(line) <= 107, line
        f = line[:-2].decode().split(" ")
        assert f[0] == "PROXY" and f[1] in ("TCP4", "TCP6"), line
        return 1, (f[2], int(f[4])), (f[3], int(f[5]))
    hdr = first + recv_exact(conn, 15)
    assert hdr[:12] == SIG, hdr
    assert hdr[12] == 0x21, hdr
    body = recv_exact(conn, struct.unpack("!H", hdr[14:16])[0])
    if hdr[13] == 0x11:
        src = str(ipaddress.ip_address(body[0:4]))
        dst = str(ipaddress.ip_address(body[4:8]))
        sp, dp = struct.unpack("!HH", body[8:12])
    else:
        assert hdr[13] == 0x21, hdr
        src = str(ipaddress.ip_address(body[0:16]))
        dst = str(ipaddress.ip_address(body[16:32]))
        sp, dp = struct.unpack("!HH", body[32:36])
    return 2, (src, sp), (dst, dp)


class PPService:
    """A private service that expects a PROXY protocol header, then answers
    "ver src_ip src_port dst_ip dst_port\\n" and echoes one line."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen = []
        self.errors = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(10)
        try:
            v, src, dst = read_pp(c)
            self.seen.append((v, src, dst))
            c.sendall(("%d %s %d %s %d\n" % (v, src[0], src[1], dst[0], dst[1])).encode())
            buf = b""
            while not buf.endswith(b"\n"):
                d = c.recv(100)
                if not d:
                    break
                buf += d
            c.sendall(buf)
        except Exception as e:  # reported by the test through .errors
            self.errors.append(repr(e))
        finally:
            c.close()

    def close(self):
        self.sock.close()


@pytest.fixture
def ppsvc():
    s = PPService()
    yield s
    s.close()


def read_line(s):
    buf = b""
    while not buf.endswith(b"\n"):
        d = s.recv(200)
        assert d, buf
        buf += d
    return buf.decode()


# ---- point 6: the visitor's address reaches the private service ----

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_tcp_mapping_sends_proxy_protocol(nodes, ppsvc, version):
    tp, own = free_port(), free_port()
    srv = nodes.server(extra={"map_tcp_bind": "127.0.0.1:%d" % tp})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % ppsvc.port,
         "proxy_protocol": version},
        {"name": "own", "mode": "tcp", "local_addr": "127.0.0.1:%d" % ppsvc.port,
         "remote_port": own, "proxy_protocol": version}])
    for port in (tp, own):
        assert wait_port("127.0.0.1", port, 5)
        s = connect(port)
        me = s.getsockname()
        line = read_line(s)
        assert line == "%s 127.0.0.1 %d 127.0.0.1 %d\n" % (version[1], me[1], port), \
            (line, ppsvc.errors)
        s.sendall(b"after the header\n")
        assert read_line(s) == "after the header\n"
        s.close()
    assert not ppsvc.errors


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_ipv6_visitor_in_proxy_protocol(nodes, ppsvc, version):
    tp = free_port(socket.AF_INET6)
    srv = nodes.server(extra={"map_tcp_bind": "[::1]:%d" % tp})
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "t6", "mode": "tcp", "local_addr": "127.0.0.1:%d" % ppsvc.port,
         "proxy_protocol": version}])
    assert wait_port("::1", tp, 5)
    s = socket.create_connection(("::1", tp), timeout=10)
    me = s.getsockname()
    assert read_line(s) == "%s ::1 %d ::1 %d\n" % (version[1], me[1], tp), ppsvc.errors
    s.close()
    assert wait_log(srv, "access proto=tunnel-tcp client=[::1]:%d " % me[1]), srv.log()[-2000:]


def test_proxy_mapping_sends_proxy_protocol(nodes, ppsvc):
    pp = free_port()
    srv = nodes.server(extra={"map_proxy_bind": "127.0.0.1:%d" % pp})
    # a proxy mapping turns on the client's safe default: the loopback
    # service must be allowed explicitly
    nodes.client(srv.center, srv_proc=srv, mappings=[
        {"name": "inside", "mode": "proxy", "proxy_protocol": "v2"}],
        extra={"allow_targets": ["127.0.0.1:%d" % ppsvc.port]})
    # SOCKS5 through the public proxy port to the private service
    s, rep, _ = socks.handshake(pp, "127.0.0.1", ppsvc.port, user="wm", password="s3cret")
    assert rep == 0
    me = s.getsockname()
    assert read_line(s) == "2 127.0.0.1 %d 127.0.0.1 %d\n" % (me[1], pp), ppsvc.errors
    s.close()
    # HTTP CONNECT likewise
    s = connect(pp)
    me = s.getsockname()
    s.sendall(b"CONNECT 127.0.0.1:%d HTTP/1.1\r\nHost: x\r\n"
              b"Proxy-Authorization: Basic d206czNjcmV0\r\n\r\n" % ppsvc.port)
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 200"), head
    assert read_line(s) == "2 127.0.0.1 %d 127.0.0.1 %d\n" % (me[1], pp), ppsvc.errors
    s.close()


def test_proxy_protocol_key_in_yaml_and_checked(wmproxy, tmp_path):
    good = tmp_path / "c.yaml"
    good.write_text("proxy:\n  server: 127.0.0.1:1\n  bind_addr: 127.0.0.1:%d\n"
                    "  mappings:\n    - name: a\n      mode: tcp\n      local_addr: 127.0.0.1:2\n"
                    "      proxy_protocol: v1\n    - name: b\n      mode: tcp\n"
                    "      local_addr: 127.0.0.1:3\n      proxy_protocol: false\n" % free_port())
    p = wmproxy(["check", "-c", str(good)])
    assert p.wait_exit(expect_code=0) == 0, p.log()
    bad = tmp_path / "bad.toml"
    bad.write_text('[proxy]\nserver = "127.0.0.1:1"\n[[proxy.mappings]]\nname = "a"\n'
                   'mode = "tcp"\nlocal_addr = "127.0.0.1:2"\nproxy_protocol = "v3"\n')
    p = wmproxy(["check", "-c", str(bad)])
    p.wait_exit(expect_code=None)
    assert re.search(r"bad\.toml:7:\d+: proxy\.mappings\[0\]\.proxy_protocol: expected", p.log()), \
        p.log()


def test_two_level_access_line_names_the_visitor(nodes, origin):
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv)
    s = connect(cli.entry)
    me = s.getsockname()
    s.sendall(b"GET http://127.0.0.1:%d/bytes/10 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Proxy-Authorization: Basic d206czNjcmV0\r\nConnection: close\r\n\r\n" % origin.port)
    data = b""
    while True:
        d = s.recv(4096)
        if not d:
            break
        data += d
    assert data.startswith(b"HTTP/1.1 200"), data
    s.close()
    want = "access proto=http client=127.0.0.1:%d " % me[1]
    assert wait_log(srv, want), srv.log()[-3000:]
    assert "client=stream" not in srv.log()


# ---- point 12: a tunnel that cannot serve says so ----

def read_all(s):
    data = b""
    while True:
        try:
            d = s.recv(4096)
        except ConnectionResetError:
            raise AssertionError("reset after %r" % data)
        if not d:
            return data
        data += d


def test_entry_with_carrier_down_answers(nodes, origin):
    # a client whose server is not there: its carrier is down
    cli = nodes.client("127.0.0.1:%d" % free_port(), attach=False)
    url = "http://127.0.0.1:%d/bytes/10" % origin.port
    for args in (["-x", "http://wm:s3cret@127.0.0.1:%d" % cli.entry],
                 ["-p", "-x", "http://wm:s3cret@127.0.0.1:%d" % cli.entry]):
        r = curl(*(["-i", "-w", "\n%{http_code}"] + args + [url]))
        out = r.stdout.decode()
        assert ("502" in out.splitlines()[-1] or "CONNECT tunnel failed, response 502"
                in r.stderr.decode()), (args, out, r.stderr)
    # a plain HTTP proxy request: status and a body that says why
    s = connect(cli.entry)
    s.sendall(b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n" % url.encode())
    resp = read_all(s)
    assert resp.startswith(b"HTTP/1.1 502 "), resp
    assert resp.endswith(b"the tunnel to the server is down\n"), resp
    # CONNECT with a body after it (the answer must survive unread bytes)
    s = connect(cli.entry)
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n" + b"x" * 5000)
    resp = read_all(s)
    assert resp.startswith(b"HTTP/1.1 502 "), resp
    # SOCKS5, without and with credentials: reply 1 (general failure)
    for user in (None, "wm"):
        s, rep, _ = socks.handshake(cli.entry, "127.0.0.1", origin.port, user=user,
                                    password="s3cret" if user else None)
        assert rep == 1
        s.close()
    r = curl("--socks5", "wm:s3cret@127.0.0.1:%d" % cli.entry, url)
    assert r.returncode == 97 and r.stderr.rstrip().endswith(b"(1)"), r.stderr  # reply 1
    # SOCKS4: 91
    s = connect(cli.entry)
    s.sendall(b"\x04\x01" + struct.pack("!H", origin.port) + socket.inet_aton("127.0.0.1") + b"u\x00")
    assert recv_exact(s, 2) == b"\x00\x5b"
    s.close()
    assert wait_log(cli, "access proto=tunnel-entry client=127.0.0.1:"), cli.log()
    assert wait_log(cli, "code=502", count=3), cli.log()[-3000:]
    assert wait_log(cli, "target=127.0.0.1:%d code=1 " % origin.port), cli.log()[-3000:]


def test_entry_refused_stream_answers(nodes, origin):
    """The carrier is up but the server refuses the stream (a middle node
    whose own parent is down): the visitor gets the 502 too."""
    mid_center = free_port()
    mid = nodes.start({"bind_addr": "127.0.0.1:%d" % free_port(), "center_addr":
                       "127.0.0.1:%d" % mid_center, "server": "127.0.0.1:%d" % free_port(),
                       **CRED}, wait_port_of="center_addr")
    cli = nodes.client("127.0.0.1:%d" % mid_center, srv_proc=mid)
    s = connect(cli.entry)
    s.sendall(b"GET http://127.0.0.1:%d/ HTTP/1.1\r\nHost: x\r\n\r\n" % origin.port)
    resp = read_all(s)
    assert resp.startswith(b"HTTP/1.1 502 "), resp
    assert b"parent tunnel is down" in resp, resp


def test_public_ports_without_a_client_say_so(nodes):
    hp, hsp, tp, pp = free_port(), free_port(), free_port(), free_port()
    srv = nodes.server(extra={"map_http_bind": "127.0.0.1:%d" % hp,
                              "map_https_bind": "127.0.0.1:%d" % hsp,
                              "map_tcp_bind": "127.0.0.1:%d" % tp,
                              "map_proxy_bind": "127.0.0.1:%d" % pp})
    # public HTTP, a Host nobody registered: 404 naming the host, logged
    s = connect(hp)
    s.sendall(b"GET / HTTP/1.1\r\nHost: nobody.example:8080\r\n\r\n")
    resp = read_all(s)
    assert resp.startswith(b"HTTP/1.1 404 "), resp
    assert b'no tunnel client serves the host "nobody.example:8080"' in resp, resp
    assert wait_log(srv, "INFO"), srv.log()
    assert wait_log(srv, "target=nobody.example:8080 "), srv.log()[-2000:]
    # public HTTPS likewise, inside TLS
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(connect(hsp), server_hostname="nobody.example")
    s.sendall(b"GET / HTTP/1.1\r\nHost: nobody.example\r\n\r\n")
    resp = b""
    while b'serves the host "nobody.example"\n' not in resp:
        d = s.recv(4096)
        assert d, resp
        resp += d
    assert resp.startswith(b"HTTP/1.1 404 "), resp
    assert wait_log(srv, "access proto=tunnel-https client=127.0.0.1:"), srv.log()[-2000:]
    # the tcp mapping port with no client: closed after an info line
    s = connect(tp)
    me = s.getsockname()
    assert read_all(s) == b""
    assert wait_log(srv, "access proto=tunnel-tcp client=127.0.0.1:%d target=@tcp code=4 "
                    "end=no-client" % me[1]), srv.log()[-2000:]
    # the proxy mapping port with no client: a proxy answer
    s = connect(pp)
    s.sendall(b"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n")
    resp = read_all(s)
    assert resp.startswith(b"HTTP/1.1 502 ") and b"no tunnel client" in resp, resp
    s, rep, _ = socks.handshake(pp, "127.0.0.1", 1)
    assert rep == 1
    assert wait_log(srv, "access proto=tunnel-proxy client=127.0.0.1:"), srv.log()[-2000:]
