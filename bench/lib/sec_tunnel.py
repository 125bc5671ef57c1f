"""Section 5: the wmproxy tunnel (docs/tunnel.md) - a server node and a
client node, two wmproxy processes started from TOML configs.

5a. bulk throughput through the tcp mapping (iperf3 -R: private iperf3
    server -> client node -> carrier -> server node -> public iperf3 client),
    TLS and plain carrier, against iperf3 direct, ssh -L and stunnel;
5b. latency at fixed request rates through the HTTP mapping (open loop,
    bench/tools/rate_http.c) against the nginx origin directly;
5c. RSS per idle stream with 10,000 streams held open through the tcp
    mapping.
"""
import re
import resource
import socket
import ssl
import time

from . import clients, daemons, proc
from .ctx import Skip
from .table import Col, Table

RATES = (100, 1000, 4000)
HTTP_CONNS = 16
WARM_STREAMS = 64
OPEN_BATCH = 500            # RSS: open this many, then let the nodes catch up
BULK_ROUNDS = 3             # interleaved iperf3 rounds (2 with --quick)


def run(ctx):
    certs = daemons.tunnel_certs(ctx)
    origin = daemons.nginx_origin(ctx, workers=1)
    ctx.cmdlines["nginx origin"] = origin.cmdline
    tables = []
    try:
        for name, fn in (("5a bulk", _bulk), ("5b latency", _latency),
                         ("5c idle-stream RSS", _rss)):
            try:
                tables.append(fn(ctx, certs, origin.port))
            except Exception as e:              # noqa: BLE001 - one table fails
                ctx.log("tunnel %s failed: %s" % (name, e))
                t = Table("5. tunnel: %s" % name, [Col("x", "result")])
                t.fail(name, "error: %s" % e)
                tables.append(t)
    finally:
        origin.stop()
    return tables


def _pair_cmdlines(ctx, label, srv, cli):
    ctx.cmdlines["%s server node" % label] = srv.cmdline
    ctx.cmdlines["%s client node" % label] = cli.cmdline


def _tls_probe(port, cafile):
    """TLS version and cipher suite the server node picks for an OpenSSL
    client with default settings (what our client node uses: src/net/tls.c
    sets only the minimum version)."""
    c = ssl.create_default_context(cafile=cafile)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with c.wrap_socket(raw, server_hostname="localhost") as s:
            return "%s %s" % (s.version(), s.cipher()[0])


# --- 5a bulk ------------------------------------------------------------------------
DIRECT = "direct (iperf3, no tunnel)"
OURS_TLS = "wmproxy tunnel, TLS carrier"
OURS_PLAIN = "wmproxy tunnel, plain carrier (extra)"
SSH = "ssh -L (%s)" % daemons.SSH_CIPHER
STUNNEL = "stunnel client -> stunnel server (TLS)"


