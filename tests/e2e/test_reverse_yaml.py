"""The reverse proxy's user items (issue 11, items 1-9 and 11) each run from
one config written once as a Python dict and rendered both as TOML and as
YAML (helpers/revconf.py): the two readers must give the same behaviour.
Item 10 (the `reverse-proxy` command) has no config file: test_reverse.py and
test_reverse_more.py cover it."""

import asyncio
import json
import os

import pytest

from helpers.control import api
from helpers.net import connect, free_port, wait_until
from helpers.revconf import (FORMATS, Words, cert_fingerprint, gencert, get,
                             tls_get, top, wait_serving, write_conf)
from helpers.tunnel import wait_log

websockets = pytest.importorskip("websockets")

pytestmark = pytest.mark.parametrize("fmt", FORMATS)


def run(wmproxy, tmp_path, doc, fmt, port=None):
    path = write_conf(tmp_path, doc, fmt)
    return wmproxy(["run", "-c", path], port=port)


# ---- 1. virtual hosts ----

def test_virtual_hosts_wildcard_and_fallback(wmproxy, tmp_path, fmt):
    port = free_port()
    bind = "127.0.0.1:%d" % port
    run(wmproxy, tmp_path, top({"server": [
        {"bind_addr": bind, "up_name": "a.test", "static_response": "A {host}"},
        {"bind_addr": bind, "up_name": "*.wild.test other.test", "static_response": "W {host}"},
    ]}), fmt, port=port)
    wait_serving(port)
    assert get(port, host="A.Test:%d" % port)[2] == b"A A.Test:%d" % port  # any case, port ignored
    assert get(port, host="x.wild.test")[2] == b"W x.wild.test"
    assert get(port, host="Deep.Down.WILD.test:81")[2] == b"W Deep.Down.WILD.test:81"
    assert get(port, host="other.test")[2] == b"W other.test"
    # no name matches: the first server on the address answers
    assert get(port, host="unknown.test")[2] == b"A unknown.test"
    assert get(port, host="wild.test")[2] == b"A wild.test"  # "*.x" is below x, not x itself


# ---- 2. locations ----

def test_locations_patterns_and_rule_tables(wmproxy, tmp_path, fmt):
    port = free_port()
    run(wmproxy, tmp_path, top({
        "match_names": {"legacy": "^/old/[a-z]+$"},
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
            {"rule": "=/exact", "static_response": "exact"},
            {"rule": "/files/*.txt", "static_response": "glob"},
            {"rule": "^/api/v[0-9]+/", "static_response": "regex"},
            {"rule": "@legacy", "static_response": "named"},
            {"rule": {"path": "/m", "method": "POST PUT"}, "static_response": "posted"},
            {"rule": {"path": "/m", "host": "B.TEST"}, "static_response": "host b"},
            {"rule": {"path": "/sec", "scheme": "https"}, "static_response": "https only"},
            {"rule": {"path": "/sec", "client_ip": ["10.0.0.0/8"]}, "static_response": "ten"},
            {"rule": {"path": "/sec", "scheme": "http", "client_ip": ["127.0.0.0/8", "::1"]},
             "static_response": "local http"},
        ]}]}), fmt, port=port)
    wait_serving(port, path="/exact")
    assert get(port, "/exact")[2] == b"exact"
    assert get(port, "/exact/more")[0] == 404
    assert get(port, "/files/a/b.txt")[2] == b"glob"
    assert get(port, "/files/a/b.png")[0] == 404
    assert get(port, "/api/v12/x")[2] == b"regex"
    assert get(port, "/old/page")[2] == b"named"
    assert get(port, "/old/page2")[0] == 404
    assert get(port, "/m", method="PUT", body=b"x")[2] == b"posted"
    assert get(port, "/m", host="b.test")[2] == b"host b"
    assert get(port, "/m", host="c.test")[0] == 404
    assert get(port, "/sec")[2] == b"local http"  # first match in order whose conditions all hold
    assert get(port, "/nowhere")[0] == 404


