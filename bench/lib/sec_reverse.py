"""Section 6: reverse proxy. wmproxy's [http] server proxying to an nginx
origin, against nginx proxy_pass (upstream keepalive) and HAProxy (mode
http, http-reuse always): req/s, latency and CPU per request with wrk on a
1 KiB and a 100 KiB object (6a, 6b), and RSS per idle keep-alive client (6c).

All proxies share one origin and run at once; each object's rows are
measured in interleaved rounds (lib.rounds). The RSS rows start fresh
proxies so that buffers grown under load do not hide the per-connection
cost."""
import time

from . import clients, daemons, rounds
from .ctx import Skip
from .table import Col, Table

THREADS, CONNS = 2, 64
ROUNDS = 3
WARM_CLIENTS = 16
DIRECT = "direct (nginx origin)"
NGINX = "nginx proxy_pass"
HAPROXY = "haproxy"
OURS = "wmproxy"
PROXIES = (NGINX, HAPROXY, OURS)
OBJECTS = (("a", "/1k", "1 KiB", 1024), ("b", "/100k", "100 KiB", 102400))


def _starters(ctx, op):
    """name -> (start() -> Proc, cmdline label, detail)."""
    w = ctx.workers
    return {
        NGINX: (lambda: daemons.nginx_reverse(ctx, op, ctx.nginx_workers, fwd_headers=True),
                "nginx proxy_pass",
                "worker_processes %d, upstream keepalive 64, X-Forwarded-*/X-Real-IP set"
                % ctx.nginx_workers),
        HAPROXY: (lambda: daemons.haproxy_http(ctx, op, ctx.nginx_workers, fwd_headers=True),
                  "haproxy (mode http)",
                  "mode http, http-reuse always, nbthread %d, forwardfor, X-Real-IP, "
                  "X-Forwarded-Proto set" % ctx.nginx_workers),
        OURS: (lambda: daemons.ours_reverse(ctx, op, w, keepalive=64),
               "wmproxy reverse",
               "run -c rev.toml, %s, upstream keepalive 64"
               % ("workers = %d" % w if w else "workers: one per core")),
    }


def run(ctx):
    nrounds = 2 if ctx.quick else ROUNDS
    origin = daemons.nginx_origin(ctx, workers=1)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    op = origin.port
    starters = _starters(ctx, op)
    procs, errs = {DIRECT: origin}, {}
    tables = []
    try:
        for name in PROXIES:
            start, label, _ = starters[name]
            ctx.log("reverse: starting %s" % name)
            try:
                procs[name] = start()
                ctx.cmdlines[label] = procs[name].cmdline
            except Skip as e:
                errs[name] = e
            except Exception as e:              # noqa: BLE001 - an error row
                errs[name] = RuntimeError(str(e) or type(e).__name__)
        for letter, path, label, size in OBJECTS:
            tables.append(_load_table(ctx, nrounds, letter, path, label, size,
                                      origin, procs, errs, starters))
    finally:
        for name in PROXIES:
            if name in procs:
                procs[name].stop()
    try:
        tables.append(_rss_table(ctx, op, starters))
    finally:
        origin.stop()
    return tables