def _bulk(ctx, certs, origin_port):
    """All five paths are started first and measured in interleaved rounds
    (direct, ours TLS, ssh, stunnel, ours plain, then again): on a shared
    machine, load from outside hits the rows of one round alike instead of
    one row."""
    secs, rounds = ctx.load_secs, (2 if ctx.quick else BULK_ROUNDS)
    t = Table("5a. Tunnel bulk throughput, tcp mapping (iperf3 -R, 1 stream, %d s, "
              "%d interleaved rounds, best and mean)" % (secs, rounds),
              [Col("gbps", "Gbit/s", "{:.2f}"), Col("mean", "mean Gbit/s", "{:.2f}"),
               Col("pct", "% of direct", "{:.0f}%"),
               Col("runs", "runs Gbit/s")])
    iperf = daemons.iperf3_server(ctx)
    ctx.cmdlines["iperf3 server"] = iperf.cmdline
    ctx.cmdlines["iperf3 client"] = " ".join(clients.iperf3_argv("P", secs))
    ip = iperf.port
    rows = [  # name, starter() -> (port, [procs to watch]), detail
        (DIRECT, lambda: (ip, []), ""),
        (OURS_TLS, lambda: _bulk_ours(ctx, t, certs, ip, origin_port, True),
         "server node + client node, --workers 2"),
        (SSH, lambda: _bulk_ssh(ctx, ip), "private sshd on loopback, ed25519 keys"),
        (STUNNEL, lambda: _bulk_stunnel(ctx, certs, ip),
         "stunnel %s, one process per side" % _stunnel_version()),
        (OURS_PLAIN, lambda: _bulk_ours(ctx, t, certs, ip, origin_port, False),
         "tc/ts off: no TLS on the carrier"),
    ]
    state = {}          # name -> {"port", "procs", "runs", "busy", "err"}
    try:
        for name, start, _ in rows:
            ctx.log("5a bulk: starting %s" % name)
            st = state[name] = {"runs": [], "busy": 0.0, "err": None, "procs": []}
            try:
                st["port"], st["procs"] = start()
            except Skip as e:
                st["err"] = str(e)
            except Exception as e:          # noqa: BLE001
                st["err"] = "error: %s" % e
        for rnd in range(rounds):
            for name, _, _ in rows:
                st = state[name]
                if st["err"]:
                    continue
                ctx.log("5a bulk: round %d/%d %s ..." % (rnd + 1, rounds, name))
                foreign = proc.ForeignCpu().start()
                try:
                    st["runs"].append(clients.iperf3(st["port"], secs) / 1e9)
                    for p in st["procs"]:
                        if not p.alive():
                            raise RuntimeError("%s died" % p.name)
                except Exception as e:      # noqa: BLE001
                    st["err"] = "error: %s%s" % (e, _logs_of(st["procs"]))
                    ctx.log("  %s" % st["err"])
                    continue
                st["busy"] = max(st["busy"], foreign.cores())
                ctx.log("  %.2f Gbit/s" % st["runs"][-1])
    finally:
        for name, _, _ in reversed(rows):
            for p in reversed(state.get(name, {}).get("procs", [])):
                p.stop()
        iperf.stop()
    direct = max(state[DIRECT]["runs"]) if state[DIRECT]["runs"] and \
        not state[DIRECT]["err"] else None
    for name, _, detail in rows:
        st = state[name]
        if st["err"]:
            t.fail(name, st["err"], detail)
            continue
        best = max(st["runs"])
        if st["busy"] >= 0.1:
            detail = (detail + "; " if detail else "") + \
                "machine busy: other processes used up to %.1f cores" % st["busy"]
        t.add(name, detail, gbps=best, mean=sum(st["runs"]) / len(st["runs"]),
              pct=100.0 * best / direct if direct else None,
              runs=" / ".join("%.2f" % r for r in st["runs"]))
    for p in state.get(STUNNEL, {}).get("procs", [])[1:]:      # the client
        m = re.search(r"(TLSv[\d.]+) ciphersuite: (\S+)", p.output())
        if m:
            t.note("stunnel: %s %s (from the stunnel client log)" % m.groups())
    t.ratio("wmproxy TLS / ssh -L (mean Gbit/s)", OURS_TLS, SSH, "mean", ">= 1.2")
    t.ratio("wmproxy TLS / stunnel (mean Gbit/s)", OURS_TLS, STUNNEL, "mean", ">= 1.5")
    t.ratio("wmproxy TLS / ssh -L, best runs (info)", OURS_TLS, SSH, "gbps")
    t.ratio("wmproxy TLS / stunnel, best runs (info)", OURS_TLS, STUNNEL, "gbps")
    t.ratio("wmproxy plain / wmproxy TLS (mean, info)", OURS_PLAIN, OURS_TLS, "mean")
    per_round = []
    for other in (SSH, STUNNEL):
        a, b = state[OURS_TLS]["runs"], state[other]["runs"]
        if a and b and not state[OURS_TLS]["err"] and not state[other]["err"]:
            per_round.append("wmproxy TLS / %s: %s" % (
                other.split(" ")[0], " / ".join("%.2f×" % (x / y)
                                                for x, y in zip(a, b))))
    if per_round:
        t.note("ratio per round (same round, minutes apart at most): " +
               "; ".join(per_round))
    t.note("direction: `iperf3 -c 127.0.0.1 -p P -R`, so the private `iperf3 -s` "
           "sends: iperf3 server -> client node -> carrier -> server node -> "
           "public iperf3 client (ssh: sshd -> ssh client; stunnel: server "
           "stunnel -> client stunnel); every row but direct crosses two relay "
           "processes and, except the plain carrier, one encryption + decryption")
    t.note("iperf3 -t %d -O 1 (first second omitted), one TCP stream, receiver rate; "
           "the rows run in %d interleaved rounds, the best run and the mean of the "
           "runs are reported (all listed); the target ratios compare means (ssh -L's "
           "single-threaded sshd swings by a third from round to round, so a ratio "
           "of best runs measures its luckiest round); Gbit = 10^9 bit" % (secs, rounds))
    return t


