"""Section 4: memory per 1,000 idle proxied connections."""
import time

from . import clients, daemons
from .table import Col, Table

WARM_TUNNELS = 16


def run(ctx):
    n = ctx.rss_conns
    t = Table("4. Memory per 1,000 idle tunnels (%d tunnels to an idle server)" % n,
              [Col("base", "RSS before KiB"), Col("after", "RSS after KiB"),
               Col("rss", "ΔRSS KiB / 1k conns"), Col("pss", "ΔPSS KiB / 1k conns"),
               Col("procs", "processes")])
    idle = daemons.idle_server(ctx)
    ctx.cmdlines["idle server"] = idle.cmdline
    ip = idle.port

    def measure(start, kind, label):
        def fn():
            p = start()
            ctx.cmdlines[label] = p.cmdline
            try:
                return _measure(ctx, p, kind, ip, n)
            finally:
                p.stop()
        return fn

    try:
        ctx.row(t, "haproxy (tcp, ref)",
                measure(lambda: daemons.haproxy_tcp(ctx, ip), "tcp", "haproxy"),
                detail="mode tcp, frontend -> idle server")
        ctx.row(t, "dante (SOCKS5)", measure(lambda: daemons.danted(ctx), "socks5",
                                             "danted"))
        ctx.row(t, "microsocks (SOCKS5)",
                measure(lambda: daemons.microsocks(ctx), "socks5", "microsocks"))
        ctx.row(t, "tinyproxy (CONNECT)",
                measure(lambda: daemons.tinyproxy(ctx, [ip]), "connect", "tinyproxy"))
        ctx.row(t, "wmproxy (SOCKS5)", measure(lambda: daemons.ours(ctx), "socks5",
                                               "wmproxy"))
        ctx.row(t, "wmproxy (CONNECT)", measure(lambda: daemons.ours(ctx), "connect",
                                                "wmproxy"))
    finally:
        idle.stop()
    t.ratio("wmproxy SOCKS5 / haproxy (ΔRSS)", "wmproxy (SOCKS5)",
            "haproxy (tcp, ref)", "rss", "<= 1")
    t.ratio("wmproxy CONNECT / haproxy (ΔRSS)", "wmproxy (CONNECT)",
            "haproxy (tcp, ref)", "rss", "<= 1")
    t.note("RSS = sum of VmRSS over the proxy's process tree (/proc), PSS = sum "
           "of Pss (smaps_rollup; counts pages shared between forked processes "
           "once); Δ = after - before, scaled to 1,000 connections")
    t.note("before: after %d warm-up tunnels were opened and closed; after: all "
           "%d tunnels established (SOCKS5 success / CONNECT 200 / TCP accepted) "
           "and the idle server holding %d connections, 1 s settle" % (
               WARM_TUNNELS, n, n))
    return [t]


def _measure(ctx, p, kind, idle_port, n):
    base_conns = clients.established_count(idle_port)
    warm = clients.open_tunnels(kind, p.port, "127.0.0.1", idle_port, WARM_TUNNELS)
    time.sleep(0.2)
    clients.close_all(warm)
    time.sleep(0.5)
    base_rss, base_pss = p.rss_kib(), p.pss_kib()
    socks = clients.open_tunnels(kind, p.port, "127.0.0.1", idle_port, n)
    try:
        # wait until the upstream side of every tunnel exists
        deadline = time.monotonic() + 10
        while True:
            up = clients.established_count(idle_port) - base_conns
            if up >= n or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if up < n:
            raise RuntimeError("only %d of %d upstream connections at the idle "
                               "server" % (up, n))
        time.sleep(1.0)
        if not p.alive():
            raise RuntimeError("%s died: %s" % (p.name, p.log_tail(200)))
        rss, pss = p.rss_kib(), p.pss_kib()
        procs = len(p.tree_pids())
    finally:
        clients.close_all(socks)
    scale = 1000.0 / n
    return {"base": base_rss, "after": rss, "rss": (rss - base_rss) * scale,
            "pss": (pss - base_pss) * scale, "procs": procs}
