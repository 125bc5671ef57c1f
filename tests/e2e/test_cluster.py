"""Cluster: several tunnel server nodes sharing routes through Redis
(docs/cluster.md). Each test starts its own redis-server on a free loopback
port without persistence, and three server nodes."""

import hashlib
import json
import os
import socket
import subprocess
import time

from helpers import http1
from helpers.cluster import certs, cluster, redis  # noqa: F401 (fixtures)
from helpers.cluster import http_get, redis_send, routes_of, served, status, tcp_echo, web_map
from helpers.cluster import write_toml
from helpers.control import api
from helpers.net import connect, free_port, holds_during, is_closed, wait_port, wait_until
from helpers.tunnel import _ssl, make_certs, wait_log


# ---- 1. one route table: records, claims, /status ----

def test_routes_recorded_and_claims_unique(cluster, origin):
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    cluster.client("127.0.0.1:%d" % c.center, [web_map(origin)])
    assert wait_log(c, 'registered mapping "web"'), c.log()
    # every node sees c's route in its cache, and /status says who holds what
    for n in (a, b, c):
        wait_until(lambda: ("web", "app.test") in routes_of(status(n), "c"), 10,
                   what="node %s sees c's route" % n.nid)
    doc = status(a)
    assert doc["node"] == "a" and doc["redis"]["state"] == "up"
    assert {n["id"] for n in doc["nodes"]} == {"a", "b", "c"}
    # the same domain from another client on another node: refused, the
    # holder named (the client logs the server's reason)
    cl2 = cluster.client("127.0.0.1:%d" % b.center, [web_map(origin)])
    assert wait_log(cl2, "refused by the server"), cl2.log()
    assert "already registered by client" in cl2.log() and "on node c" in cl2.log()
    assert ("web", "app.test") not in routes_of(status(b), "b")
    # same group on two nodes: both hold it
    cluster.client("127.0.0.1:%d" % a.center, [web_map(origin, "g.test", group="g1")])
    assert wait_log(a, 'registered mapping "web"'), a.log()
    cluster.client("127.0.0.1:%d" % b.center, [web_map(origin, "g.test", group="g1")])
    wait_until(lambda: ("web", "g.test") in routes_of(status(c), "b")
               and ("web", "g.test") in routes_of(status(c), "a"), 10, what="group on a and b")


# ---- 2. visitor on node A, client on node C ----