def _logs_of(procs):
    out = []
    for p in procs:
        tail = daemons.node_log_tail(p, 200) if getattr(p, "node_log", None) \
            else p.log_tail(200)
        if tail:
            out.append("%s log: %s" % (p.name, tail))
        if not p.alive():
            out.append("%s exited rc=%s" % (p.name, p.popen.returncode))
    return ("; " + "; ".join(out)) if out else ""


def _bulk_ours(ctx, t, certs, ip, origin_port, tls):
    label = "tunnel %s" % ("TLS" if tls else "plain")
    srv, cli, ports = daemons.tunnel_pair(
        ctx, "tun-bulk-%s" % ("tls" if tls else "plain"), tls, ip, origin_port, certs)
    _pair_cmdlines(ctx, label, srv, cli)
    if tls:
        try:
            t.note("wmproxy TLS carrier: %s (probed on the center port with an "
                   "OpenSSL default client)" % _tls_probe(ports["center"],
                                                          certs["ca.pem"]))
        except (OSError, ssl.SSLError) as e:
            t.note("TLS probe of the center port failed: %s" % e)
    return ports["tcp"], [srv, cli]


def _bulk_ssh(ctx, ip):
    sshd, ssh, lp = daemons.sshd_and_forward(ctx, ip)
    ctx.cmdlines["sshd"] = sshd.cmdline
    ctx.cmdlines["ssh -L"] = ssh.cmdline
    return lp, [sshd, ssh]


def _bulk_stunnel(ctx, certs, ip):
    s, c, lp = daemons.stunnel_pair(ctx, ip, certs)
    ctx.cmdlines["stunnel server"] = s.cmdline
    ctx.cmdlines["stunnel client"] = c.cmdline
    return lp, [s, c]


def _stunnel_version():
    try:
        r = clients.proc.run(["stunnel", "-version"], timeout=10)
        m = re.search(r"stunnel (\S+)", r.stdout + r.stderr)
        return m.group(1) if m else "?"
    except Exception:           # noqa: BLE001
        return "?"


