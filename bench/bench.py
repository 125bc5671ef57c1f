#!/usr/bin/python3
"""wmproxy benchmark harness: forward-proxy benchmarks against tinyproxy,
dante, microsocks, nginx and haproxy, tunnel benchmarks against ssh -L
and stunnel, and reverse-proxy benchmarks against nginx proxy_pass and
haproxy, all on 127.0.0.1 in one run.

    /usr/bin/python3 bench/bench.py --bin build/wmproxy [--only http,bulk] [--quick]

Sections are listed in SECTIONS (name, function(ctx) -> [Table]); add new
ones there. Every daemon is a foreground child started through lib.proc.Proc
and killed at the end, on Ctrl-C and on exceptions. Stdlib only.
"""
import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from lib import (proc, sec_bulk, sec_cluster, sec_connrate, sec_h2, sec_http,  # noqa: E402
                 sec_l4, sec_reverse, sec_rss, sec_static, sec_tunnel)
from lib.ctx import BENCH_DIR, Ctx  # noqa: E402

SECTIONS = [
    ("http", "forward HTTP req/s (wrk)", sec_http.run),
    ("bulk", "bulk download MB/s (curl, SOCKS5/CONNECT)", sec_bulk.run),
    ("connrate", "SOCKS5 short connections/s (socks_rate.c)", sec_connrate.run),
    ("rss", "RSS per 1,000 idle tunnels", sec_rss.run),
    ("tunnel", "tunnel: bulk vs ssh -L / stunnel, latency at fixed rates, "
     "idle-stream RSS", sec_tunnel.run),
    ("reverse", "reverse proxy: req/s, latency, CPU per request vs nginx / "
     "haproxy, idle keep-alive client RSS", sec_reverse.run),
    ("h2", "HTTP/2 over TLS: h2load req/s, p99 vs nginx / haproxy, idle h2 "
     "connection RSS", sec_h2.run),
    ("static", "static files: wmproxy file-server vs nginx (sendfile, open_file_cache) "
     "on 1 KiB / 1 MiB / 1 GiB, python3 http.server for scale", sec_static.run),
    ("l4", "L4 [stream]: iperf3 TCP/UDP, conn/s, idle-pair RSS vs haproxy / nginx "
     "stream / socat", sec_l4.run),
    ("cluster", "cluster: latency and throughput of the node A -> B hop (Redis)",
     sec_cluster.run),
]

ANCHOR_PKGS = ["wrk", "curl", "nghttp2-client", "nginx", "tinyproxy", "dante-server", "microsocks",
               "haproxy", "iperf3", "openssh-server", "stunnel4", "openssl"]


def parse_args():
    names = [s[0] for s in SECTIONS]
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(BENCH_DIR),
                                                  "build", "wmproxy"),
                    help="wmproxy binary (rows show 'not built' if missing)")
    ap.add_argument("--only", default=",".join(names),
                    help="comma list of sections: %s" % ",".join(names))
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 3 s loads, 256 MiB file")
    ap.add_argument("--duration", type=int, default=0,
                    help="seconds per wrk / socks_rate load (default 10, quick 3)")
    ap.add_argument("--workers", type=int, default=1,
                    help="--workers passed to wmproxy (0 = omit the option); "
                         "default 1")
    ap.add_argument("--nginx-workers", type=int, default=1,
                    help="worker_processes of the nginx proxy_pass reference")
    ap.add_argument("--target-workers", type=int, default=1,
                    help="worker_processes of the nginx target in connrate")
    ap.add_argument("--rss-conns", type=int, default=1000,
                    help="idle tunnels per proxy in the rss section")
    ap.add_argument("--tunnel-streams", type=int, default=10000,
                    help="idle streams in the tunnel RSS table (default 10000; "
                         "reduced to fit RLIMIT_NOFILE)")
    ap.add_argument("--out", default=os.path.join(BENCH_DIR, "out", "results.md"))
    ap.add_argument("--keep-tmp", action="store_true",
                    help="keep the temp dir (configs, logs) for inspection")
    a = ap.parse_args()
    a.only = [s.strip() for s in a.only.split(",") if s.strip()]
    bad = [s for s in a.only if s not in names]
    if bad:
        ap.error("unknown section(s): %s (have: %s)" % (",".join(bad), ",".join(names)))
    if a.bin:
        a.bin = os.path.abspath(a.bin)
    return a


