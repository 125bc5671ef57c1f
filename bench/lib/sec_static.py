"""Section 7: static files. `wmproxy file-server` against nginx (sendfile on,
open_file_cache on) serving the same tree, with python3 -m http.server as an
information row: wrk -t2 -c64 keep-alive on a 1 KiB file (req/s, p99, CPU
per request), a 1 MiB file (MB/s) and a 1 GiB file (MB/s, CPU per GiB), in
interleaved rounds (lib.rounds), equal worker counts (--workers and
--nginx-workers, both 1 by default)."""
import json
import os
import re
import sys

from . import clients, daemons, proc, rounds
from .ctx import Skip
from .table import Col, Table

THREADS, CONNS = 2, 64
ROUNDS = 3
NGINX = "nginx (sendfile, open_file_cache)"
OURS = "wmproxy file-server"
PYTHON = "python3 -m http.server (info)"
NAMES = (NGINX, OURS, PYTHON)
MIB = 1 << 20


def _tree(ctx):
    d = daemons.www(ctx, big=True)          # /1k, /big (ctx.big_bytes)
    p = os.path.join(d, "1m")
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write((b"wmproxy-static-1m\n" * 60000)[:MIB])
    return d


def _nginx(ctx, root):
    port = proc.free_port()
    body = """    open_file_cache max=1000 inactive=20s;
    open_file_cache_valid 30s;
    server {
        listen 127.0.0.1:%d backlog=4096;
        root %s;
        location / { }
    }
""" % (port, root)
    return daemons._nginx(ctx, "nginx-static", ctx.nginx_workers, body, port)


def _ours(ctx, root):
    port = proc.free_port()
    argv = [ctx.ours_bin(), "file-server", "-r", root, "-l", "127.0.0.1:%d" % port,
            "--disable-stdout"]
    if ctx.workers:
        argv += ["--workers", str(ctx.workers)]
    p = proc.Proc("files-ours", argv, ctx.logdir, port=port)
    p.conf = None
    return p.start()


def _python(ctx, root):
    port = proc.free_port()
    p = proc.Proc("http-server", [sys.executable, "-m", "http.server", str(port), "--bind",
                                  "127.0.0.1", "--directory", root], ctx.logdir, port=port)
    p.conf = None
    return p.start()


def _wrk(ctx, port, path, secs, timeout_s):
    """wrk on GET path; big responses get a long timeout. Returns requests,
    bytes per second, p99 ms, socket errors."""
    script = clients.wrk_script(ctx, path, "127.0.0.1:%d" % port)
    argv = ["wrk", "-t%d" % THREADS, "-c%d" % CONNS, "-d%ds" % secs, "--timeout",
            "%ds" % timeout_s, "-s", script, "http://127.0.0.1:%d/" % port]
    r = proc.run(argv, timeout=secs + timeout_s + 30)
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if r.returncode != 0 or not m:
        raise RuntimeError("wrk failed (rc=%d): %s" % (r.returncode, (r.stderr or r.stdout)[-300:]))
    s = json.loads(m.group(1))
    if s["status"]:
        raise RuntimeError("wrk: %d non-2xx answers" % s["status"])
    secs_run = s["duration_us"] / 1e6
    return {"requests": s["requests"], "bps": s["bytes"] / secs_run,
            "p99_ms": s["p99_us"] / 1000.0, "errors": s["connect"] + s["write"] + s["timeout"],
            "read_errors": s["read"], "rps": s["requests"] / secs_run}


def run(ctx):
    nrounds = 2 if ctx.quick else ROUNDS
    root = _tree(ctx)
    starters = {NGINX: lambda: _nginx(ctx, root), OURS: lambda: _ours(ctx, root),
                PYTHON: lambda: _python(ctx, root)}
    procs, errs = {}, {}
    try:
        for name in NAMES:
            try:
                procs[name] = starters[name]()
                ctx.cmdlines[name] = procs[name].cmdline
            except Skip as e:
                errs[name] = e
            except Exception as e:              # noqa: BLE001 - an error row
                errs[name] = RuntimeError(str(e) or type(e).__name__)
        return [_table(ctx, nrounds, "a", "/1k", "1 KiB", procs, errs),
                _table(ctx, nrounds, "b", "/1m", "1 MiB", procs, errs),
                _table(ctx, nrounds, "c", "/big", "%d MiB" % (ctx.big_bytes >> 20), procs, errs)]
    finally:
        for p in procs.values():
            p.stop()


