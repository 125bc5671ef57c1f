"""Section h2: HTTP/2 over TLS at the reverse proxy. h2load (100 concurrent
streams on each of 16 connections) against wmproxy's [http] server with
bind_ssl (ALPN h2), nginx (http2, upstream keepalive) and HAProxy (alpn h2,
http-reuse always), all proxying a 1 KiB object of one nginx origin over
HTTP/1.1 keep-alive: req/s and p99 in interleaved rounds (h2a), and RSS per
idle HTTP/2 connection (h2b)."""
import os
import re
import socket
import ssl
import struct
import subprocess
import time

from . import clients, daemons, rounds
from .ctx import Skip
from .proc import Proc
from .table import Col, Table

CONNS, STREAMS, THREADS = 16, 100, 2
ROUNDS = 3
NGINX = "nginx (http2)"
HAPROXY = "haproxy (alpn h2)"
OURS = "wmproxy"
PROXIES = (NGINX, HAPROXY, OURS)
PATH, SIZE = "/1k", 1024
# 16 x 100 streams are 1,600 requests in flight, each on its own HTTP/1.1
# upstream connection: an idle pool smaller than that closes and reopens
# upstream connections all the time (HAProxy keeps every idle one by
# default), so nginx and wmproxy both keep up to 1,024.
KEEPALIVE = 1024


def _nginx_h2(ctx, op, certs, workers):
    port = daemons.free_port()
    v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr
    m = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", v)
    new = m is not None and tuple(int(x) for x in m.groups()) >= (1, 25, 1)
    listen = "listen 127.0.0.1:%d ssl backlog=4096;\n        http2 on;" % port if new \
        else "listen 127.0.0.1:%d ssl http2 backlog=4096;" % port
    body = """    upstream origin {
        server 127.0.0.1:%d;
        keepalive %d;
    }
    server {
        %s
        ssl_certificate %s;
        ssl_certificate_key %s;
        http2_max_concurrent_streams 128;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
%s
        }
    }
""" % (op, KEEPALIVE, listen, certs["srv.pem"], certs["srv.key"], daemons.nginx_fwd_headers("$scheme"))
    return daemons._nginx(ctx, "nginx-h2", workers, body, port)


