"""Cluster over TLS to Redis (rediss://, docs/cluster.md): the nodes reach a
redis-server that serves TLS only and asks for client certificates; a
wrong trust anchor, a missing client certificate or a bad config is
refused with the reason. Before, rediss:// was refused at check."""

import glob
import subprocess

import pytest

from helpers.cluster import Cluster, Redis, certs, served, status, web_map  # noqa: F401
from helpers.net import wait_until
from helpers.tunnel import wait_log

REDIS_PASS = "r3dis-pass"


@pytest.fixture
def tls_redis(tmp_path, certs):  # noqa: F811
    if Redis.binary() is None:
        pytest.skip("redis-server is not installed (mk/deps.sh test installs it)")
    r = Redis(tmp_path, password=REDIS_PASS,
              tls={"cert": certs["srv.pem"], "key": certs["srv.key"], "ca": certs["ca.pem"],
                   "auth_clients": True})
    yield r
    r.stop()


def tls_keys(certs, ca="ca.pem", client=True):  # noqa: F811
    keys = {"redis_ca": certs[ca]}
    if client:
        keys.update(redis_cert=certs["cli.pem"], redis_key=certs["cli.key"])
    return keys


def private_dirs():
    return set(glob.glob("/tmp/wmproxy-redis.*"))


def test_nodes_share_routes_over_tls_to_redis(wmproxy, tmp_path, tls_redis, certs,  # noqa: F811
                                              origin):
    before = private_dirs()
    cl = Cluster(wmproxy, tmp_path, tls_redis)
    a = cl.node("a", cluster_keys=tls_keys(certs))
    c = cl.node("c", cluster_keys=tls_keys(certs))
    for n in (a, c):
        assert wait_log(n, "cluster: redis 127.0.0.1:%d connected (TLS)" % tls_redis.port), \
            n.log()
    doc = status(a)
    assert doc["redis"]["tls"] is True and doc["redis"]["state"] == "up", doc
    cl.client("127.0.0.1:%d" % c.center, [web_map(origin)])
    assert wait_log(c, 'registered mapping "web"'), c.log()
    wait_until(lambda: served(a.http, "app.test"), 10, what="HTTP via node a (routes in Redis)")
    assert wait_log(a, "target=node:c/app.test"), a.log()[-2000:]
    # Redis restarts: the nodes reconnect over TLS and keep the route
    tls_redis.stop()
    wait_until(lambda: status(a)["redis"]["state"] == "down", 10, what="a sees Redis down")
    tls_redis.start()
    wait_until(lambda: status(a)["redis"]["state"] == "up", 15, what="a reconnected over TLS")
    assert wait_log(a, "reconnected (TLS)"), a.log()
    wait_until(lambda: served(a.http, "app.test"), 10, what="HTTP via node a after the restart")
    # the private socket of each connection lived only while it was made
    assert private_dirs() <= before


def test_tls_to_redis_refused_with_the_reason(wmproxy, tmp_path, tls_redis, certs):  # noqa: F811
    cl = Cluster(wmproxy, tmp_path, tls_redis)
    # Redis' certificate does not chain to the trust anchor we were given
    rogue = cl.node("r", cluster_keys=tls_keys(certs, ca="rogue-ca.pem"),
                    started="handshake failed")
    assert "certificate verify failed" in rogue.log(), rogue.log()
    # Redis asks for a client certificate and we have none
    anon = cl.node("n", cluster_keys=tls_keys(certs, client=False), started="TLS alert")
    assert "certificate required" in anon.log(), anon.log()
    for n in (rogue, anon):
        wait_until(lambda: "TLS to 127.0.0.1:%d" % tls_redis.port
                   in status(n)["redis"]["last_error"], 10, what="the reason in /status")
        doc = status(n)
        assert doc["redis"]["state"] == "down" and doc["redis"]["connects"] == 0, doc
        assert "connected" not in n.log()
    # a good node next to them is served
    good = cl.node("g", cluster_keys=tls_keys(certs))
    assert status(good)["redis"]["state"] == "up"


def test_tls_to_redis_config_errors(tmp_path, certs):  # noqa: F811
    from conftest import BIN
    base = ('[proxy]\ncenter_addr = "127.0.0.1:19001"\n[cluster]\nnode_id = "a"\n'
            'advertise = "127.0.0.1:19001"\nnode_password = "longenough"\n')
    cases = {
        "plain.toml": base + 'redis = "redis://127.0.0.1:6379/0"\nredis_ca = "%s"\n'
        % certs["ca.pem"],
        "half.toml": base + 'redis = "rediss://127.0.0.1:6379/0"\nredis_cert = "%s"\n'
        % certs["cli.pem"],
        "gone.yaml": 'proxy:\n  center_addr: "127.0.0.1:19001"\ncluster:\n  node_id: a\n'
        '  advertise: "127.0.0.1:19001"\n  node_password: longenough\n'
        '  redis: "rediss://127.0.0.1:6379/0"\n  redis_ca: nope.pem\n',
    }
    out = {}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        r = subprocess.run([BIN, "check", "-c", str(tmp_path / name)], capture_output=True,
                           timeout=30)
        assert r.returncode != 0, name
        out[name] = r.stdout.decode() + r.stderr.decode()
    assert "plain.toml:8:12: cluster.redis_ca: TLS towards Redis needs a rediss:// URL" \
        in out["plain.toml"], out
    assert "half.toml:8:14: cluster.redis_key: redis_cert and redis_key go together" \
        in out["half.toml"], out
    assert "gone.yaml: cluster.redis_ca: cannot read " in out["gone.yaml"] and \
        "nope.pem" in out["gone.yaml"], out
    ok = tmp_path / "ok.toml"
    ok.write_text(base + 'redis = "rediss://:pw@127.0.0.1:6379/0"\nredis_ca = "%s"\n'
                  'redis_cert = "%s"\nredis_key = "%s"\n'
                  % (certs["ca.pem"], certs["cli.pem"], certs["cli.key"]))
    r = subprocess.run([BIN, "check", "-c", str(ok)], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
