"""Section l4: [stream] TCP/UDP forwarding against HAProxy `mode tcp`,
nginx `stream` and socat: iperf3 TCP throughput and CPU (l4a), short TCP
connections per second (l4b), UDP loss at a fixed rate (l4c) and RSS per
1,000 idle TCP pairs (l4d). Rows are measured in interleaved rounds."""
import os
import time

from . import clients, daemons, proc, rounds
from .table import Col, Table

ROUNDS = 3
CONC = 128
UDP_RATE = "300M"
UDP_LEN = 1400
DIRECT = "direct (no proxy)"
OURS = "wmproxy [stream]"
HAPROXY = "haproxy mode tcp"
NGINX = "nginx stream"
SOCAT = "socat"


def _starters(ctx, target, udp=False):
    """Equal thread / process counts: our workers (--workers) and HAProxy's
    nbthread and nginx's worker_processes (--nginx-workers), 1 each by
    default, as in the reverse section; socat forks per connection."""
    w = ctx.workers
    n = ctx.nginx_workers
    return [
        (OURS, lambda: daemons.ours_stream(ctx, target, udp, w),
         "run -c stream.toml, %s" % ("workers = %d" % w if w else "one worker per core")),
        (HAPROXY, lambda: daemons.haproxy_tcp(ctx, target, n), "nbthread %d" % n),
        (NGINX, lambda: daemons.nginx_stream(ctx, target, udp, ctx.nginx_workers),
         "worker_processes %d" % ctx.nginx_workers),
        (SOCAT, lambda: daemons.socat_fwd(ctx, target, udp), "fork per connection"),
    ]


def _rows(ctx, starters, direct_port, skip_haproxy=False):
    def start(fn):
        def go():
            p = fn()
            ctx.cmdlines[p.name] = p.cmdline
            return p.port, [p] + getattr(p, "extra", [])
        return go
    rows = [(DIRECT, lambda: (direct_port, []), "client -> target")]
    for name, fn, detail in starters:
        if skip_haproxy and name == HAPROXY:
            continue
        rows.append((name, start(fn), detail))
    return rows


def _stop(state_rows):
    pass


def run(ctx):
    nrounds = 2 if ctx.quick else ROUNDS
    tables = []
    srv = daemons.iperf3_server(ctx)
    try:
        tables.append(_tcp_table(ctx, nrounds, srv.port))
        tables.append(_udp_table(ctx, nrounds, srv.port))
    finally:
        srv.stop()
    tables.append(_connrate_table(ctx, nrounds))
    tables.append(_rss_table(ctx))
    return tables


# --- l4a: iperf3 TCP ------------------------------------------------------------
def _tcp_table(ctx, nrounds, ip):
    secs = ctx.load_secs
    t = Table("l4a. TCP forward throughput (iperf3 -R, one stream, %ds, %d interleaved "
              "rounds)" % (secs, nrounds),
              [Col("gbps", "Gbit/s", "{:.2f}"), Col("mean", "mean Gbit/s", "{:.2f}"),
               Col("cpu", "proxy CPU s/GB", "{:.3f}"), Col("runs", "runs")])
    cpu = {}

    def measure(name, port, first, procs=None):
        ps = state_procs.get(name, [])
        c0 = sum(p.cpu_secs() for p in ps)
        bps = clients.iperf3(port, secs)
        c1 = sum(p.cpu_secs() for p in ps)
        gb = bps * secs / 8e9
        cpu.setdefault(name, []).append((c1 - c0) / gb if gb else 0)
        return {"gbps": bps / 1e9}

    state_procs = {}
    rows = []
    for name, start, detail in _rows(ctx, _starters(ctx, ip), ip):
        def wrap(start=start, name=name):
            target, ps = start()
            state_procs[name] = ps
            return target, ps
        rows.append((name, wrap, detail))
    rounds.run(ctx, t, rows, nrounds, measure, "gbps", "{:.2f}")
    for name, v in cpu.items():
        if t.get(name, "gbps") is not None and name != DIRECT:
            t.set(name, "cpu", sum(v) / len(v))
    t.ratio("wmproxy / haproxy (mean Gbit/s)", OURS, HAPROXY, "mean", ">= 1.3")
    t.ratio("wmproxy / nginx stream (mean Gbit/s)", OURS, NGINX, "mean", ">= 1")
    t.ratio("wmproxy / socat (mean Gbit/s, info)", OURS, SOCAT, "mean")
    t.note("iperf3 server on 127.0.0.1, client `iperf3 -c -R -t %d -O 1` through each "
           "forwarder; CPU = utime + stime of the forwarder's process tree per GB "
           "moved" % secs)
    return t


# --- l4c: UDP loss at a fixed rate --------------------------------------------------
def _udp_table(ctx, nrounds, ip):
    secs = ctx.load_secs
    t = Table("l4c. UDP forward at %sbit/s (iperf3 -u -l %d, %ds, %d interleaved rounds)"
              % (UDP_RATE, UDP_LEN, secs, nrounds),
              [Col("mbps", "received Mbit/s", "{:.0f}"), Col("loss", "loss %", "{:.2f}"),
               Col("mean", "mean Mbit/s", "{:.0f}"), Col("runs", "runs")])
    losses = {}

    def measure(name, port, first):
        r = proc.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-u", "-b", UDP_RATE,
                      "-l", str(UDP_LEN), "-t", str(secs), "-J", "--connect-timeout",
                      "5000"], timeout=secs + 30)
        import json
        d = json.loads(r.stdout)
        if d.get("error"):
            raise RuntimeError("iperf3: %s" % d["error"])
        s = d["end"]["sum"]
        losses.setdefault(name, []).append(float(s["lost_percent"]))
        return {"mbps": float(s["bits_per_second"]) * (1 - s["lost_percent"] / 100) / 1e6,
                "loss": float(s["lost_percent"])}

    rows = _rows(ctx, _starters(ctx, ip, udp=True), ip, skip_haproxy=True)
    rounds.run(ctx, t, rows, nrounds, measure, "mbps", "{:.0f}")
    for name, v in losses.items():
        if t.get(name, "mbps") is not None:
            t.set(name, "loss", sum(v) / len(v))
    t.ratio("wmproxy / nginx stream (mean loss %, lower is better)", OURS, NGINX, "loss",
            "<= 1")
    t.note("TCP control connection and UDP datagrams on the same forwarded port; "
           "loss % is iperf3's (mean of the runs); HAProxy has no UDP")
    return t


