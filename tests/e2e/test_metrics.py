"""Observability: GET /metrics (Prometheus text 0.0.4) counts what the test
sent, parses with Prometheus' own parsers, follows the control API's rules
(token, Origin, no secrets), keeps counters across a reload; the dashboard
page renders live values in headless Chromium; `wmproxy status` prints a
summary."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading

import pytest

from conftest import BIN
from helpers import control as ctl
from helpers.control import api
from helpers.net import connect, free_ports, wait_until

TOKEN = "t0ken-Secret-42"
PASSWORD = "pa55-Secret-77"


def metrics(cport, token=None):
    code, hdrs, body = api(cport, "GET", "/metrics", token)
    assert code == 200, (code, body)
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    return body.decode() if isinstance(body, bytes) else body


def metrics_when(cport, cond, what):
    """The metrics text once cond(text) holds: a request is counted as its
    connection ends, which may be after the client has its answer."""
    return wait_until(lambda: (lambda t: t if cond(t) else None)(metrics(cport, TOKEN)),
                      what=what)


def sample(text, name, **labels):
    """The value of one sample (labels must match exactly the given ones
    among the sample's), summed when several match; 0 when none."""
    total = 0.0
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$', line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            total += float(m.group(3))
    return total


def check_format(text):
    """Prometheus' Python parser must read every family; promtool (Debian's
    prometheus package) must accept it when installed."""
    from prometheus_client.parser import text_string_to_metric_families
    fams = {f.name for f in text_string_to_metric_families(text)}
    assert "process_resident_memory_bytes" in fams
    promtool = shutil.which("promtool")
    if promtool:
        r = subprocess.run([promtool, "check", "metrics"], input=text.encode(),
                           capture_output=True, timeout=30)
        # promtool's lint only warns about naming style (exit 3); exit 1 is a parse error
        assert r.returncode in (0, 3), r.stdout + r.stderr
        assert b"error" not in r.stderr.lower(), r.stderr


def rev_config(cport, pport, rport, oport):
    return ('control = "127.0.0.1:%(c)d"\n'
            'control_token = "%(t)s"\n'
            'workers = 2\n'
            '[proxy]\n'
            'bind_addr = "127.0.0.1:%(p)d"\n'
            'username = "u"\n'
            'password = "%(pw)s"\n'
            '[http]\n'
            '[http.limit_req_zone]\n'
            'one = "{client_ip} limit=1m rate=1r/m"\n'
            '[[http.upstream]]\n'
            'name = "pool"\n'
            'balance = "round_robin"\n'
            'server = [{ addr = "127.0.0.1:%(o)d" }, { addr = "127.0.0.1:1", fall_times = 1 }]\n'
            '[[http.server]]\n'
            'bind_addr = "127.0.0.1:%(r)d"\n'
            '[[http.server.location]]\n'
            'rule = "/limited"\n'
            'limit_req = "zone=one burst=0"\n'
            'static_response = "ok"\n'
            '[[http.server.location]]\n'
            'rule = "/headers"\n'
            'proxy_url = "http://pool"\n'
            '[[http.server.location]]\n'
            'rule = "/"\n'
            'static_response = "hello"\n'
            % {"c": cport, "t": TOKEN, "p": pport, "pw": PASSWORD, "r": rport, "o": oport})


@pytest.fixture
def instance(wmproxy, tmp_path, origin):
    pport, rport, cport = free_ports(3)
    text = rev_config(cport, pport, rport, origin.port)
    path = ctl.write(tmp_path / "wm.toml", text)
    p = wmproxy(["run", "-c", path], port=pport)
    ctl.wait_control(p, text)
    wait_until(lambda: _get(rport, "/") == 200, what="reverse port")
    return {"p": p, "path": path, "pport": pport, "rport": rport, "cport": cport,
            "text": text}


def _get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.request("GET", path)
        r = c.getresponse()
        r.read()
        c.close()
        return r.status
    except OSError:
        return None


def test_counters_follow_traffic(instance):
    cport, rport = instance["cport"], instance["rport"]
    # the fixture's request is counted as its connection ends, which may be
    # after it returned: start from a count that includes it
    before = wait_until(lambda: (lambda t: t if sample(t, "wmproxy_http_requests_total",
                                                        code="2xx") >= 1
                                 and sample(t, "wmproxy_http_request_duration_seconds_count")
                                 >= 1 else None)(metrics(cport, TOKEN)),
                        what="the fixture's request counted")
    check_format(before)
    n0 = sample(before, "wmproxy_http_requests_total", code="2xx")
    h0 = sample(before, "wmproxy_http_request_duration_seconds_count")
    c = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
    for _ in range(1000):  # one keep-alive connection, bounded
        c.request("GET", "/x")
        r = c.getresponse()
        assert r.status == 200 and r.read() == b"hello"
    c.close()
    after = wait_until(lambda: (lambda t: t if sample(t, "wmproxy_http_requests_total",
                                                       code="2xx") >= n0 + 1000 else None)(
        metrics(cport, TOKEN)), what="1000 requests counted")
    assert sample(after, "wmproxy_http_requests_total", code="2xx") == n0 + 1000
    assert sample(after, "wmproxy_http_request_duration_seconds_count") == h0 + 1000
    assert sample(after, "wmproxy_http_request_duration_seconds_bucket", le="+Inf") == h0 + 1000
    lis = "127.0.0.1:%d" % rport
    assert sample(after, "wmproxy_listener_connections_accepted_total", listener=lis) >= 2
    assert sample(after, "process_resident_memory_bytes") > 1e6
    assert sample(after, "process_open_fds") > 3
    assert sample(after, "wmproxy_build_info") == 1
    check_format(after)


def test_upstreams_limits_and_errors(instance):
    cport, rport = instance["cport"], instance["rport"]
    # the dead server is tried (connect refused), marked down after one failure
    for _ in range(6):
        assert _get(rport, "/headers") == 200
    m = metrics_when(cport, lambda t: sample(t, "wmproxy_upstream_response_seconds_count") >= 6,
                     "6 upstream answers counted")
    assert sample(m, "wmproxy_upstream_server_up", upstream="pool", server="127.0.0.1:1") == 0
    assert sample(m, "wmproxy_upstream_server_failures_total", upstream="pool",
                  server="127.0.0.1:1") >= 1
    ups = [l for l in m.splitlines() if l.startswith("wmproxy_upstream_server_up{")]
    assert any(l.endswith(" 1") for l in ups), ups
    assert sample(m, "wmproxy_upstream_connects_total", result="refused") >= 1
    assert sample(m, "wmproxy_upstream_connects_total", result="ok") >= 1
    assert sample(m, "wmproxy_upstream_response_seconds_count") >= 6
    # limit_req: 1 r/s, no burst -> a quick second request is refused
    codes = [_get(rport, "/limited") for _ in range(3)]
    assert 503 in codes, codes
    m = metrics_when(cport, lambda t: sample(t, "wmproxy_http_requests_total", code="5xx") >= 1,
                     "the 503 counted")
    assert sample(m, "wmproxy_limit_req_refused_total", zone="one") >= 1
    assert sample(m, "wmproxy_http_requests_total", code="5xx") >= 1
    check_format(m)


def test_security_of_metrics_and_page(instance):
    cport = instance["cport"]
    assert api(cport, "GET", "/metrics")[0] == 401
    assert api(cport, "GET", "/metrics", "wrong")[0] == 401
    assert api(cport, "POST", "/metrics", TOKEN)[0] == 405
    # a read from another web page is refused; from the dashboard itself allowed
    c = http.client.HTTPConnection("127.0.0.1", cport, timeout=10)
    c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN,
                                          "Origin": "http://evil.example"})
    r = c.getresponse()
    assert r.status == 403
    r.read()
    c.request("GET", "/metrics", headers={"Authorization": "Bearer " + TOKEN,
                                          "Origin": "http://127.0.0.1:%d" % cport})
    r = c.getresponse()
    assert r.status == 200
    r.read()
    # the page holds no data: served without the token, locked down by headers
    c.request("GET", "/")
    r = c.getresponse()
    page = r.read()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/html")
    assert "frame-ancestors 'none'" in r.getheader("Content-Security-Policy")
    assert r.getheader("X-Frame-Options") == "DENY"
    c.close()
    assert b"/metrics" in page and b"/status" in page
    assert b"localStorage" not in page and b"sessionStorage" not in page
    # no secret anywhere: metrics, status, page
    m = metrics(cport, TOKEN)
    code, _, st = api(cport, "GET", "/status", TOKEN)
    for blob in (m, str(st), page.decode()):
        assert TOKEN not in blob and PASSWORD not in blob