# --- 6a / 6b: wrk ----------------------------------------------------------------
def _load_table(ctx, nrounds, letter, path, label, size, origin, procs, errs,
                starters):
    t = Table("6%s. Reverse proxy, %s object (wrk -t%d -c%d -d%ds, keep-alive both "
              "sides, %d interleaved rounds, best and mean)"
              % (letter, label, THREADS, CONNS, ctx.load_secs, nrounds),
              [Col("rps", "req/s"), Col("mean", "mean req/s"),
               Col("p50_ms", "p50 ms", "{:.2f}"), Col("p99_ms", "p99 ms", "{:.2f}"),
               Col("p99_mean", "mean p99 ms", "{:.2f}"),
               Col("cpu_us", "CPU µs/req", "{:.1f}"),
               Col("origin_us", "origin CPU µs/req", "{:.1f}"),
               Col("pct", "% of direct", "{:.0f}%"), Col("runs", "runs req/s")])
    host = "127.0.0.1:%d" % origin.port
    extra = {}          # name -> [(p99_ms, cpu_us, origin_us)] per run
    ctx.cmdlines["wrk (reverse)"] = " ".join(clients.wrk_argv(
        ctx, 0, "$TMP/wrk_PATH.lua", ctx.load_secs, THREADS, CONNS)).replace(
            ":0/", ":P/")

    def measure(name, port, first):
        if first:
            clients.wrk(ctx, port, path, host, ctx.warm_secs, THREADS, CONNS)
        p = procs[name]
        c0, o0 = p.cpu_secs(), origin.cpu_secs()
        v = clients.wrk(ctx, port, path, host, ctx.load_secs, THREADS, CONNS,
                        min_body=size)
        c1, o1 = p.cpu_secs(), origin.cpu_secs()
        for q in (p, origin):
            if not q.alive():
                raise RuntimeError("%s died: %s" % (q.name, q.log_tail(200)))
        n = v.pop("requests")
        v.pop("read_errors")
        v["cpu_us"] = (c1 - c0) / n * 1e6
        v["origin_us"] = (o1 - o0) / n * 1e6
        extra.setdefault(name, []).append((v["p99_ms"], v["cpu_us"], v["origin_us"]))
        return v

    def start(name):
        def fn():
            if name in errs:
                raise errs[name]
            return procs[name].port, []
        return fn

    rows = [(DIRECT, start(DIRECT), "no proxy; CPU = the origin's")]
    rows += [(name, start(name), starters[name][2]) for name in PROXIES]
    runs = rounds.run(ctx, t, rows, nrounds, measure, "rps")
    for name, ex in extra.items():
        if t.get(name, "rps") is None:
            continue
        for i, key in enumerate(("p99_mean", "cpu_us", "origin_us")):
            t.set(name, key, sum(e[i] for e in ex) / len(ex))
    d = t.get(DIRECT, "mean")
    for name, _, _ in rows:
        v = t.get(name, "mean")
        if v is not None and d:
            t.set(name, "pct", 100.0 * v / d)
    if letter == "a":
        t.ratio("wmproxy / nginx proxy_pass (mean req/s)", OURS, NGINX, "mean", ">= 1.2")
        t.ratio("wmproxy / haproxy (mean req/s)", OURS, HAPROXY, "mean", ">= 1.1")
        t.ratio("wmproxy / nginx proxy_pass (mean p99)", OURS, NGINX, "p99_mean", "<= 1.0")
        t.ratio("wmproxy / haproxy (mean p99)", OURS, HAPROXY, "p99_mean", "<= 1.0")
    else:
        t.ratio("wmproxy / best of nginx, haproxy (mean req/s)", OURS,
                [NGINX, HAPROXY], "mean", ">= 0.95")
        t.ratio("wmproxy / nginx proxy_pass (mean p99, info)", OURS, NGINX, "p99_mean")
        t.ratio("wmproxy / haproxy (mean p99, info)", OURS, HAPROXY, "p99_mean")
    t.ratio("wmproxy / nginx proxy_pass (CPU per request, info)", OURS, NGINX, "cpu_us")
    t.ratio("wmproxy / haproxy (CPU per request, info)", OURS, HAPROXY, "cpu_us")
    rounds.per_round_note(t, runs, OURS, NGINX, "wmproxy / nginx proxy_pass")
    rounds.per_round_note(t, runs, OURS, HAPROXY, "wmproxy / haproxy")
    t.note("origin: nginx, 1 worker, access_log off, static %s file `%s`; every row "
           "sends `GET %s` with `Host: 127.0.0.1:ORIGIN`; a row fails on any wrk "
           "socket error, non-2xx response or a response shorter than %d bytes"
           % (label, path, path, size))
    t.note("CPU µs/req = utime + stime of the proxy's process tree (all threads; "
           "/proc/PID/stat) over a run / requests of that run, mean of the runs; "
           "origin CPU µs/req the same for the origin nginx; the wrk client's CPU "
           "is in neither. p50/p99 are the best run's (wrk's latency percentiles, from its Lua `done()`); mean p99 "
           "is the mean of every run's p99, which the p99 ratios compare")
    t.note("all proxies run at once; the rows are measured in %d interleaved "
           "rounds (direct, nginx, haproxy, wmproxy, again), each row's best run "
           "and the mean of its runs are reported and all are listed; the target "
           "ratios compare means; each row has a %ds warm-up before its first run"
           % (nrounds, ctx.warm_secs))
    return t


