"""Section 1: forward HTTP req/s with wrk (keep-alive, 1 KiB object)."""
from . import clients, daemons
from .table import Col, Table

THREADS, CONNS = 2, 64
DIRECT = "direct (nginx origin)"


def run(ctx):
    t = Table("1. Forward HTTP, 1 KiB object (wrk -t%d -c%d -d%ds, keep-alive)"
              % (THREADS, CONNS, ctx.load_secs),
              [Col("rps", "req/s"), Col("p50_ms", "p50 ms", "{:.2f}"),
               Col("p99_ms", "p99 ms", "{:.2f}"), Col("pct", "% of direct", "{:.0f}%")])
    origin = daemons.nginx_origin(ctx, workers=1)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    op = origin.port
    host = "127.0.0.1:%d" % op
    absolute = "http://%s/1k" % host

    def measure(port, path, closes=False):
        clients.wrk(ctx, port, path, host, ctx.warm_secs, THREADS, CONNS,
                    server_closes=closes)                       # warm-up
        v = clients.wrk(ctx, port, path, host, ctx.load_secs, THREADS, CONNS,
                        min_body=1024, server_closes=closes)
        errs = v.pop("read_errors")
        d = t.get(DIRECT, "rps")
        v["pct"] = 100.0 * v["rps"] / d if d else None
        if closes:
            t.note("tinyproxy closes the client connection after every response "
                   "without sending `Connection: close`; wrk counts that as a "
                   "read error and reconnects (%d read errors for %.0f req/s "
                   "tolerated for this row only)" % (errs, v["rps"]))
        return v

    def with_daemon(start, path, label, closes=False):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            try:
                return measure(p.port, path, closes)
            finally:
                p.stop()
        return fn

    try:
        ctx.row(t, DIRECT, lambda: dict(measure(op, "/1k"), pct=100.0))
        ctx.row(t, "tinyproxy", with_daemon(lambda: daemons.tinyproxy(ctx),
                                            absolute, "tinyproxy", closes=True),
                detail="new connection per request")
        ctx.row(t, "nginx proxy_pass (ref)",
                with_daemon(lambda: daemons.nginx_reverse(ctx, op, ctx.nginx_workers),
                            "/1k", "nginx proxy_pass"),
                detail="reverse proxy, worker_processes %d, keepalive 64 upstream"
                % ctx.nginx_workers)
        ctx.row(t, "wmproxy", with_daemon(lambda: daemons.ours(ctx), absolute,
                                          "wmproxy"),
                detail="absolute-URI forward proxy" + _workers_note(ctx))
    finally:
        origin.stop()
    t.ratio("wmproxy / tinyproxy (req/s)", "wmproxy", "tinyproxy", "rps", ">= 3")
    t.ratio("wmproxy / nginx proxy_pass (req/s)", "wmproxy",
            "nginx proxy_pass (ref)", "rps", ">= 1")
    t.note("origin: nginx, 1 worker, access_log off, static 1 KiB file; "
           "wrk sends `GET %s HTTP/1.1` to forward proxies, `GET /1k` to the "
           "origin and to the nginx reverse proxy" % absolute.replace(str(op), "ORIGIN"))
    t.note("a row fails on any wrk socket error or non-2xx response; "
           "each row has a %ds warm-up first" % ctx.warm_secs)
    return [t]


def _workers_note(ctx):
    return ", --workers %d" % ctx.workers if ctx.workers else ""