def test_counters_survive_reload(instance):
    cport, rport = instance["cport"], instance["rport"]
    for _ in range(20):
        assert _get(rport, "/x") == 200
    before = sample(metrics(cport, TOKEN), "wmproxy_http_requests_total")
    # a reload that changes the answer; counters must not go back
    ctl.write(instance["path"], instance["text"].replace('"hello"', '"hello2"'))
    code, _, doc = api(cport, "POST", "/reload", TOKEN)
    assert code == 200, doc
    wait_until(lambda: _get(rport, "/x") == 200, what="serving after reload")
    after = metrics_when(cport, lambda t: sample(t, "wmproxy_http_requests_total") >= before + 1,
                         "the request after the reload counted")
    assert sample(after, "wmproxy_config_reloads_total", result="ok") == 1
    assert sample(after, "wmproxy_config_last_reload_successful") == 1
    # a refused reload is counted, and the hash stays the running one's
    h = [l for l in after.splitlines() if l.startswith("wmproxy_config_info{")]
    ctl.write(instance["path"], instance["text"] + "\n[[[ broken\n")
    assert api(cport, "POST", "/reload", TOKEN)[0] == 422
    m = metrics(cport, TOKEN)
    assert sample(m, "wmproxy_config_reloads_total", result="refused") == 1
    assert sample(m, "wmproxy_config_last_reload_successful") == 0
    assert [l for l in m.splitlines() if l.startswith("wmproxy_config_info{")] == h
    st = ctl.status(cport, TOKEN)
    assert any("refused" in e for e in st["recent_errors"]), st["recent_errors"]


