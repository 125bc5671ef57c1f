"""Cluster test kit (docs/cluster.md): a redis-server of the test's own on a
free loopback port without persistence (plain or TLS), tunnel server nodes
joined to it, clients, and the /status views the tests read."""

import shutil
import socket
import subprocess

import pytest

from helpers import http1
from helpers.control import api
from helpers.net import connect, free_port, recv_all, recv_until, wait_port
from helpers.tunnel import make_certs, toml_value, wait_log

REDIS = shutil.which("redis-server")
CRED = {"username": "wm", "password": "s3cret"}
NODE_PASSWORD = "n0de-secret"


class Redis:
    """tls: {"cert", "key", "ca", "auth_clients": bool} serves TLS only."""

    def __init__(self, tmp, tls=None, password=None):
        self.tmp = tmp
        self.port = free_port()
        self.tls = tls
        self.password = password
        self.p = None
        self.start()

    @staticmethod
    def binary():
        return REDIS

    def url(self, db=0):
        auth = ":%s@" % self.password if self.password else ""
        return "%s://%s127.0.0.1:%d/%d" % ("rediss" if self.tls else "redis", auth, self.port, db)

    def start(self):
        args = [REDIS, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.tmp)]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                     "--tls-ca-cert-file", self.tls["ca"],
                     "--tls-auth-clients", "yes" if self.tls.get("auth_clients") else "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert wait_port("127.0.0.1", self.port, 10, self.p), "redis-server did not start"

    def stop(self):
        if self.p is not None and self.p.poll() is None:
            self.p.terminate()
            self.p.wait(10)
        self.p = None


@pytest.fixture
def redis(tmp_path):
    if REDIS is None:
        pytest.skip("redis-server is not installed (mk/deps.sh test installs it)")
    r = Redis(tmp_path)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certs(str(tmp_path_factory.mktemp("certs")))


def write_toml(path, top, sections, mappings=()):
    lines = ["%s = %s" % (k, toml_value(v)) for k, v in top.items()]
    for name, sec in sections:
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (k, toml_value(v)) for k, v in sec.items()]
    for m in mappings:
        lines.append("[[proxy.mappings]]")
        lines += ["%s = %s" % (k, toml_value(v)) for k, v in m.items()]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


class Cluster:
    def __init__(self, wmproxy, tmp, redis):
        self.wmproxy = wmproxy
        self.tmp = tmp
        self.redis = redis
        self.nodes = {}
        self.n = 0

    def node(self, nid, tls=None, extra="", tcp_ip="127.0.0.1", cluster_keys=None,
             started="cluster: redis", proxy_keys=None):
        """A server node; waits for `started` in its log."""
        cp, hp, hsp, tp, ctl = (free_port() for _ in range(5))
        if tcp_ip == "::1":
            tp = free_port(socket.AF_INET6)
        proxy = {"center_addr": "127.0.0.1:%d" % cp, "mode": "server",
                 "map_http_bind": "127.0.0.1:%d" % hp,
                 "map_tcp_bind": ("[%s]:%d" if ":" in tcp_ip else "%s:%d") % (tcp_ip, tp)}
        proxy.update(CRED)
        proxy.update(proxy_keys or {})
        if tls:
            proxy.update(tls)
            proxy["map_https_bind"] = "127.0.0.1:%d" % hsp
        cluster = {"redis": self.redis.url(), "node_id": nid,
                   "advertise": "127.0.0.1:%d" % cp, "node_password": NODE_PASSWORD,
                   "ttl": "3s"}
        for k, v in (cluster_keys or {}).items():
            if v is None:
                cluster.pop(k, None)
            else:
                cluster[k] = v
        self.texts = getattr(self, "texts", {})
        self.texts[nid] = (proxy, cluster)
        path = write_toml(self.tmp / ("%s.toml" % nid), {"control": "127.0.0.1:%d" % ctl},
                          [("proxy", proxy), ("cluster", cluster)])
        if extra:
            with open(path, "a") as f:
                f.write(extra)
        p = self.wmproxy(["run", "-c", path, "--workers", "2", "--grace", "1"], port=cp)
        p.center, p.http, p.https, p.tcp, p.ctl = cp, hp, hsp, tp, ctl
        p.nid = nid
        assert wait_log(p, started), p.log()
        self.nodes[nid] = p
        return p

    def client(self, servers, mappings, tls=None):
        self.n += 1
        ep = free_port()
        proxy = {"bind_addr": "127.0.0.1:%d" % ep, "server": servers}
        proxy.update(CRED)
        if tls:
            proxy.update(tls)
        path = write_toml(self.tmp / ("client%d.toml" % self.n), {"disable_control": True},
                          [("proxy", proxy)], mappings)
        return self.wmproxy(["run", "-c", path, "--workers", "1", "--grace", "1"], port=ep)


@pytest.fixture
def cluster(wmproxy, tmp_path, redis):
    return Cluster(wmproxy, tmp_path, redis)


def status(node):
    code, _, doc = api(node.ctl, "GET", "/status")
    assert code == 200
    return doc["cluster"]


def routes_of(doc, nid):
    for n in doc["nodes"]:
        if n["id"] == nid:
            return {(r["ns"], r["key"]) for r in n["routes"]}
    return set()


def redis_send(port, *cmds):
    """Send commands (tuples of str/bytes) to the Redis on port, as RESP,
    and read their answers (so they are done when this returns)."""
    out = b""
    for args in cmds:
        out += b"*%d\r\n" % len(args)
        for a in args:
            a = a.encode() if isinstance(a, str) else a
            out += b"$%d\r\n%s\r\n" % (len(a), a)
    s = connect(port)
    try:
        s.sendall(out + b"*1\r\n$4\r\nPING\r\n")
        recv_until(s, b"+PONG\r\n")
    finally:
        s.close()


def http_get(port, host, path="/hop"):
    s = connect(port)
    try:
        s.sendall(http1.request("GET", path, [("Host", host)]))
        return http1.Reader(s).response()
    finally:
        s.close()


def served(port, host, path="/hop", want=200):
    try:
        return http_get(port, host, path).status == want
    except OSError:
        return False


def tcp_echo(port, data=b"ping-through-the-cluster", host="127.0.0.1"):
    s = connect(port, host=host)
    try:
        s.sendall(data)
        s.shutdown(1)
        return recv_all(s)
    finally:
        s.close()


def web_map(origin, domain="app.test", **kw):
    m = {"name": "web", "mode": "http", "local_addr": "127.0.0.1:%d" % origin.port,
         "domain": domain}
    m.update(kw)
    return m