# ---- 3. upstreams: balancing, and upstreams at server and location level ----

def test_upstreams_round_robin_weights_and_levels(wmproxy, tmp_path, fmt, backends):
    a, b, c = backends("A", "B", "C")
    port = free_port()
    up = lambda *bs: [{"addr": "127.0.0.1:%d" % x.port} for x in bs]  # noqa: E731
    run(wmproxy, tmp_path, top({
        "upstream": [
            {"name": "rr", "balance": "round_robin",
             "server": [{"addr": "127.0.0.1:%d" % a.port, "weight": 100},
                        {"addr": "127.0.0.1:%d" % b.port, "weight": 300}]},
            {"name": "u", "server": up(a)},
        ],
        "server": [{
            "bind_addr": "127.0.0.1:%d" % port,
            "upstream": [{"name": "s", "server": up(b)}],
            "location": [
                {"rule": "/rr", "proxy_url": "http://rr"},
                {"rule": "/loc", "proxy_url": "http://u",
                 "upstream": [{"name": "u", "server": up(c)}]},
                {"rule": "/srv", "proxy_url": "http://s"},
                {"rule": "/top", "proxy_url": "http://u"},
            ]}]}), fmt, port=port)
    wait_serving(port, path="/top")
    # the nearest level's upstream of a name wins: location, then server, then [http]
    assert get(port, "/loc")[2] == b"C"
    assert get(port, "/srv")[2] == b"B"
    assert get(port, "/top")[2] == b"A"
    # smooth weighted round-robin 1:3 in each of the two workers: 40 requests give
    # 10 +- 2 to A (each worker's share is within one of a quarter)
    got = [get(port, "/rr")[2] for _ in range(40)]
    assert set(got) == {b"A", b"B"}
    assert 8 <= got.count(b"A") <= 12, got.count(b"A")


# ---- 4. active health checks ----

def test_active_health_check(wmproxy, tmp_path, fmt, backends):
    a, b = backends("A", "B")
    port = free_port()
    servers = [{"addr": "127.0.0.1:%d" % x.port, "rise_times": 2, "fall_times": 2}
               for x in (a, b)]
    p = run(wmproxy, tmp_path, top({
        "upstream": [{"name": "app", "balance": "round_robin", "server": servers,
                      "health_check": {"path": "/health", "interval": "200ms", "timeout": "1s",
                                       "expect_status": "2xx"}}],
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "proxy_url": "http://app"}]}),
        fmt, port=port)
    wait_serving(port)
    b.status = 503
    assert wait_log(p, "health: app|127.0.0.1:%d is down" % b.port), p.log()[-2000:]
    before = b.hits
    assert {get(port)[2] for _ in range(8)} == {b"A"} and b.hits == before
    b.status = 200
    assert wait_log(p, "health: app|127.0.0.1:%d is up again" % b.port), p.log()[-2000:]
    wait_until(lambda: {get(port)[2] for _ in range(6)} == {b"A", b"B"}, what="B back")


# ---- 5. header rules, both directions, with variables ----

def test_header_rules_both_directions(wmproxy, tmp_path, fmt, origin):
    port = free_port()
    run(wmproxy, tmp_path, top({
        "headers": [Words("proxy X-Http {host}")],
        "server": [{
            "bind_addr": "127.0.0.1:%d" % port,
            "headers": [Words("+ X-Resp-Ip {client_ip}"), Words("+ X-Resp-Scheme {scheme}"),
                        Words("- Content-Type")],
            "location": [{"rule": "/", "proxy_url": "http://127.0.0.1:%d" % origin.port,
                          "headers": [Words("proxy X-Url {url}"), Words("proxy X-Method {method}"),
                                      Words("proxy - X-Secret")]}]}]}), fmt, port=port)
    wait_serving(port, path="/conn")
    st, hd, body = get(port, "/headers?q=1", host="h.test", headers={"X-Secret": "s"})
    assert st == 200
    h = {k.lower(): v for k, v in json.loads(body)["headers"]}
    assert h["x-http"] == "h.test" and h["x-url"] == "/headers?q=1" and h["x-method"] == "GET"
    assert "x-secret" not in h
    assert h["host"] == "h.test" and h["x-real-ip"] == "127.0.0.1"  # defaults kept
    assert hd["x-resp-ip"] == "127.0.0.1" and hd["x-resp-scheme"] == "http"
    assert "content-type" not in hd