def test_visitor_on_a_served_by_client_on_c(cluster, origin, echo):
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    cluster.client("127.0.0.1:%d" % c.center, [
        web_map(origin),
        {"name": "echo", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    assert wait_log(c, 'registered mapping "echo"'), c.log()
    for n in (a, b):
        wait_until(lambda: served(n.http, "app.test"), 10, what="HTTP via node %s" % n.nid)
    r = http_get(a.http, "app.test", "/bytes/200000?seed=3")
    assert r.status == 200 and len(r.body) == 200000
    # the access line of the entry node names the node that served
    assert wait_log(a, "target=node:c/app.test"), a.log()[-3000:]
    assert wait_log(c, "tunnel-node"), c.log()[-3000:]
    # TCP through node A's shared tcp port
    data = os.urandom(100000)
    assert tcp_echo(a.tcp, data) == data + hashlib.sha256(data).hexdigest().encode()
    assert http_get(a.http, "nobody.test").status == 404
    doc = status(a)
    assert any(k["node"] == "c" and k["state"] == "ready" for k in doc["carriers"]), doc


def test_https_by_sni_through_another_node(cluster, origin, certs):
    tls = {"tc": True, "cert": certs["srv.pem"], "key": certs["srv.key"]}
    a, b, c = (cluster.node(n, tls=tls) for n in "abc")
    cluster.client("127.0.0.1:%d" % c.center, [
        {"name": "s", "mode": "https", "local_addr": "127.0.0.1:%d" % origin.port,
         "domain": "a.test"}], tls={"ts": True, "ca": certs["ca.pem"]})
    assert wait_log(c, 'registered mapping "s"'), c.log()

    def get(n):
        r = subprocess.run(["curl", "-sS", "--max-time", "5", "--cacert", certs["ca.pem"],
                            "--resolve", "a.test:%d:127.0.0.1" % n.https,
                            "https://a.test:%d/hop" % n.https], capture_output=True, timeout=10)
        return r.returncode == 0 and r.stdout == b"ok"
    for n in (a, b):
        wait_until(lambda: get(n), 10, what="HTTPS via node %s" % n.nid)
        assert wait_log(n, "cluster: carrier to node c") and "(TLS)" in n.log(), n.log()
    assert wait_log(a, "target=node:c/a.test"), a.log()[-2000:]


def test_header_rules_apply_whichever_node_the_visitor_hits(cluster, origin):
    """A mapping's header rules (request and response) give the same
    headers through node A as through the owner node C: C serves streams
    carried from A with its client's rules. Before, a request carried
    from A got none of them."""
    a, c = cluster.node("a"), cluster.node("c")
    cluster.client("127.0.0.1:%d" % c.center, [web_map(
        origin, headers=["proxy x-forwarded-for {client_ip}", "+ x-via yes", "- x-kept"])])
    assert wait_log(c, 'registered mapping "web"'), c.log()
    wait_until(lambda: served(a.http, "app.test"), 10, what="HTTP via node a")
    for n in (c, a):
        s = connect(n.http)
        rd = http1.Reader(s)
        try:
            for _ in range(3):  # keep-alive: every request of the connection
                s.sendall(http1.request("GET", "/headers", [("Host", "app.test")]))
                r = rd.response()
                assert r.status == 200, (n.nid, r.status, r.body)
                hdrs = {k.lower(): v for k, v in json.loads(r.body)["headers"]}
                assert hdrs.get("x-forwarded-for") == "127.0.0.1", (n.nid, hdrs)
                assert r.header("x-via") == "yes", n.nid
                s.sendall(http1.request("GET", "/hop", [("Host", "app.test")]))
                r = rd.response()
                assert r.body == b"ok" and r.header("X-Kept") is None, n.nid
        finally:
            s.close()
    assert wait_log(c, "(from node:a)"), c.log()[-2000:]
    assert wait_log(a, "target=node:c/app.test"), a.log()[-2000:]


# ---- [cluster] config: checked with file:line:col, TOML and YAML ----

def test_cluster_config_errors(tmp_path):
    from conftest import BIN
    toml = tmp_path / "c.toml"
    toml.write_text('[proxy]\ncenter_addr = "127.0.0.1:19001"\n[cluster]\n'
                    'redis = "http://h:1/0"\nnode_id = "bad id"\n'
                    'advertise = "127.0.0.1:19001"\nnode_password = "short"\n')
    yml = tmp_path / "c.yaml"
    yml.write_text('proxy:\n  center_addr: "127.0.0.1:19001"\ncluster:\n'
                   '  redis: "redis://127.0.0.1:99999/0"\n  advertise: "127.0.0.1:19001"\n'
                   '  node_password: "longenough"\n  nodeid: x\n')
    fwd = tmp_path / "f.toml"
    fwd.write_text('[proxy]\nbind_addr = "127.0.0.1:19001"\n[cluster]\n'
                   'redis = "redis://127.0.0.1"\nnode_id = "a"\n'
                   'advertise = "127.0.0.1:19001"\nnode_password = "longenough"\n')
    out = {}
    for f in (toml, yml, fwd):
        r = subprocess.run([BIN, "check", "-c", str(f)], capture_output=True, timeout=30)
        assert r.returncode != 0
        out[f.name] = r.stdout.decode() + r.stderr.decode()
    assert 'c.toml:4:9: cluster.redis: expected "redis://' in out["c.toml"], out
    assert "c.toml:5:11: cluster.node_id:" in out["c.toml"]
    assert "c.toml:7:17: cluster.node_password: at least 8" in out["c.toml"]
    assert 'missing required key "node_id"' in out["c.yaml"]
    assert "c.yaml:4:10: cluster.redis: bad port" in out["c.yaml"]
    assert 'did you mean "node_id"' in out["c.yaml"]
    assert "f.toml:3:1: cluster: [cluster] is for tunnel server nodes" in out["f.toml"]


def test_every_node_publishes_every_port(cluster, echo):
    # node a's public tcp ports are on ::1, node c's on 127.0.0.1: one
    # machine, the same port number on both
    a, c = cluster.node("a", tcp_ip="::1"), cluster.node("c")
    port = free_port(socket.AF_INET6)
    cluster.client("127.0.0.1:%d" % c.center, [
        {"name": "own", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
         "remote_port": port}])
    assert wait_log(c, 'registered mapping "own"'), c.log()
    assert wait_log(a, "public port [::1]:%d opened" % port), a.log()
    wait_until(lambda: ("tcp", ":%d" % port) in routes_of(status(a), "c"), 10, what="route")

    def echoed():
        try:
            return tcp_echo(port, b"y" * 5000, host="::1").startswith(b"y" * 5000)
        except OSError:
            return False
    wait_until(echoed, 10, what="tcp through node a's published port")
    assert tcp_echo(port, b"z" * 10).startswith(b"z" * 10)  # on c itself
    assert wait_log(a, "target=node:c/:%d" % port), a.log()[-2000:]


def test_reload_with_new_cluster_settings_keeps_the_claims(cluster, origin):
    a, c = cluster.node("a"), cluster.node("c")
    cluster.client("127.0.0.1:%d" % c.center, [web_map(origin)])
    wait_until(lambda: ("web", "app.test") in routes_of(status(a), "c"), 10, what="route")
    proxy, cl = cluster.texts["c"]
    cl = dict(cl, ttl="2s")
    write_toml(cluster.tmp / "c.toml", {"control": "127.0.0.1:%d" % c.ctl},
               [("proxy", proxy), ("cluster", cl)])
    assert api(c.ctl, "POST", "/reload")[0] == 200
    # the new connection claims again what c's client holds: after more
    # than the old TTL the route is still there, and still served through a
    holds_during(lambda: ("web", "app.test") in routes_of(status(a), "c") or
                 status(a)["cache_age_ms"] > 1000, 4, step=0.25,
                 what="c's route in a's view across the reload")
    assert ("web", "app.test") in routes_of(status(a), "c")
    assert served(a.http, "app.test")


# ---- 3. clients fail over; a dead node's routes expire ----

def test_client_fails_over_when_its_node_dies(cluster, origin, echo):
    a, b, c = cluster.node("a"), cluster.node("b"), cluster.node("c")
    cli = cluster.client("127.0.0.1:%d, 127.0.0.1:%d" % (c.center, a.center), [
        web_map(origin),
        {"name": "echo", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}])
    assert wait_log(c, 'registered mapping "echo"'), c.log()
    wait_until(lambda: served(a.http, "app.test") and served(b.http, "app.test"), 10,
               what="served through a and b")
    c.p.kill()
    c.p.wait(10)
    c.stopped = True  # killed on purpose: no exit status to check
    t0 = time.time()
    wait_until(lambda: served(a.http, "app.test"), 10, what="served again through a")
    wait_until(lambda: served(b.http, "app.test"), 10 - (time.time() - t0),
               what="served again through b")
    assert time.time() - t0 < 10
    assert wait_log(cli, "tunnel: connected to 127.0.0.1:%d" % a.center), cli.log()[-3000:]
    assert tcp_echo(b.tcp, b"x" * 1000).startswith(b"x" * 1000)
    # the dead node's keys expired: it is gone from every node's view
    wait_until(lambda: "c" not in {n["id"] for n in status(b)["nodes"]}, 10,
               what="node c expired")
    assert ("web", "app.test") in routes_of(status(b), "a")


def test_a_route_of_an_unreachable_node_gets_502(cluster, redis):
    # Before: 404 "no tunnel client serves the host", as for a host nobody
    # registered, while the node holding it was alive but out of reach (its
    # carrier down); a TCP visitor was logged as end=no-client, a proxy
    # client told no client serves the port.
    pp = free_port()
    a = cluster.node("a", proxy_keys={"map_proxy_bind": "127.0.0.1:%d" % pp})
    redis_send(redis.port, ("SET", "wm:node:zz", "127.0.0.1:%d\t0" % free_port(), "PX", "60000"),
               ("SADD", "wm:nodes", "zz"),
               ("HSET", "wm:routes:zz", "web far.test", "\tcl\tweb", "web *.wild.test",
                "\tcl\tw2", "tcp @tcp", "\tcl\tt", "proxy @proxy", "\tcl\tp"),
               ("PEXPIRE", "wm:routes:zz", "60000"))
    wait_until(lambda: ("web", "far.test") in routes_of(status(a), "zz"), 10,
               what="a learns zz's routes")
    wait_until(lambda: http_get(a.http, "far.test").status == 502, 10, what="502 for far.test")
    r = http_get(a.http, "x.wild.test:80")
    assert r.status == 502 and b"node zz" in r.body, r.body
    assert http_get(a.http, "nobody.test").status == 404
    s = connect(a.tcp)
    assert is_closed(s)
    s.close()
    s = connect(pp)
    s.sendall(b"GET http://x.test/ HTTP/1.1\r\nHost: x.test\r\n\r\n")
    r = http1.Reader(s).response()
    s.close()
    assert r.status == 502 and b"cluster node zz" in r.body, r.body
    for line in ("target=node:zz/far.test req=\"GET /hop\" code=502",
                 "target=node:zz/*.wild.test req=\"GET /hop\" code=502",
                 "target=node:zz/@tcp code=2 end=node-unreachable"):
        assert wait_log(a, line), a.log()[-3000:]


def test_a_node_with_a_wrong_node_password_retries_slowly(cluster, origin):
    # Before: its carrier retried every 2 s; after 10 refusals in a minute
    # its address was put on hold on every node (also for the carriers the
    # other nodes would take) and so were the clients sharing it.
    a = cluster.node("a", cluster_keys={"node_password": "not-the-same-one"})
    b = cluster.node("b")
    cluster.client("127.0.0.1:%d" % b.center, [web_map(origin)])
    assert wait_log(b, 'registered mapping "web"'), b.log()
    refused = "cluster: carrier to node b"
    assert wait_log(a, refused), a.log()[-3000:]
    assert holds_during(lambda: a.log().count(refused) == 1, 12,
                        what="no second attempt within 12 s") > 0
    assert "retrying in 15-30 s" in a.log()
    assert "on hold" not in b.log() and "on hold" not in a.log()
    assert http_get(a.http, "app.test").status == 502


# ---- 6. Redis trouble never stops traffic that does not need it ----

def test_redis_down_known_routes_keep_serving(cluster, origin, redis):
    a, c = cluster.node("a"), cluster.node("c")
    cluster.client("127.0.0.1:%d" % c.center, [web_map(origin)])
    wait_until(lambda: served(a.http, "app.test"), 10, what="served through a")
    redis.stop()
    wait_until(lambda: status(a)["redis"]["state"] == "down", 10, what="a sees Redis down")
    # a new route is refused with the reason, known ones keep serving
    cl2 = cluster.client("127.0.0.1:%d" % a.center, [web_map(origin, "new.test")])
    assert wait_log(cl2, "refused by the server"), cl2.log()
    assert "Redis) is unreachable" in cl2.log()
    n = holds_during(lambda: http_get(a.http, "app.test").status == 200, 6,
                     what="a known route served while Redis is down")
    assert n >= 10
    redis.start()
    wait_until(lambda: status(a)["redis"]["state"] == "up"
               and ("web", "app.test") in routes_of(status(a), "c"), 15,
               what="a reconnected and relearned c's routes")
    assert served(a.http, "app.test")
    assert status(a)["redis"]["disconnects"] >= 1
    assert wait_log(a, "reconnected"), a.log()


# ---- 5. shared limits ----

LIMITED = """
[http]
[http.limit_req_zone]
shared = "{host} limit=1m rate=%(rate)dr/s shared=true"
[[http.server]]
bind_addr = "127.0.0.1:%(port)d"
[[http.server.location]]
rule = "/"
limit_req = "zone=shared burst=5"
limit_req_status = 429
static_response = "ok"
"""


def hammer(port, until, counts):
    """Requests on keep-alive connections until the deadline; counts codes."""
    s = None
    while time.time() < until:
        try:
            if s is None:
                s = connect(port)
                rd = http1.Reader(s)
            s.sendall(http1.request("GET", "/", [("Host", "x.test")]))
            r = rd.response()
            counts[r.status] = counts.get(r.status, 0) + 1
            if r.header("connection") == "close":
                s.close()
                s = None
        except OSError:
            if s is not None:
                s.close()
            s = None
    if s is not None:
        s.close()


def test_shared_limit_req_holds_the_cluster_rate(cluster):
    import threading
    rate = 40
    ports = [free_port() for _ in range(3)]
    nodes = [cluster.node(nid, extra=LIMITED % {"rate": rate, "port": p})
             for nid, p in zip("abc", ports)]
    for p in ports:
        wait_port("127.0.0.1", p, 10)
    wait_until(lambda: all(status(n)["redis"]["state"] == "up" for n in nodes), 10,
               what="every node on Redis")
    counts = [dict() for _ in ports]
    t0 = time.time()
    until = t0 + 5
    th = [threading.Thread(target=hammer, args=(p, until, c)) for p, c in zip(ports, counts)]
    for t in th:
        t.start()
    for t in th:
        t.join(30)
    elapsed = time.time() - t0
    ok = sum(c.get(200, 0) for c in counts)
    refused = sum(c.get(429, 0) for c in counts)
    want = rate * elapsed + 6  # the bucket starts full: burst + 1
    print("shared limit: %d passed for %.1f expected, per node %s" % (ok, want, counts))
    # every node passed some and refused some: the three count together
    assert all(c.get(200, 0) > 0 and c.get(429, 0) > 0 for c in counts), counts
    assert refused > ok, counts
    assert abs(ok - want) <= 0.1 * want, (ok, want, counts)
    lim = status(nodes[0])["shared_limits"]
    assert lim["takes"] > 0 and lim["on_redis_error"] == 0, lim


def test_shared_limit_on_redis_error_deny(cluster, redis):
    port = free_port()
    spec = LIMITED.replace("shared=true", "shared=true on_redis_error=deny")
    a = cluster.node("a", extra=spec % {"rate": 1000, "port": port})
    wait_port("127.0.0.1", port, 10)
    wait_until(lambda: status(a)["redis"]["state"] == "up", 10, what="on Redis")
    assert http_get(port, "x.test", "/").status == 200
    redis.stop()
    wait_until(lambda: status(a)["redis"]["state"] == "down", 10, what="Redis down")
    codes = {http_get(port, "x.test", "/").status for _ in range(5)}
    assert codes == {429}, codes
    assert status(a)["shared_limits"]["on_redis_error"] >= 5
    assert wait_log(a, "Redis is unreachable: requests are denied"), a.log()[-2000:]
    redis.start()
    wait_until(lambda: http_get(port, "x.test", "/").status == 200, 15, what="allowed again")


# ---- 5b. the failed-auth slowdown counts across the nodes ----

def _login(port, user, password, src="127.0.0.1"):
    """One hand-made carrier login from src (test_tunnel_auth._try_login)."""
    from test_tunnel_auth import _try_login
    return _try_login(port, user, password, src=src)


def test_failed_logins_count_across_the_nodes(cluster, redis):
    """Password guesses spread round-robin over three nodes (3 or 4 per
    node, under one node's limit of 10) put the address on hold on every
    node, as ten on one node would; another address still attaches. Before,
    each node counted alone and the guesser was never held."""
    import threading
    nodes = [cluster.node(n) for n in "abc"]
    for n in nodes:
        wait_until(lambda: status(n)["redis"]["state"] == "up", 10, what="on Redis")
    results = []
    lock = threading.Lock()

    def guess(i):
        r = _login(nodes[i % 3].center, b"wm", b"guess-%d" % i)
        with lock:
            results.append(r)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 10 and all(r[0] == 0 for r in results), results
    for n in nodes:  # even the right password, on every node
        wait_until(lambda: _login(n.center, b"wm", b"s3cret")[0] == "challenge-missing", 10,
                   what="address held on node %s" % n.nid)
    assert sum(bool(wait_log(n, "on hold across the cluster", 5)) for n in nodes) >= 2
    code, _, doc = api(nodes[1].ctl, "GET", "/status")
    assert doc["tunnel"]["center"]["refused_hold"] >= 1, doc["tunnel"]["center"]
    assert doc["cluster"]["shared_authfail"]["recorded"] >= 3, doc["cluster"]
    # another address is not held
    ok, _ = _login(nodes[2].center, b"wm", b"s3cret", src="127.0.0.2")
    assert ok == 1, ok
    # Redis unreachable: failures count on their node, logged and counted
    redis.stop()
    wait_until(lambda: status(nodes[0])["redis"]["state"] == "down", 10, what="Redis down")
    assert _login(nodes[0].center, b"wm", b"nope", src="127.0.0.3")[0] == 0
    assert wait_log(nodes[0], "count on this node only"), nodes[0].log()[-2000:]
    assert status(nodes[0])["shared_authfail"]["unshared"] >= 1


# ---- 1b. mutual TLS between nodes ----

def _node_certs(d, ca="node-ca"):
    """A CA for the nodes and a certificate per node (no extended key
    usage: each serves as the TLS server and the TLS client of carriers)."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _ssl("req", "-x509", *ec, "-keyout", ca + ".key", "-out", ca + ".pem", "-days", "2",
         "-subj", "/CN=" + ca, cwd=d)
    for n in ("a", "c"):
        _ssl("req", *ec, "-keyout", "%s-%s.key" % (ca, n), "-out", "%s-%s.csr" % (ca, n),
             "-subj", "/CN=%s" % n, cwd=d)
        _ssl("x509", "-req", "-in", "%s-%s.csr" % (ca, n), "-CA", ca + ".pem", "-CAkey",
             ca + ".key", "-CAcreateserial", "-out", "%s-%s.pem" % (ca, n), "-days", "2", cwd=d)
    return lambda n: {"node_ca": os.path.join(d, ca + ".pem"),
                      "node_cert": os.path.join(d, "%s-%s.pem" % (ca, n)),
                      "node_key": os.path.join(d, "%s-%s.key" % (ca, n))}


def test_nodes_authenticate_with_mutual_tls(cluster, origin, certs, tmp_path):
    """[cluster] node_ca/node_cert/node_key instead of node_password: node A
    reaches node C's center with its node certificate, C answers with its
    own, each checked against the nodes' CA, and A carries visitors to C.
    A node whose certificate another CA signed is refused, and so is one
    that only knows a password; the clients' carriers on the same port are
    unaffected. Before, node_password was required and node_ca unknown."""
    good = _node_certs(str(tmp_path / "n"))
    rogue = _node_certs(str(tmp_path / "r"), ca="rogue")
    tls = {"tc": True, "cert": certs["srv.pem"], "key": certs["srv.key"]}
    ka = dict(good("a"), node_password=None)
    c = cluster.node("c", tls=tls, cluster_keys=dict(good("c"), node_password=None))
    a = cluster.node("a", tls=tls, cluster_keys=ka)
    cluster.client("127.0.0.1:%d" % c.center, [web_map(origin)],
                   tls={"ts": True, "ca": certs["ca.pem"]})
    assert wait_log(c, 'registered mapping "web"'), c.log()
    wait_until(lambda: served(a.http, "app.test"), 10, what="HTTP via node a (mutual TLS)")
    assert wait_log(a, "cluster: carrier to node c"), a.log()
    assert "(TLS)" in a.log()
    assert wait_log(c, "(from node:a)"), c.log()[-2000:]
    # a node with another CA's certificate, and one with a password only
    r = cluster.node("r", tls=tls, cluster_keys=dict(rogue("a"), node_password=None))
    p = cluster.node("p", tls=tls)
    for n in (r, p):
        assert wait_log(n, "cluster: carrier to node c"), n.log()
    assert wait_log(c, "must present the cluster's node certificate"), c.log()[-3000:]
    for n in (r, p):
        assert not served(n.http, "app.test")
        doc = status(n)
        assert not any(k["node"] == "c" and k["state"] == "ready" for k in doc["carriers"]), doc
    assert served(a.http, "app.test")


def test_node_tls_config_errors(tmp_path):
    from conftest import BIN
    toml = tmp_path / "m.toml"
    toml.write_text('[proxy]\ncenter_addr = "127.0.0.1:19001"\n[cluster]\n'
                    'redis = "redis://127.0.0.1:6379/0"\nnode_id = "a"\n'
                    'advertise = "127.0.0.1:19001"\nnode_ca = "ca.pem"\n')
    yml = tmp_path / "m.yaml"
    yml.write_text('proxy:\n  center_addr: "127.0.0.1:19001"\n  tc: true\ncluster:\n'
                   '  redis: "redis://127.0.0.1:6379/0"\n  node_id: a\n'
                   '  advertise: "127.0.0.1:19001"\n  node_ca: ca.pem\n'
                   '  node_cert: nope.pem\n  node_key: nope.key\n')
    none = tmp_path / "n.toml"
    none.write_text('[proxy]\ncenter_addr = "127.0.0.1:19001"\n[cluster]\n'
                    'redis = "redis://127.0.0.1:6379/0"\nnode_id = "a"\n'
                    'advertise = "127.0.0.1:19001"\n')
    out = {}
    for f in (toml, yml, none):
        r = subprocess.run([BIN, "check", "-c", str(f)], capture_output=True, timeout=30)
        assert r.returncode != 0, f
        out[f.name] = r.stdout.decode() + r.stderr.decode()
    assert "m.toml:7:11: cluster.node_cert: node_ca, node_cert and node_key go together" \
        in out["m.toml"], out
    assert "m.toml:7:11: cluster.node_ca: mutual TLS between nodes runs on the tunnel " \
        "port's TLS" in out["m.toml"], out
    assert "m.yaml: cluster.node_ca: cannot read " in out["m.yaml"], out
    (tmp_path / "ca.pem").write_text(open(make_certs(str(tmp_path / "k"))["ca.pem"]).read())
    r = subprocess.run([BIN, "check", "-c", str(yml)], capture_output=True, timeout=30)
    assert "m.yaml: cluster.node_cert: cannot read " in r.stderr.decode() and \
        "nope.pem" in r.stderr.decode(), r.stderr
    assert "cluster.node_password: the nodes authenticate each other" in out["n.toml"], out
