"""Section 3: SOCKS5 short-connection rate (bench/tools/socks_rate.c)."""
import os

from . import clients, daemons
from .table import Col, Table

CONC = 128


def run(ctx):
    cores = os.cpu_count() or 1
    t = Table("3. SOCKS5 short-connection rate (socks_rate, %d concurrent, %ds)"
              % (CONC, ctx.load_secs),
              [Col("rate", "conn/s"), Col("pct", "% of direct", "{:.0f}%"),
               Col("cycles", "cycles"), Col("errors", "errors")])
    origin = daemons.nginx_origin(ctx, workers=ctx.target_workers)
    tp = origin.port

    def measure(proxy_port=None, stepwise=False):
        argv = clients.socks_rate_argv(ctx, "ORIGIN", "PROXY" if proxy_port else None,
                                       ctx.load_secs, CONC, ctx.warm_secs, stepwise)
        ctx.cmdlines["socks_rate" + (" -D" if proxy_port is None else "")
                     + (" -S" if stepwise else "")] = " ".join(map(str, argv))
        v = clients.socks_rate(ctx, tp, proxy_port, ctx.load_secs, CONC, ctx.warm_secs,
                               stepwise)
        detail = v.pop("err_detail")
        if v["cycles"] == 0 or v["errors"] > v["cycles"] // 100:
            raise RuntimeError("%d cycles, %d errors; %s"
                               % (v["cycles"], v["errors"], detail))
        d = t.get("direct (client ceiling)", "rate")
        v["pct"] = 100.0 * v["rate"] / d if d else None
        return v

    def through(start, label, stepwise=False):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            try:
                return measure(p.port, stepwise)
            finally:
                p.stop()
        return fn

    try:
        ctx.row(t, "direct (client ceiling)", lambda: dict(measure(), pct=100.0),
                detail="no proxy: client -> nginx")
        ctx.row(t, "dante", through(lambda: daemons.danted(ctx), "danted"))
        ctx.row(t, "microsocks", through(lambda: daemons.microsocks(ctx), "microsocks",
                                         stepwise=True),
                detail="-S: greeting, wait for method reply, then CONNECT")
        ctx.row(t, "wmproxy", through(lambda: daemons.ours(ctx, workers=cores), "wmproxy"),
                detail="--workers %d (its default: one per core)" % cores)
        ctx.row(t, "wmproxy, one worker (info)",
                through(lambda: daemons.ours(ctx, "wmproxy-1w", workers=1), "wmproxy-1w"),
                detail="--workers 1")
    finally:
        origin.stop()
    t.ratio("wmproxy / dante (conn/s)", "wmproxy", "dante", "rate", ">= 2")
    t.ratio("wmproxy / microsocks (info)", "wmproxy", "microsocks", "rate")
    t.ratio("wmproxy one worker / dante (info)", "wmproxy, one worker (info)", "dante", "rate")
    t.note("cycle = connect to proxy, greeting `05 01 00` + CONNECT 127.0.0.1:ORIGIN "
           "in one write, read 2+10 reply bytes, `GET /tiny HTTP/1.0`, read the "
           "16-byte reply until the origin closes, check 200 + body, close")
    t.note("microsocks 1.0.3 drops bytes pipelined after the greeting (0 cycles "
           "with the one-write handshake), so its row uses `-S`: one extra "
           "round trip per cycle")
    t.note("target: nginx (worker_processes %d) serving a 16-byte file; the "
           "`direct` row runs the same client without SOCKS5 and shows the ceiling "
           "of client + target on this machine" % ctx.target_workers)
    t.note("every server may use every core: dante forks negotiate, request and io "
           "child processes, microsocks runs a thread per client, wmproxy runs one "
           "worker per core (its default; the one-worker row is for information)")
    t.note("a row fails if errors exceed 1%% of cycles; first %ds not counted "
           "(warm-up)" % ctx.warm_secs)
    return [t]