# ---- 6. limits: limit_req (wmproxy's "brust"), limit_req_status, allow/deny ----

def test_limit_req_and_access_rules(wmproxy, tmp_path, fmt):
    port = free_port()
    run(wmproxy, tmp_path, top({
        "limit_req_zone": {"perip": "{client_ip} limit=1m rate=1r/m",
                           "perhost": "{host} limit=1m rate=1r/m"},
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
            {"rule": "/ip", "limit_req": "zone=perip brust=1", "static_response": "ip"},
            {"rule": "/host", "limit_req": "zone=perhost burst=0", "limit_req_status": 429,
             "static_response": "host"},
            {"rule": "/deny", "deny_ip": ["127.0.0.0/8", "::1"], "static_response": "no"},
            {"rule": "/allow", "allow_ip": "10.0.0.0/8 2001:db8::/32", "static_response": "no"},
            {"rule": "/ok", "allow_ip": ["127.0.0.1/32"], "static_response": "yes"},
        ]}]}), fmt, port=port)
    wait_serving(port, path="/ok")
    assert [get(port, "/ip")[0] for _ in range(4)] == [200, 200, 503, 503]  # 1 + brust 1
    assert get(port, "/host", host="h1.test")[0] == 200
    st, hd, _ = get(port, "/host", host="h1.test")
    assert st == 429 and hd.get("retry-after") == "1"
    assert get(port, "/host", host="h2.test")[0] == 200  # a key of its own
    assert get(port, "/deny")[0] == 403
    assert get(port, "/allow")[0] == 403
    assert get(port, "/ok")[:3:2] == (200, b"yes")


# ---- 7. WebSocket (is_ws) with python3-websockets ----

def test_websocket_is_ws_echo(wmproxy, tmp_path, fmt, origin):
    port = free_port()
    run(wmproxy, tmp_path, top({"server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
        {"rule": "/ws", "is_ws": True, "proxy_url": "ws://127.0.0.1:%d" % origin.port},
        {"rule": "/", "static_response": "ok"}]}]}), fmt, port=port)
    wait_serving(port)

    async def go():
        async with websockets.connect("ws://127.0.0.1:%d/ws" % port, max_size=None) as ws:
            await ws.send("hello")
            assert await ws.recv() == "hello"
            blob = os.urandom(100000)
            await ws.send(blob)
            assert await ws.recv() == blob
    asyncio.run(asyncio.wait_for(go(), 20))


# ---- 8. access log with variables ----

def test_access_log_with_variables(wmproxy, tmp_path, fmt, origin):
    port = free_port()
    logs = tmp_path / "logs"
    os.makedirs(str(logs))
    run(wmproxy, tmp_path, top({
        "log_names": {"acc": "%s/access.log" % logs},
        "log_format": {"fmt": "{client_ip} {method} {url} host={host} st={status} "
                              "up={up_status} body={body_bytes_sent} ua={user_agent}"},
        "server": [{"bind_addr": "127.0.0.1:%d" % port, "access_log": "acc fmt", "location": [
            {"rule": "/", "proxy_url": "http://127.0.0.1:%d" % origin.port}]}]}), fmt, port=port)
    wait_serving(port, path="/conn")
    get(port, "/bytes/77?x=%s" % fmt, host="log.test", headers={"User-Agent": "agent-" + fmt})

    def line():
        try:
            text = open(str(logs / "access.log")).read()
        except OSError:
            return None
        return [ln for ln in text.splitlines() if "/bytes/77" in ln]
    ln = wait_until(line, what="the access line")[-1]
    assert ln == ("127.0.0.1 GET /bytes/77?x=%s host=log.test st=200 up=200 body=77 ua=agent-%s"
                  % (fmt, fmt)), ln


