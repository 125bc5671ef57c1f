"""Section 2: bulk download throughput through SOCKS5 / CONNECT tunnels."""
from . import clients, daemons
from .table import Col, Table


def run(ctx):
    mib = ctx.big_bytes >> 20
    size_txt = "%d GiB" % (mib >> 10) if mib >= 1024 else "%d MiB" % mib
    t = Table("2. Bulk throughput, %s download with curl (best of %d)"
              % (size_txt, ctx.bulk_runs),
              [Col("mbs", "MB/s"), Col("pct", "% of direct", "{:.0f}%"),
               Col("runs", "runs MB/s")])
    ctx.log("preparing the %s file ..." % size_txt)
    origin = daemons.nginx_origin(ctx, workers=1, big=True)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    url = "http://127.0.0.1:%d/big" % origin.port

    def measure(via=None):
        runs = [clients.curl_download(url, ctx.big_bytes, via) / 1e6
                for _ in range(ctx.bulk_runs)]
        d = t.get("direct", "mbs")
        best = max(runs)
        return {"mbs": best, "pct": 100.0 * best / d if d else None,
                "runs": " / ".join("%.0f" % r for r in runs)}

    def through(start, kind, label):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            try:
                return measure((kind, p.port))
            finally:
                p.stop()
        return fn

    try:
        clients.curl_download(url, ctx.big_bytes)     # warm the page cache
        ctx.row(t, "direct", lambda: dict(measure(), pct=100.0))
        ctx.row(t, "dante (SOCKS5)", through(lambda: daemons.danted(ctx), "socks5",
                                             "danted"))
        ctx.row(t, "microsocks (SOCKS5)", through(lambda: daemons.microsocks(ctx),
                                                  "socks5", "microsocks"))
        ctx.row(t, "tinyproxy (CONNECT)",
                through(lambda: daemons.tinyproxy(ctx, [origin.port]), "connect",
                        "tinyproxy"))
        ctx.row(t, "wmproxy (SOCKS5)", through(lambda: daemons.ours(ctx), "socks5",
                                               "wmproxy"))
        ctx.row(t, "wmproxy (CONNECT)", through(lambda: daemons.ours(ctx), "connect",
                                                "wmproxy"))
    finally:
        origin.stop()
    anchors = ["dante (SOCKS5)", "microsocks (SOCKS5)"]
    t.ratio("wmproxy SOCKS5 / best of (dante, microsocks)", "wmproxy (SOCKS5)",
            anchors, "mbs", ">= 1.2")
    t.ratio("wmproxy CONNECT / best of (dante, microsocks)", "wmproxy (CONNECT)",
            anchors, "mbs", ">= 1.2")
    t.ratio("wmproxy CONNECT / tinyproxy (info)", "wmproxy (CONNECT)",
            "tinyproxy (CONNECT)", "mbs")
    t.note("origin: nginx, 1 worker, sendfile on, a regular %s file in the page "
           "cache; curl -o /dev/null; SOCKS5 via `--socks5 127.0.0.1:P`, CONNECT "
           "via `-p -x http://127.0.0.1:P`; MB = 10^6 bytes" % size_txt)
    t.note("each row is downloaded %d times, the best run is reported (all runs "
           "listed)" % ctx.bulk_runs)
    return [t]
