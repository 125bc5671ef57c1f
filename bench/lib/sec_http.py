"""Section 1: forward HTTP req/s with wrk (keep-alive, 1 KiB object)."""
from . import clients, daemons, rounds
from .table import Col, Table

THREADS, CONNS = 2, 64
DIRECT = "direct (nginx origin)"
TINY = "tinyproxy"
NGINX = "nginx proxy_pass (ref)"
OURS = "wmproxy"
SCRAPED = "wmproxy, /metrics scraped every 100 ms"
ROUNDS = 3


def run(ctx):
    nrounds = 2 if ctx.quick else ROUNDS
    t = Table("1. Forward HTTP, 1 KiB object (wrk -t%d -c%d -d%ds, keep-alive, "
              "%d interleaved rounds, best and mean)" % (THREADS, CONNS, ctx.load_secs,
                                                       nrounds),
              [Col("rps", "req/s"), Col("mean", "mean req/s"), Col("p50_ms", "p50 ms", "{:.2f}"),
               Col("p99_ms", "p99 ms", "{:.2f}"), Col("pct", "% of direct", "{:.0f}%"),
               Col("runs", "runs req/s")])
    origin = daemons.nginx_origin(ctx, workers=1)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    op = origin.port
    host = "127.0.0.1:%d" % op
    absolute = "http://%s/1k" % host
    read_errs = {}

    def measure(name, target, first):
        port, path = target[:2]
        closes = name == TINY
        if first:
            clients.wrk(ctx, port, path, host, ctx.warm_secs, THREADS, CONNS,
                        server_closes=closes)                   # warm-up
        scraper = _Scraper(target[2]) if len(target) > 2 else None
        try:
            v = clients.wrk(ctx, port, path, host, ctx.load_secs, THREADS, CONNS,
                            min_body=1024, server_closes=closes)
        finally:
            if scraper is not None:
                scraper.stop()
        read_errs[name] = (v.pop("read_errors"), v["rps"])
        return v

    def daemon(start, path, label):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            return (p.port, path), [p]
        return fn

    rows = [
        (DIRECT, lambda: ((op, "/1k"), []), ""),
        (TINY, daemon(lambda: daemons.tinyproxy(ctx), absolute, "tinyproxy"),
         "new connection per request"),
        (NGINX, daemon(lambda: daemons.nginx_reverse(ctx, op, ctx.nginx_workers), "/1k",
                       "nginx proxy_pass"),
         "reverse proxy, worker_processes %d, keepalive 64 upstream" % ctx.nginx_workers),
        (OURS, daemon(lambda: daemons.ours(ctx), absolute, "wmproxy"),
         "absolute-URI forward proxy" + _workers_note(ctx)),
        (SCRAPED, _scraped_daemon(ctx, absolute),
         "the same, with GET /metrics on its control port every 100 ms during the load"),
    ]
    try:
        runs = rounds.run(ctx, t, rows, nrounds, measure, "rps")
    finally:
        origin.stop()
    d = t.get(DIRECT, "rps")
    for name in (DIRECT, TINY, NGINX, OURS, SCRAPED):
        v = t.get(name, "rps")
        if v is not None and d:
            t.set(name, "pct", 100.0 * v / d)
    t.ratio("wmproxy / tinyproxy (mean req/s)", OURS, TINY, "mean", ">= 3")
    t.ratio("wmproxy / nginx proxy_pass (mean req/s)", OURS, NGINX, "mean", ">= 1")
    t.ratio("wmproxy / nginx proxy_pass, best runs (info)", OURS, NGINX, "rps")
    rounds.per_round_note(t, runs, OURS, NGINX, "wmproxy / nginx proxy_pass")
    t.ratio("scraped / not scraped (mean req/s; cost of /metrics)", SCRAPED, OURS, "mean",
            ">= 0.98")
    if TINY in read_errs:
        t.note("tinyproxy closes the client connection after every response without "
               "sending `Connection: close`; wrk counts that as a read error and "
               "reconnects (%d read errors for %.0f req/s in its last run, tolerated "
               "for this row only)" % read_errs[TINY])
    t.note("origin: nginx, 1 worker, access_log off, static 1 KiB file; "
           "wrk sends `GET %s HTTP/1.1` to forward proxies, `GET /1k` to the "
           "origin and to the nginx reverse proxy" % absolute.replace(str(op), "ORIGIN"))
    t.note("all daemons run at once; the rows are measured in %d interleaved rounds "
           "(direct, tinyproxy, nginx, wmproxy, again), each row's best run and the "
           "mean of its runs are reported and all are listed; the target ratios "
           "compare means; each row has a %ds warm-up before its first "
           "run; a row fails on any wrk socket error or non-2xx response"
           % (nrounds, ctx.warm_secs))
    return [t]


class _Scraper:
    """GET /metrics every 100 ms on a thread until stop(); counts scrapes."""

    def __init__(self, cport):
        import threading
        self.cport = cport
        self.n = 0
        self.done = threading.Event()
        self.t = threading.Thread(target=self._loop, daemon=True)
        self.t.start()

    def _loop(self):
        import http.client
        while not self.done.wait(0.1):
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.cport, timeout=5)
                c.request("GET", "/metrics")
                c.getresponse().read()
                c.close()
                self.n += 1
            except OSError:
                pass

    def stop(self):
        self.done.set()
        self.t.join(10)


def _scraped_daemon(ctx, absolute):
    from .proc import Proc, free_port

    def fn():
        port, cport = free_port(), free_port()
        argv = ctx.ours_argv(port)
        argv[argv.index("--disable-control")] = "--control=127.0.0.1:%d" % cport
        p = Proc("wmproxy-scraped", argv, ctx.logdir, port=port).start()
        ctx.cmdlines["wmproxy scraped"] = p.cmdline
        return (port, absolute, cport), [p]
    return fn


def _workers_note(ctx):
    return ", --workers %d" % ctx.workers if ctx.workers else ""