def _table(ctx, nrounds, letter, path, label, procs, errs):
    big = letter == "c"
    cols = [Col("rps", "req/s"), Col("mean", "mean req/s"), Col("mbs", "MB/s", "{:.0f}"),
            Col("mbs_mean", "mean MB/s", "{:.0f}"), Col("p99_ms", "p99 ms", "{:.2f}"),
            Col("p99_mean", "mean p99 ms", "{:.2f}"),
            Col("cpu", "CPU s/GB" if letter != "a" else "CPU µs/req", "{:.2f}"),
            Col("runs", "runs")]
    t = Table("7%s. Static files, %s file (wrk -t%d -c%d -d%ds keep-alive, %d interleaved "
              "rounds)" % (letter, label, THREADS, CONNS, ctx.load_secs, nrounds), cols)
    key = "rps" if letter == "a" else "mbs"
    extra = {}

    def measure(name, port, first):
        if first and not big:
            _wrk(ctx, port, path, ctx.warm_secs, 5)
        p = procs[name]
        c0 = p.cpu_secs()
        v = _wrk(ctx, port, path, ctx.load_secs, 120 if big else 5)
        c1 = p.cpu_secs()
        if not p.alive():
            raise RuntimeError("%s died: %s" % (p.name, p.log_tail(200)))
        if v["errors"] and name != PYTHON:
            raise RuntimeError("wrk: %d socket errors" % v["errors"])
        mbs = v["bps"] / 1e6
        cpu = ((c1 - c0) / v["requests"] * 1e6 if letter == "a" and v["requests"]
               else (c1 - c0) / (v["bps"] * ctx.load_secs / 1e9) if v["bps"] else 0)
        extra.setdefault(name, []).append((v["p99_ms"], cpu, mbs))
        return {"rps": v["rps"], "mbs": mbs, "p99_ms": v["p99_ms"], "cpu": cpu}

    def start(name):
        def fn():
            if name in errs:
                raise errs[name]
            return procs[name].port, []
        return fn

    rows = [(n, start(n), "") for n in NAMES]
    rounds.run(ctx, t, rows, nrounds, measure, key, runs_fmt="{:.0f}")
    for name, ex in extra.items():
        if t.get(name, key) is None:
            continue
        t.set(name, "p99_mean", sum(e[0] for e in ex) / len(ex))
        t.set(name, "cpu", sum(e[1] for e in ex) / len(ex))
        t.set(name, "mbs_mean", sum(e[2] for e in ex) / len(ex))
    if letter == "a":
        t.ratio("wmproxy / nginx (mean req/s)", OURS, NGINX, "mean", ">= 1.1")
        t.ratio("wmproxy / nginx (mean p99)", OURS, NGINX, "p99_mean", "<= 1.0")
    else:
        t.ratio("wmproxy / nginx (mean MB/s)", OURS, NGINX, "mbs_mean", ">= 1.0")
        t.ratio("wmproxy / nginx (mean p99, info)", OURS, NGINX, "p99_mean")
    t.ratio("wmproxy / nginx (CPU, info)", OURS, NGINX, "cpu")
    t.ratio("wmproxy / python3 http.server (info)", OURS, PYTHON,
            "mean" if letter == "a" else "mbs_mean")
    t.note("nginx: worker_processes %d, sendfile on, tcp_nopush on, open_file_cache "
           "max=1000 (valid 30s), access_log off; wmproxy: `file-server -r ROOT "
           "--workers %s` (sendfile on plain connections, its open-file cache re-checks "
           "after 1 s); python3 -m http.server: HTTP/1.0, one connection per request (its "
           "connect errors and timeouts under this load are tolerated: an information row)"
           % (ctx.nginx_workers, ctx.workers or "cores"))
    if big:
        t.note("1 GiB rows: a real (non-sparse) file in the page cache; wrk --timeout "
               "120s, MB/s = bytes read / duration (responses still running at the end "
               "count), CPU s/GB = server CPU (utime + stime, process tree) per GB sent")
    return t