def _haproxy_h2(ctx, op, certs, threads):
    d = daemons._dir(ctx, "haproxy-h2")
    pem = os.path.join(d, "srv-full.pem")
    with open(pem, "w") as f:
        f.write(open(certs["srv.pem"]).read() + open(certs["srv.key"]).read())
    port = daemons.free_port()
    conf = """global
    maxconn 8000
    nbthread %d
defaults
    mode http
    http-reuse always
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    timeout http-request 60s
    timeout http-keep-alive 10m
frontend fe
    bind 127.0.0.1:%d ssl crt %s alpn h2,http/1.1
    default_backend be
backend be
%s
    server s1 127.0.0.1:%d
""" % (threads, port, pem, daemons.haproxy_fwd_headers("https"), op)
    path = daemons._write(os.path.join(d, "haproxy.cfg"), conf)
    p = Proc("haproxy-h2", ["haproxy", "-db", "-f", path], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def _ours_h2(ctx, op, certs, workers):
    d = daemons._dir(ctx, "rev-h2-ours")
    port = daemons.free_port()
    lines = ["workers = %d" % workers] if workers else []
    lines += ["disable_control = true", "[http]", "[[http.upstream]]", 'name = "origin"',
              'server = [{ addr = "127.0.0.1:%d" }]' % op, "keepalive = %d" % KEEPALIVE,
              "[[http.server]]", 'bind_ssl = "127.0.0.1:%d"' % port,
              "cert = %s" % daemons._toml_str(certs["srv.pem"]),
              "key = %s" % daemons._toml_str(certs["srv.key"]),
              'proxy_url = "http://origin"']
    conf = "\n".join(lines) + "\n"
    path = daemons._write(os.path.join(d, "rev.toml"), conf)
    p = Proc("rev-h2-ours", [ctx.ours_bin(), "run", "-c", path, "--disable-stdout"],
             ctx.logdir, port=port, cwd=d)
    p.conf = conf
    return p.start()


def _starters(ctx, op, certs):
    w = ctx.workers
    return {
        NGINX: (lambda: _nginx_h2(ctx, op, certs, ctx.nginx_workers),
                "nginx h2", "worker_processes %d, http2, upstream keepalive %d, "
                "X-Forwarded-*/X-Real-IP set" % (ctx.nginx_workers, KEEPALIVE)),
        HAPROXY: (lambda: _haproxy_h2(ctx, op, certs, ctx.nginx_workers),
                  "haproxy h2", "mode http, alpn h2, http-reuse always, nbthread %d, "
                  "forwardfor, X-Real-IP, X-Forwarded-Proto set" % ctx.nginx_workers),
        OURS: (lambda: _ours_h2(ctx, op, certs, w), "wmproxy h2",
               "bind_ssl, ALPN h2, upstream keepalive %d, %s"
               % (KEEPALIVE, "workers = %d" % w if w else "workers: one per core")),
    }


def h2load_argv(port, secs, logfile):
    return ["h2load", "-c", str(CONNS), "-m", str(STREAMS), "-t", str(THREADS),
            "-D", str(secs), "--warm-up-time", "1", "--log-file", logfile,
            "https://127.0.0.1:%d%s" % (port, PATH)]


def h2load(ctx, port, secs):
    """req/s and p99 (ms, from the per-request log) of one h2load run."""
    logfile = os.path.join(ctx.tmp, "h2load-%d.log" % port)
    r = subprocess.run(h2load_argv(port, secs, logfile), capture_output=True, text=True,
                       timeout=secs + 60)
    out = r.stdout
    m = re.search(r"finished in [\d.]+s, ([\d.]+) req/s", out)
    reqs = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                     r"(\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if r.returncode != 0 or m is None or reqs is None:
        raise RuntimeError("h2load failed: %s" % (out + r.stderr)[-400:])
    if int(reqs.group(5)) or int(reqs.group(6)) or (codes and sum(
            int(codes.group(i)) for i in (2, 3, 4))):
        raise RuntimeError("h2load: failed or non-2xx requests: %s" % reqs.group(0))
    durs = []
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                durs.append(int(parts[2]))
    os.unlink(logfile)
    durs.sort()
    p99 = durs[min(len(durs) - 1, int(len(durs) * 0.99))] / 1000.0 if durs else 0.0
    return {"rps": float(m.group(1)), "p99_ms": p99, "requests": int(reqs.group(4))}


def run(ctx):
    for tool in ("h2load", "nginx", "haproxy"):
        if subprocess.run(["sh", "-c", "command -v " + tool], capture_output=True).returncode:
            raise Skip("%s not installed (make deps-bench)" % tool)
    nrounds = 2 if ctx.quick else ROUNDS
    certs = daemons.tunnel_certs(ctx)
    origin = daemons.nginx_origin(ctx, workers=1)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    starters = _starters(ctx, origin.port, certs)
    try:
        tables = [_load_table(ctx, nrounds, origin, starters)]
        tables.append(_rss_table(ctx, starters))
    finally:
        origin.stop()
    return tables


def _load_table(ctx, nrounds, origin, starters):
    t = Table("h2a. HTTP/2 over TLS, reverse proxy, 1 KiB object (h2load -c%d -m%d -t%d "
              "-D%ds, %d interleaved rounds, best and mean)"
              % (CONNS, STREAMS, THREADS, ctx.load_secs, nrounds),
              [Col("rps", "req/s"), Col("mean", "mean req/s"),
               Col("p99_ms", "p99 ms", "{:.2f}"), Col("p99_mean", "mean p99 ms", "{:.2f}"),
               Col("cpu_us", "CPU µs/req", "{:.1f}"), Col("runs", "runs req/s")])
    extra = {}
    procs = {}
    ctx.cmdlines["h2load"] = " ".join(h2load_argv(0, ctx.load_secs, "$TMP/h2load.log")) \
        .replace(":0/", ":P/")

    def start(name):
        def fn():
            s, label, _ = starters[name]
            p = procs[name] = s()
            ctx.cmdlines[label] = p.cmdline
            return p.port, [p]
        return fn

    def measure(name, port, first):
        if first:
            h2load(ctx, port, ctx.warm_secs)
        p = procs[name]
        c0 = p.cpu_secs()
        v = h2load(ctx, port, ctx.load_secs)
        c1 = p.cpu_secs()
        if not p.alive() or not origin.alive():
            raise RuntimeError("%s died: %s" % (p.name, p.log_tail(200)))
        v["cpu_us"] = (c1 - c0) / max(1, v.pop("requests")) * 1e6
        extra.setdefault(name, []).append((v["p99_ms"], v["cpu_us"]))
        return v

    rows = [(name, start(name), starters[name][2]) for name in PROXIES]
    runs = rounds.run(ctx, t, rows, nrounds, measure, "rps")
    for name, ex in extra.items():
        if t.get(name, "rps") is None:
            continue
        t.set(name, "p99_mean", sum(e[0] for e in ex) / len(ex))
        t.set(name, "cpu_us", sum(e[1] for e in ex) / len(ex))
    t.ratio("wmproxy / nginx (mean req/s)", OURS, NGINX, "mean", ">= 1.1")
    t.ratio("wmproxy / haproxy (mean req/s)", OURS, HAPROXY, "mean", ">= 1.0")
    t.ratio("wmproxy / nginx (mean p99)", OURS, NGINX, "p99_mean", "<= 1.0")
    t.ratio("wmproxy / haproxy (mean p99)", OURS, HAPROXY, "p99_mean", "<= 1.0")
    t.ratio("wmproxy / nginx (CPU per request, info)", OURS, NGINX, "cpu_us")
    t.ratio("wmproxy / haproxy (CPU per request, info)", OURS, HAPROXY, "cpu_us")
    rounds.per_round_note(t, runs, OURS, NGINX, "wmproxy / nginx")
    rounds.per_round_note(t, runs, OURS, HAPROXY, "wmproxy / haproxy")
    p99s = {name: [e[0] for e in ex] for name, ex in extra.items()}
    rounds.per_round_note(t, p99s, OURS, NGINX, "wmproxy / nginx p99")
    rounds.per_round_note(t, p99s, OURS, HAPROXY, "wmproxy / haproxy p99")
    t.note("clients: h2load over TLS (ALPN h2), %d connections x %d concurrent streams, "
           "`GET %s` (%d bytes) from one nginx origin (1 worker, HTTP/1.1 keep-alive "
           "upstream for every proxy); p99 from h2load's per-request log; a run fails "
           "on any failed, errored or non-2xx request" % (CONNS, STREAMS, PATH, SIZE))
    return t


# --- h2b: RSS per idle HTTP/2 connection ----------------------------------------
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def _frame(t, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([t, flags]) + \
        struct.pack(">I", sid) + payload


def _h2_get(port, ctx_tls):
    """A TLS HTTP/2 connection that fetched /1k once and stays open."""
    s = ctx_tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                            server_hostname="localhost")
    # HPACK, no Huffman: :method GET (idx 2), :scheme https (7), :path, :authority
    block = b"\x82\x87" + b"\x04" + bytes([len(PATH)]) + PATH.encode() + \
        b"\x01\x09localhost"
    s.sendall(PREFACE + _frame(4, 0, 0) + _frame(1, 0x5, 1, block))
    buf = b""
    while True:
        d = s.recv(65536)
        if not d:
            raise RuntimeError("closed before the answer")
        buf += d
        while len(buf) >= 9:
            n = struct.unpack(">I", b"\0" + buf[:3])[0]
            if len(buf) < 9 + n:
                break
            t, fl, sid = buf[3], buf[4], struct.unpack(">I", buf[5:9])[0]
            buf = buf[9 + n:]
            if t == 4 and not fl & 1:
                s.sendall(_frame(4, 1, 0))  # SETTINGS ack
            if sid == 1 and fl & 1 and t in (0, 1):
                return s


def _rss_table(ctx, starters):
    n = min(ctx.rss_conns, 1000)
    t = Table("h2b. HTTP/2 over TLS: memory per idle connection (%d connections, one "
              "GET /1k each, then idle)" % n,
              [Col("base", "RSS before KiB"), Col("after", "RSS after KiB"),
               Col("per_conn", "ΔRSS KiB / conn", "{:.2f}"), Col("procs", "processes")])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    tls.check_hostname = False
    tls.verify_mode = ssl.CERT_NONE
    tls.set_alpn_protocols(["h2"])

    def measure(name):
        def fn():
            start, label, _ = starters[name]
            p = start()
            socks = []
            try:
                clients.close_all([_h2_get(p.port, tls) for _ in range(8)])
                time.sleep(0.5)
                base = p.rss_kib()
                socks = [_h2_get(p.port, tls) for _ in range(n)]
                time.sleep(1.0)
                if not p.alive():
                    raise RuntimeError("%s died" % p.name)
                rss = p.rss_kib()
                return {"base": base, "after": rss, "per_conn": (rss - base) / n,
                        "procs": len(p.tree_pids())}
            finally:
                clients.close_all(socks)
                p.stop()
        return fn

    for name in PROXIES:
        ctx.row(t, name, measure(name), detail=starters[name][2])
    t.ratio("wmproxy / nginx (ΔRSS, info)", OURS, NGINX, "per_conn")
    t.ratio("wmproxy / haproxy (ΔRSS, info)", OURS, HAPROXY, "per_conn")
    t.note("fresh proxy per row: 8 warm-up connections, RSS sampled (VmRSS over the "
           "process tree), then %d TLS HTTP/2 connections each fetch /1k and stay "
           "open; after 1 s RSS again; Δ / %d = KiB per idle connection (TLS state "
           "included, kernel socket buffers not)" % (n, n))
    return t