# --- l4b: short connections ---------------------------------------------------------
def _connrate_table(ctx, nrounds):
    t = Table("l4b. Short TCP connections per second through the forward "
              "(socks_rate -D, %d concurrent, %ds, %d interleaved rounds)"
              % (CONC, ctx.load_secs, nrounds),
              [Col("rate", "conn/s"), Col("mean", "mean conn/s"), Col("errors", "errors"),
               Col("cpu", "CPU µs/conn", "{:.1f}"), Col("runs", "runs")])
    origin = daemons.nginx_origin(ctx, workers=ctx.target_workers)
    state_procs, cpu = {}, {}
    try:
        def measure(name, port, first):
            ps = state_procs.get(name, [])
            c0 = sum(p.cpu_secs() for p in ps)
            v = clients.socks_rate(ctx, port, None, ctx.load_secs, CONC, ctx.warm_secs)
            c1 = sum(p.cpu_secs() for p in ps)
            v.pop("err_detail", None)
            if v["cycles"] == 0 or v["errors"] > v["cycles"] // 100:
                raise RuntimeError("%d cycles, %d errors" % (v["cycles"], v["errors"]))
            if v["all_cycles"]:
                cpu.setdefault(name, []).append((c1 - c0) * 1e6 / v["all_cycles"])
            return v
        rows = []
        for name, start, detail in _rows(ctx, _starters(ctx, origin.port), origin.port):
            def wrap(start=start, name=name):
                target, ps = start()
                state_procs[name] = ps
                return target, ps
            rows.append((name, wrap, detail))
        runs = rounds.run(ctx, t, rows, nrounds, measure, "rate")
    finally:
        origin.stop()
    rounds.per_round_note(t, runs, OURS, HAPROXY, "wmproxy / haproxy conn/s")
    for name, v in cpu.items():
        if t.get(name, "rate") is not None and name != DIRECT:
            t.set(name, "cpu", sum(v) / len(v))
    t.ratio("wmproxy / haproxy (mean conn/s)", OURS, HAPROXY, "mean", ">= 1.2")
    t.ratio("wmproxy / nginx stream (mean conn/s, info)", OURS, NGINX, "mean")
    t.ratio("haproxy / wmproxy (mean CPU µs/conn, info: > 1 means we spend less)",
            HAPROXY, OURS, "cpu")
    t.note("cycle = connect to the forwarder, `GET /tiny HTTP/1.0`, read the 16-byte "
           "answer until the origin (nginx) closes, close")
    t.note("CPU µs/conn = utime + stime of the forwarder's process tree over each run "
           "(warm-up included) / the cycles completed in it (warm-up included), mean "
           "of the runs; robust to the machine's load, unlike conn/s")
    t.note("threads: wmproxy workers = %s, haproxy nbthread = %d, nginx worker_processes "
           "= %d (--workers, --nginx-workers); socat forks a process per connection"
           % (ctx.workers or "one per core", ctx.nginx_workers, ctx.nginx_workers))
    return t


# --- l4d: RSS per idle pair -----------------------------------------------------------
def _rss_table(ctx):
    n = ctx.rss_conns
    t = Table("l4d. Memory per 1,000 idle TCP pairs (%d connections to an idle server)" % n,
              [Col("base", "RSS before KiB"), Col("after", "RSS after KiB"),
               Col("rss", "ΔRSS KiB / 1k pairs"), Col("per", "KiB / pair", "{:.2f}")])
    idle = daemons.idle_server(ctx)
    try:
        for name, start, detail in _starters(ctx, idle.port):
            def fn(start=start):
                p = start()
                try:
                    return _rss_measure(p, idle.port, n)
                finally:
                    p.stop()
                    for q in getattr(p, "extra", []):
                        q.stop()
            ctx.row(t, name, fn, detail=detail)
    finally:
        idle.stop()
    t.limit("wmproxy KiB per idle pair", OURS, "per", "<= 3.3", "KiB")
    t.note("RSS = sum of VmRSS over the forwarder's process tree, before: after 16 "
           "warm-up connections opened and closed; after: %d connections whose "
           "upstream side is established at the idle server, 1 s settle" % n)
    return t


def _rss_measure(p, idle_port, n):
    base_conns = clients.established_count(idle_port)
    warm = clients.open_tunnels("tcp", p.port, "127.0.0.1", idle_port, 16)
    time.sleep(0.2)
    clients.close_all(warm)
    time.sleep(0.5)
    base = p.rss_kib()
    socks = clients.open_tunnels("tcp", p.port, "127.0.0.1", idle_port, n)
    try:
        deadline = time.monotonic() + 15
        while clients.established_count(idle_port) - base_conns < n:
            if time.monotonic() > deadline:
                raise RuntimeError("upstream side of %d pairs not established" % n)
            time.sleep(0.1)
        time.sleep(1.0)
        rss = p.rss_kib()
    finally:
        clients.close_all(socks)
    return {"base": base, "after": rss, "rss": (rss - base) * 1000.0 / n,
            "per": (rss - base) / float(n)}