# --- 6c: RSS per idle keep-alive client ----------------------------------------------
def _rss_table(ctx, op, starters):
    n = ctx.rss_conns
    t = Table("6c. Reverse proxy: memory per idle keep-alive client (%d clients, "
              "one GET /1k each, then idle)" % n,
              [Col("base", "RSS before KiB"), Col("after", "RSS after KiB"),
               Col("per_conn", "ΔRSS KiB / conn", "{:.2f}"),
               Col("pss_conn", "ΔPSS KiB / conn", "{:.2f}"),
               Col("procs", "processes")])

    def measure(name):
        def fn():
            start, label, _ = starters[name]
            p = start()
            ctx.cmdlines[label] = p.cmdline
            try:
                return _rss_measure(p, op, n)
            finally:
                p.stop()
        return fn

    for name in PROXIES:
        ctx.row(t, name + ("" if name == OURS else " (ref)"), measure(name),
                detail=starters[name][2])
    t.limit("wmproxy ΔRSS per idle keep-alive client", OURS, "per_conn", "<= 1",
            "KiB")
    t.ratio("wmproxy / nginx proxy_pass (ΔRSS, info)", OURS, NGINX + " (ref)",
            "per_conn")
    t.ratio("wmproxy / haproxy (ΔRSS, info)", OURS, HAPROXY + " (ref)", "per_conn")
    t.note("fresh proxy per row: %d warm-up clients (one request each, then closed), "
           "RSS sampled (sum of VmRSS over the process tree; PSS from "
           "smaps_rollup), then %d clients opened one by one, each sends `GET /1k` "
           "(keep-alive) and reads the whole response; once the proxy holds all "
           "%d client connections ESTABLISHED (/proc/net/tcp) and 1 s has passed, "
           "RSS is sampled again; Δ / %d = KiB per idle client. Kernel socket "
           "buffers are not part of RSS" % (WARM_CLIENTS, n, n, n))
    return t


def _rss_measure(p, origin_port, n):
    warm = clients.open_tunnels("http-ka", p.port, "127.0.0.1", origin_port,
                                WARM_CLIENTS)
    time.sleep(0.2)
    clients.close_all(warm)
    time.sleep(0.5)
    base_conns = clients.established_count(p.port)
    base_rss, base_pss = p.rss_kib(), p.pss_kib()
    socks = clients.open_tunnels("http-ka", p.port, "127.0.0.1", origin_port, n)
    try:
        time.sleep(1.0)
        held = clients.established_count(p.port) - base_conns
        if held < n:
            raise RuntimeError("the proxy holds only %d of %d idle client "
                               "connections" % (held, n))
        if not p.alive():
            raise RuntimeError("%s died: %s" % (p.name, p.log_tail(200)))
        rss, pss = p.rss_kib(), p.pss_kib()
        procs = len(p.tree_pids())
    finally:
        clients.close_all(socks)
    return {"base": base_rss, "after": rss, "per_conn": (rss - base_rss) / n,
            "pss_conn": (pss - base_pss) / n, "procs": procs}