# --- machine line -------------------------------------------------------------------
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pkg_versions():
    out = []
    for p in ANCHOR_PKGS:
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p],
                               capture_output=True, text=True, timeout=10)
            out.append("%s %s" % (p, r.stdout.strip() if r.returncode == 0 else "?"))
        except (OSError, subprocess.SubprocessError):
            out.append("%s ?" % p)
    return ", ".join(out)


def _ours_version(bin_info):
    repo = os.path.dirname(BENCH_DIR)
    try:
        sha = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = "?"
    try:
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--",
                                "src", "include", "Makefile", "mk"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        dirty = ""
    return "wmproxy: repo HEAD %s%s, %s" % (
        sha or "?", " (+ uncommitted changes in the source tree)" if dirty else "",
        bin_info)


def _loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine_lines(args, ours_version, started, load0, other_cores):
    return [
        "- machine: %s, %d cores, kernel %s, %s; loadavg at start %s, at end %s; "
        "other processes used %.2f cores on average during the run" % (
            _cpu_model(), os.cpu_count() or 0, platform.release(),
            started.strftime("%Y-%m-%d %H:%M UTC"), load0, _loadavg(), other_cores),
        "- versions: %s; %s" % (_pkg_versions(), ours_version),
        "- options: %s" % " ".join(sys.argv[1:]) if len(sys.argv) > 1 else
        "- options: (defaults)",
    ]


# --- main ---------------------------------------------------------------------------
def _on_signal(signum, frame):
    raise KeyboardInterrupt("signal %d" % signum)


def main():
    args = parse_args()
    proc.raise_nofile()
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    tmp = tempfile.mkdtemp(prefix="wmbench-")
    try:
        ctx = Ctx(args, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    started, load0 = datetime.datetime.now(datetime.timezone.utc), _loadavg()
    ours_version = _ours_version(ctx.bin_info)     # at the start: HEAD may move
    foreign = proc.ForeignCpu().start()
    tables, t0, interrupted = [], time.monotonic(), False
    try:
        for name, desc, fn in SECTIONS:
            if name not in args.only:
                continue
            ctx.log("== section %s: %s" % (name, desc))
            try:
                tables += fn(ctx)
            except KeyboardInterrupt:
                raise
            except Exception as e:                  # noqa: BLE001
                ctx.log("section %s failed: %s" % (name, e))
                tables.append(_failed_section(name, e))
            finally:
                proc.stop_all()
    except KeyboardInterrupt:
        interrupted = True
        ctx.log("interrupted, stopping all processes")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)      # let the cleanup finish
        proc.stop_all()
        for path in ctx.cleanup_paths:
            try:
                os.rmdir(path)                      # only if still empty
            except OSError:
                pass
        if args.keep_tmp:
            ctx.log("temp dir kept: %s" % tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    lines = ["## wmproxy benchmark results", ""]
    other = foreign.cores()
    lines += machine_lines(args, ours_version, started, load0, other)
    if other >= 0.1:
        lines.append("- **warning**: processes outside the benchmark used %.2f "
                     "cores on average (this machine has %d); numbers are noisy, "
                     "rows with more than 0.1 core of outside load say so in "
                     "their notes" % (other, os.cpu_count() or 0))
    lines.append("")
    lines += [t.markdown() for t in tables]
    if ctx.cmdlines:
        lines += ["### Command lines", ""]
        for k, v in sorted(ctx.cmdlines.items()):
            if ctx.bin and args.bin:
                v = v.replace(ctx.bin, args.bin)       # show the real path
            lines.append("- %s: `%s`" % (k, v.replace(tmp, "$TMP")))
        lines.append("")
    lines.append("_total time %.0f s%s_" % (time.monotonic() - t0,
                                             ", INTERRUPTED" if interrupted else ""))
    text = "\n".join(lines) + "\n"
    sys.stdout.write(text)
    try:
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "w") as f:
            f.write(text)
        ctx.log("written %s" % args.out)
    except OSError as e:
        ctx.log("cannot write %s: %s" % (args.out, e))
    return 130 if interrupted else 0


def _failed_section(name, err):
    from lib.table import Col, Table
    t = Table("section %s" % name, [Col("x", "result")])
    t.fail(name, "error: %s" % err)
    return t


if __name__ == "__main__":
    sys.exit(main())