def test_status_command(instance):
    import re
    assert api(instance["cport"], "POST", "/reload", TOKEN)[0] == 200
    r = subprocess.run([BIN, "status", "-c", instance["path"]], capture_output=True,
                       timeout=30, text=True)
    assert r.returncode == 0, r.stderr
    assert "LISTENER" in r.stdout and "127.0.0.1:%d" % instance["rport"] in r.stdout
    assert "config: %s" % instance["path"] in r.stdout
    # the reload's time as the log lines write theirs (the offset with a colon)
    assert re.search(r"last reload: applied at \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d: ",
                     r.stdout), r.stdout
    r = subprocess.run([BIN, "status", "-u", "127.0.0.1:%d" % instance["cport"]],
                       capture_output=True, timeout=30, text=True)
    assert r.returncode == 1 and "401" in r.stderr


def _serve_once(body):
    """A one-shot HTTP server on 127.0.0.1 that answers any request with
    200 and body, then closes: (port, thread)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(30)

    def run():
        try:
            c, _ = srv.accept()
        except OSError:
            srv.close()
            return
        with c:
            c.settimeout(10)
            buf = b""
            while b"\r\n\r\n" not in buf and len(buf) < 65536:
                d = c.recv(4096)
                if not d:
                    break
                buf += d
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        srv.close()
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return srv.getsockname()[1], t


def test_status_command_reads_a_large_status():
    """A /status over 64 KiB (hundreds of listeners, as a port range opens)
    is read whole: it was cut at 64 KiB and then unreadable."""
    ls = [{"addr": "127.0.0.1:%d" % (20000 + i), "kind": "stream", "open": 0, "accepted": i,
           "bytes_in": 0, "bytes_out": 0} for i in range(1200)]
    st = {"version": "x", "pid": 1, "uptime_s": 1, "workers": 1, "connections": 0,
          "listeners": ls, "config": "big.toml",
          "reload": {"ok": 0, "failed": 0, "last_time": 0, "last_ok": None, "last_message": ""},
          "recent_errors": ["the last line"]}
    body = json.dumps(st).encode()
    assert len(body) > 100000
    port, t = _serve_once(body)
    r = subprocess.run([BIN, "status", "-u", "127.0.0.1:%d" % port], capture_output=True,
                       timeout=30, text=True)
    t.join(10)
    assert r.returncode == 0, r.stderr
    assert "127.0.0.1:21199" in r.stdout and "the last line" in r.stdout

    # Beyond what the client takes (1 MiB): an error that says so, not a parse error.
    port, t = _serve_once(b'{"x":"' + b"a" * (1 << 20) + b'"}')
    r = subprocess.run([BIN, "status", "-u", "127.0.0.1:%d" % port], capture_output=True,
                       timeout=30, text=True)
    t.join(10)
    assert r.returncode == 1 and "larger than" in r.stderr, r.stderr


def chromium():
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("chromium is not installed (make test installs Debian's chromium)")


def test_dashboard_in_headless_chromium(wmproxy, tmp_path, origin):
    """No token here (a browser cannot be handed one on the command line);
    the token prompt is covered by test_security_of_metrics_and_page."""
    pport, rport, cport, eport, tport, ccport = free_ports(6)
    # a tunnel server with a reverse proxy beside it, and a client attached
    text = ('control = "127.0.0.1:%d"\nworkers = 2\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
            'mode = "server"\nusername = "wm"\npassword = "s3cret"\n'
            'map_tcp_bind = "127.0.0.1:%d"\nheartbeat_interval = 1\n'
            '[http]\n[[http.server]]\nbind_addr = "127.0.0.1:%d"\n'
            'static_response = "hi"\n' % (cport, pport, tport, rport))
    path = ctl.write(tmp_path / "wm.toml", text)
    p = wmproxy(["run", "-c", path], port=pport)
    ctl.wait_control(p, text)
    ctext = ('control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
             'server = "127.0.0.1:%d"\nusername = "wm"\npassword = "s3cret"\n'
             'heartbeat_interval = 1\n'
             '[[proxy.mappings]]\nname = "webapp"\nmode = "tcp"\n'
             'local_addr = "127.0.0.1:%d"\n' % (ccport, eport, pport, origin.port))
    cpath = ctl.write(tmp_path / "cli.toml", ctext)
    cli = wmproxy(["run", "-c", cpath], port=eport)
    ctl.wait_control(cli, ctext)
    m = wait_until(lambda: (lambda t: t if sample(t, "wmproxy_tunnel_client_connected") == 1
                            else None)(metrics(cport)), what="the client attached")
    assert 'mapping="webapp"' in m
    # visitors through the tcp mapping are counted per mapping
    assert _get(tport, "/bytes/5000") == 200
    m = wait_until(lambda: (lambda t: t if sample(t, "wmproxy_tunnel_mapping_bytes_total",
                                                   mapping="webapp", direction="out") > 5000
                            else None)(metrics(cport)), what="mapping bytes")
    assert sample(m, "wmproxy_tunnel_mapping_bytes_total", mapping="webapp", direction="in") > 20
    # heartbeats every second: both sides learn the round trip
    wait_until(lambda: "wmproxy_tunnel_client_heartbeat_rtt_seconds{" in metrics(cport),
               what="server-side RTT")
    cm = wait_until(lambda: (lambda t: t if "wmproxy_tunnel_parent_heartbeat_rtt_seconds " in t
                             else None)(metrics(ccport)), what="client-side RTT")
    assert sample(cm, "wmproxy_tunnel_parent_connected") == 1
    assert sample(cm, "wmproxy_tunnel_parent_connects_total") >= 1
    check_format(m)
    check_format(cm)
    wait_until(lambda: _get(rport, "/") == 200, what="reverse port")
    for _ in range(50):
        assert _get(rport, "/") == 200
    profile = tempfile.mkdtemp(dir=str(tmp_path))
    url = "http://127.0.0.1:%d/" % cport
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--user-data-dir=" + profile, "--virtual-time-budget=8000"]
    r = subprocess.run(args + ["--dump-dom", url], capture_output=True, timeout=120, text=True)
    dom = r.stdout
    assert "127.0.0.1:%d" % rport in dom, (dom[-3000:], r.stderr[-2000:])
    req = re.search(r'id="k-req">(\d+)<', dom)
    assert req and int(req.group(1)) >= 50, dom[-3000:]
    assert "webapp" in dom, dom[-3000:]  # the tunnel client's mapping
    shot = os.path.join(str(tmp_path), "dash.png")
    r = subprocess.run(args + ["--window-size=1200,900", "--screenshot=" + shot, url],
                       capture_output=True, timeout=120)
    assert os.path.getsize(shot) > 10000, r.stderr[-2000:]
    if os.environ.get("WM_SAVE_SCREENSHOT"):
        shutil.copy(shot, os.environ["WM_SAVE_SCREENSHOT"])


def test_json_access_log(wmproxy, tmp_path, origin):
    import json
    rport, cport = free_ports(2)
    logp = tmp_path / "logs" / "access.json"
    text = ('control = "127.0.0.1:%d"\nworkers = 2\n[http]\n'
            'log_names = { access = "%s" }\n'
            'access_log = "access json"\n'
            '[[http.server]]\nbind_addr = "127.0.0.1:%d"\n'
            '[[http.server.location]]\nrule = "/headers"\nproxy_url = "http://127.0.0.1:%d"\n'
            '[[http.server.location]]\nrule = "/"\nstatic_response = "hi"\n'
            % (cport, logp, rport, origin.port))
    path = ctl.write(tmp_path / "wm.toml", text)
    p = wmproxy(["run", "-c", path], port=rport)
    ctl.wait_control(p, text)
    c = http.client.HTTPConnection("127.0.0.1", rport, timeout=10)
    c.request("GET", "/headers?a=1", headers={"User-Agent": 'ua "quoted"\\x', "Referer": "r"})
    r = c.getresponse()
    assert r.status == 200
    r.read()
    c.request("GET", "/nope")
    c.getresponse().read()
    c.close()
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= 2 else None)(
        logp.read_text().splitlines() if logp.exists() else []), what="two JSON lines")
    first, second = (json.loads(l) for l in lines[:2])
    assert first["status"] == 200 and first["up_status"] == 200
    assert first["url"] == "/headers?a=1" and first["method"] == "GET"
    assert first["user_agent"] == 'ua "quoted"\\x' and first["referer"] == "r"
    assert first["up_addr"].endswith(":%d" % origin.port)
    assert first["client_ip"] == "127.0.0.1" and first["body_bytes_sent"] > 0
    assert isinstance(first["request_time"], float) or isinstance(first["request_time"], int)
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}$", first["time"])
    assert second["status"] == 200 and second["up_status"] is None and second["up_addr"] is None


def test_tunnel_mapping_bytes_series_bounded(wmproxy, tmp_path):
    """A client of a username/password server has no name of its own: its
    mapping counters used to be labelled with its source address and port,
    so each reconnect made two new series for ever (the counters did not
    carry over), and clients could fill the whole series space of /metrics.
    Now the label is the name the client gives (its host name) and the
    family is capped, with one warning."""
    pport, cport, tport, ccport, eport = free_ports(5)
    text = ('control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
            'mode = "server"\nusername = "wm"\npassword = "s3cret"\n'
            'map_tcp_bind = "127.0.0.1:%d"\n' % (cport, pport, tport))
    path = ctl.write(tmp_path / "wm.toml", text)
    p = wmproxy(["run", "-c", path], port=pport)
    ctl.wait_control(p, text)
    series = re.compile(r"^wmproxy_tunnel_mapping_bytes_total\{", re.M)

    def client_text(names):
        t = ('control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
             'server = "127.0.0.1:%d"\nusername = "wm"\npassword = "s3cret"\n'
             % (ccport, eport, pport))
        for n in names:
            t += ('[[proxy.mappings]]\nname = "%s"\nmode = "tcp"\n'
                  'local_addr = "127.0.0.1:9"\n' % n)
        return t

    ctext = client_text(["webapp"])
    cpath = ctl.write(tmp_path / "cli.toml", ctext)
    for i in range(3):  # the same client reconnects
        cli = wmproxy(["run", "-c", cpath], port=eport)
        ctl.wait_control(cli, ctext)
        wait_until(lambda: p.log().count("registered mapping \"webapp\"") == i + 1,
                   what="registration %d" % (i + 1))
        cli.stop()
    m = metrics(cport)
    assert len(series.findall(m)) == 2, m
    assert 'client="%s",mapping="webapp"' % socket.gethostname() in m
    # 9 x 256 new mapping names over one carrier: past the bound (4096
    # series) the rest is not shown, and other families keep their room
    cli = wmproxy(["run", "-c", cpath], port=eport)
    ctl.wait_control(cli, ctext)
    for g in range(9):
        names = ["g%d_%d" % (g, i) for i in range(256)]
        ctl.write(cpath, client_text(names))
        cli.signal(signal.SIGHUP)
        wait_until(lambda: p.log().count('registered mapping "g%d_255"' % g) == 1,
                   timeout=30, what="generation %d" % g)
    m = metrics(cport)
    assert len(series.findall(m)) == 4096
    assert p.log().count("wmproxy_tunnel_mapping_bytes_total is at its bound of 4096") == 1
    check_format(m)
