"""Section 3: SOCKS5 short-connection rate (bench/tools/socks_rate.c)."""
import os

from . import clients, daemons, rounds
from .table import Col, Table

CONC = 128
ROUNDS = 3
DIRECT = "direct (client ceiling)"
OURS = "wmproxy"
OURS_1W = "wmproxy, one worker (info)"


def run(ctx):
    cores = os.cpu_count() or 1
    nrounds = 2 if ctx.quick else ROUNDS
    t = Table("3. SOCKS5 short-connection rate (socks_rate, %d concurrent, %ds, "
              "%d interleaved rounds, best and mean)" % (CONC, ctx.load_secs, nrounds),
              [Col("rate", "conn/s"), Col("mean", "mean conn/s"),
               Col("pct", "% of direct", "{:.0f}%"),
               Col("cycles", "cycles"), Col("errors", "errors"), Col("runs", "runs conn/s")])
    origin = daemons.nginx_origin(ctx, workers=ctx.target_workers)
    tp = origin.port
    stepwise_rows = {"microsocks"}

    def measure(name, port, first):
        stepwise = name in stepwise_rows
        argv = clients.socks_rate_argv(ctx, "ORIGIN", "PROXY" if port else None,
                                       ctx.load_secs, CONC, ctx.warm_secs, stepwise)
        ctx.cmdlines["socks_rate" + (" -D" if port is None else "")
                     + (" -S" if stepwise else "")] = " ".join(map(str, argv))
        v = clients.socks_rate(ctx, tp, port, ctx.load_secs, CONC, ctx.warm_secs, stepwise)
        detail = v.pop("err_detail")
        if v["cycles"] == 0 or v["errors"] > v["cycles"] // 100:
            raise RuntimeError("%d cycles, %d errors; %s" % (v["cycles"], v["errors"], detail))
        return v

    def daemon(start, label):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            return p.port, [p]
        return fn

    rows = [
        (DIRECT, lambda: (None, []), "no proxy: client -> nginx"),
        ("dante", daemon(lambda: daemons.danted(ctx), "danted"), ""),
        ("microsocks", daemon(lambda: daemons.microsocks(ctx), "microsocks"),
         "-S: greeting, wait for method reply, then CONNECT"),
        (OURS, daemon(lambda: daemons.ours(ctx, workers=cores), "wmproxy"),
         "--workers %d (its default: one per core)" % cores),
        (OURS_1W, daemon(lambda: daemons.ours(ctx, "wmproxy-1w", workers=1), "wmproxy-1w"),
         "--workers 1"),
    ]
    try:
        runs = rounds.run(ctx, t, rows, nrounds, measure, "rate")
    finally:
        origin.stop()
    d = t.get(DIRECT, "rate")
    for name, _, _ in rows:
        v = t.get(name, "rate")
        if v is not None and d:
            t.set(name, "pct", 100.0 * v / d)
    t.ratio("wmproxy / dante (mean conn/s)", OURS, "dante", "mean", ">= 2")
    t.ratio("wmproxy / dante, best runs (info)", OURS, "dante", "rate")
    t.ratio("wmproxy / microsocks (mean, info)", OURS, "microsocks", "mean")
    t.ratio("wmproxy one worker / dante (mean, info)", OURS_1W, "dante", "mean")
    rounds.per_round_note(t, runs, OURS, "dante", "wmproxy / dante")
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
    t.note("all daemons run at once; %d interleaved rounds, each row's best run and "
           "the mean of its runs are reported and all are listed; the target ratios "
           "compare means; a row fails if errors exceed 1%% of cycles; "
           "first %ds of each run not counted (warm-up)" % (nrounds, ctx.warm_secs))
    return [t]