# --- 5b latency -------------------------------------------------------------------
def _latency(ctx, certs, origin_port):
    secs = ctx.load_secs
    t = Table("5b. Tunnel HTTP mapping latency at fixed rates (rate_http, open loop, "
              "%d keep-alive conns, %d s per rate)" % (HTTP_CONNS, secs),
              [Col("rate", "target req/s"), Col("achieved", "done req/s"),
               Col("p50", "p50 ms", "{:.2f}"), Col("p99", "p99 ms", "{:.2f}"),
               Col("p999", "p99.9 ms", "{:.2f}"), Col("max", "max ms", "{:.2f}"),
               Col("errors", "errors")])
    host = daemons.TUNNEL_DOMAIN
    ctx.cmdlines["rate_http"] = " ".join(str(a) for a in clients.rate_http_argv(
        ctx, "P", "RATE", secs, ctx.warm_secs // 2 or 1, HTTP_CONNS, host, "/1k", 1024))

    def measure(port, rate):
        v = clients.rate_http(ctx, port, rate, secs, warm=ctx.warm_secs // 2 or 1,
                              conns=HTTP_CONNS, host=host, path="/1k", min_body=1024)
        bad = v["errors"] + v["timeouts"]
        if v["ok"] == 0 or bad > 0.01 * max(1, v["scheduled"]):
            raise RuntimeError(
                "%d ok of %d scheduled; errors %d (status %d, short %d, protocol %d, "
                "closed %d), timeouts %d" % (
                    v["ok"], v["scheduled"], v["errors"], v["err_status"],
                    v["err_short"], v["err_proto"], v["err_closed"], v["timeouts"]))
        return {"rate": rate, "achieved": v["achieved"], "p50": v["p50_us"] / 1000.0,
                "p99": v["p99_us"] / 1000.0, "p999": v["p999_us"] / 1000.0,
                "max": v["max_us"] / 1000.0, "errors": bad}

    srv = cli = None
    pair_err = None
    try:
        srv, cli, ports = daemons.tunnel_pair(ctx, "tun-http", True, origin_port,
                                              origin_port, certs)
        _pair_cmdlines(ctx, "tunnel TLS (latency)", srv, cli)
    except Exception as e:          # noqa: BLE001 - keep the direct rows
        pair_err = e

    def ours(rate):
        def fn():
            if isinstance(pair_err, Skip):
                raise pair_err
            if pair_err is not None:
                raise RuntimeError(str(pair_err))
            try:
                v = measure(ports["http"], rate)
            except Exception as e:
                raise RuntimeError("%s; server log: %s; client log: %s" % (
                    e, daemons.node_log_tail(srv, 200), daemons.node_log_tail(cli, 200)))
            for p in (srv, cli):
                if not p.alive():
                    raise RuntimeError("%s died: %s" % (p.name, daemons.node_log_tail(p)))
            return v
        return fn

    try:
        for rate in RATES:
            ctx.row(t, "direct (nginx origin) @ %d/s" % rate,
                    lambda r=rate: measure(origin_port, r))
            ctx.row(t, "wmproxy tunnel HTTP mapping (TLS) @ %d/s" % rate, ours(rate))
    finally:
        if cli:
            cli.stop()
        if srv:
            srv.stop()
    t.limit("wmproxy tunnel p99 at 4000 req/s", "wmproxy tunnel HTTP mapping (TLS) @ 4000/s",
            "p99", "<= 10", "ms")
    for rate in RATES:
        t.ratio("tunnel / direct p99 at %d req/s (info)" % rate,
                "wmproxy tunnel HTTP mapping (TLS) @ %d/s" % rate,
                "direct (nginx origin) @ %d/s" % rate, "p99")
    t.note("open loop: request i is due at t0 + i/rate; an idle connection sends the "
           "oldest due request (no pipelining); latency = last response byte - "
           "scheduled time, so waiting for a free connection counts; first %d s "
           "not recorded; GET /1k (1 KiB file), `Host: %s`, 200 + full body "
           "required" % (ctx.warm_secs // 2 or 1, host))
    t.note("the origin is nginx (1 worker) serving the file; the tunnel path is public "
           "client -> server node (HTTP routed by Host) -> TLS carrier -> client "
           "node -> origin; both nodes --workers 2 (tunnel work runs on worker 0)")
    t.note("at low rates the latency includes the wake-up of idle cores (client, "
           "nodes and origin all sleep between requests), so 100 req/s can be "
           "slower than 1000 req/s; errors = failed + timed-out requests (a row "
           "fails above 1 %)")
    return t


# --- 5c RSS per idle stream -----------------------------------------------------------
def _rss(ctx, certs, origin_port):
    want = ctx.tunnel_streams
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    n = min(want, soft - 512)
    t = Table("5c. Tunnel memory per idle stream (%d streams through the tcp mapping)" % n,
              [Col("n", "streams"), Col("srv_kib", "server ΔRSS KiB"),
               Col("cli_kib", "client ΔRSS KiB"), Col("srv_b", "server B/stream"),
               Col("cli_b", "client B/stream"), Col("sum_b", "sum B/stream")])
    if n < want:
        t.note("RLIMIT_NOFILE is %d (hard %d): %d streams instead of %d" % (
            soft, hard, n, want))

    def row(tls):
        def fn():
            idle = daemons.idle_server(ctx, stats=True)
            ctx.cmdlines["idle server (stats)"] = idle.cmdline
            srv = cli = None
            try:
                srv, cli, ports = daemons.tunnel_pair(
                    ctx, "tun-rss-%s" % ("tls" if tls else "plain"), tls, idle.port,
                    origin_port, certs)
                _pair_cmdlines(ctx, "tunnel %s (rss)" % ("TLS" if tls else "plain"),
                               srv, cli)
                return _measure_idle(ctx, srv, cli, ports["tcp"], idle, n)
            except Exception as e:
                if srv is None:
                    raise
                raise RuntimeError("%s; server log: %s; client log: %s" % (
                    e, daemons.node_log_tail(srv, 200),
                    daemons.node_log_tail(cli, 200) if cli else "-"))
            finally:
                for p in (cli, srv, idle):
                    if p is not None:
                        p.stop()
        return fn

    ctx.row(t, "wmproxy tunnel, TLS carrier", row(True))
    ctx.row(t, "wmproxy tunnel, plain carrier (extra)", row(False))
    t.limit("wmproxy TLS: sum B per idle stream", "wmproxy tunnel, TLS carrier",
            "sum_b", "<= 2048", "B")
    t.note("each stream: a TCP connection to the public tcp mapping port, one 1-byte "
           "write, relayed by the client node to an idle server (accepts, reads, "
           "never sends); all streams open and every byte received before the "
           "sample, then 2 s settle; idle streams hold no buffered data")
    t.note("ΔRSS = VmRSS after - VmRSS before, per node process; before = after %d "
           "warm-up streams were opened and closed; B/stream = ΔRSS / streams; "
           "kernel socket buffers are not in RSS" % WARM_STREAMS)
    return t


def _open_streams(port, count, idle, base, deadline_secs=120.0):
    """Open count connections to the public tcp mapping, one 1-byte write
    each. Every OPEN_BATCH, wait until the idle server has most of them so
    the accept queues never overflow. Returns the sockets."""
    socks, t_end = [], time.monotonic() + deadline_secs
    try:
        for i in range(count):
            if time.monotonic() > t_end:
                raise RuntimeError("only %d of %d streams opened after %.0fs"
                                   % (i, count, deadline_secs))
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(b"x")
            except OSError as e:
                raise RuntimeError("stream %d of %d: %s" % (i + 1, count, e))
            socks.append(s)
            if (i + 1) % OPEN_BATCH == 0:
                _wait_idle(idle, base[0] + i + 1 - OPEN_BATCH, None, 20,
                           "during opening")
    except BaseException:
        clients.close_all(socks)
        raise
    return socks


def _wait_idle(idle, conns, nbytes, timeout, when):
    deadline = time.monotonic() + timeout
    while True:
        c, b = idle.stats()
        if c >= conns and (nbytes is None or b >= nbytes):
            return c, b
        if time.monotonic() > deadline:
            raise RuntimeError("%s: the idle server has %d connections / %d bytes, "
                               "expected %d / %s" % (when, c, b, conns,
                                                     nbytes if nbytes is not None else "-"))
        time.sleep(0.05)


def _measure_idle(ctx, srv, cli, port, idle, n):
    time.sleep(0.3)                         # stats file written
    warm = _open_streams(port, WARM_STREAMS, idle, idle.stats())
    _wait_idle(idle, WARM_STREAMS, WARM_STREAMS, 10, "warm-up")
    clients.close_all(warm)
    deadline = time.monotonic() + 10
    while idle.stats()[0] > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    base = idle.stats()
    s0, c0 = srv.rss_kib(), cli.rss_kib()
    t0 = time.monotonic()
    socks = _open_streams(port, n, idle, base)
    try:
        _wait_idle(idle, base[0] + n, base[1] + n, 30, "after opening")
        open_secs = time.monotonic() - t0
        time.sleep(2.0)
        for p in (srv, cli):
            if not p.alive():
                raise RuntimeError("%s died: %s" % (p.name, daemons.node_log_tail(p)))
        s1, c1 = srv.rss_kib(), cli.rss_kib()
        still = idle.stats()[0] - base[0]
        if still < n:
            raise RuntimeError("only %d of %d streams still open at the sample"
                               % (still, n))
    finally:
        clients.close_all(socks)
    ctx.log("  %d streams opened in %.1f s" % (n, open_secs))
    return {"n": n, "srv_kib": s1 - s0, "cli_kib": c1 - c0,
            "srv_b": (s1 - s0) * 1024.0 / n, "cli_b": (c1 - c0) * 1024.0 / n,
            "sum_b": (s1 - s0 + c1 - c0) * 1024.0 / n}