# ---- 9. TLS termination: two certificates on one port, chosen by SNI ----

def test_tls_two_certs_by_sni(wmproxy, tmp_path, fmt):
    d1 = gencert(tmp_path / "one", "one.test")
    d2 = gencert(tmp_path / "two", "two.test")
    port = free_port()
    bind = "127.0.0.1:%d" % port
    run(wmproxy, tmp_path, top({"server": [
        {"bind_ssl": bind, "up_name": "one.test", "cert": d1 + "/server.crt",
         "key": d1 + "/server.key", "static_response": "one {scheme}"},
        {"bind_ssl": bind, "up_name": "two.test", "cert": d2 + "/server.crt",
         "key": d2 + "/server.key", "static_response": "two {scheme}"},
    ]}), fmt, port=port)
    fp1, r1 = tls_get(port, "one.test", cafile=d1 + "/ca.crt")
    fp2, r2 = tls_get(port, "two.test", cafile=d2 + "/ca.crt")
    assert fp1 == cert_fingerprint(d1 + "/server.crt") and r1.endswith(b"one https")
    assert fp2 == cert_fingerprint(d2 + "/server.crt") and r2.endswith(b"two https")
    # an unknown name gets the first server's certificate
    assert tls_get(port, "other.test", host="one.test")[0] == fp1


# ---- 11. reload changes a location; a bad file is refused ----

def test_reload_changes_a_location(wmproxy, tmp_path, fmt):
    port, cport = free_port(), free_port()

    def doc(v, extra=()):
        return top({"server": [{"bind_addr": "127.0.0.1:%d" % port, "location": [
            {"rule": "/a", "static_response": v}] + list(extra)}]}, cport=cport)
    path = write_conf(tmp_path, doc("one"), fmt)
    wmproxy(["run", "-c", path], port=port)
    wait_serving(port, path="/a")
    assert get(port, "/a")[2] == b"one" and get(port, "/b")[0] == 404
    write_conf(tmp_path, doc("two", [{"rule": "/b", "static_response": "bee"}]), fmt)
    assert api(cport, "POST", "/reload")[0] == 200
    wait_until(lambda: get(port, "/a")[2] == b"two", what="the reloaded location")
    assert get(port, "/b")[2] == b"bee"
    # a broken file: refused, the running settings keep serving
    bad = doc("three")
    bad["http"]["server"][0]["bind_addr"] = "not an address"
    write_conf(tmp_path, bad, fmt)
    assert api(cport, "POST", "/reload")[0] != 200
    assert get(port, "/a")[2] == b"two"
    c = connect(port)  # and the port still takes connections
    c.close()


def test_helper_renders_the_same_config(fmt):
    """The two renderings carry the same tree (PyYAML and tomllib, when
    present, read them back), so each test above runs one config twice."""
    from helpers.revconf import render
    doc = top({"match_names": {"x": "^/x"}, "upstream": [
        {"name": "u", "server": [{"addr": "127.0.0.1:1", "weight": 2}]}],
        "server": [{"bind_addr": "127.0.0.1:1", "location": [
            {"rule": {"path": "/", "method": "GET"}, "static_response": "{host} \"q\""}]}]})
    text = render(doc, fmt)
    if fmt == "toml":
        tomllib = pytest.importorskip("tomllib")
        assert tomllib.loads(text) == doc
    else:
        yaml = pytest.importorskip("yaml")
        assert yaml.safe_load(text) == doc
