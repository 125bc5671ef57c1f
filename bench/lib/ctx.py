"""Run context shared by all sections: options, temp dir, durations,
helpers to run one table row safely and to build the C load tools."""
import os
import shutil
import subprocess
import sys
import time

from . import proc

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS_DIR = os.path.join(BENCH_DIR, "tools")


class Skip(Exception):
    """A row that cannot run (e.g. our binary is not built)."""


class Ctx:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.logdir = os.path.join(tmp, "logs")
        os.makedirs(self.logdir, exist_ok=True)
        self.quick = args.quick
        self.bin = self._snapshot(args.bin)
        self.workers = args.workers
        # Durations (seconds) and sizes; --quick is for smoke runs only.
        self.load_secs = args.duration or (3 if self.quick else 10)
        self.warm_secs = 1 if self.quick else 2
        self.big_bytes = (256 if self.quick else 1024) * 1024 * 1024
        self.bulk_runs = 2
        self.rss_conns = args.rss_conns
        self.nginx_workers = args.nginx_workers
        self.target_workers = args.target_workers
        self.tunnel_streams = getattr(args, "tunnel_streams", 10000)
        self.cmdlines = {}      # label -> command line, printed with the results
        self.cleanup_paths = []  # empty dirs created outside $TMP (/run/sshd)
        self._tools = {}

    # --- logging ----------------------------------------------------------
    def log(self, msg):
        sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
        sys.stderr.flush()

    # --- rows ---------------------------------------------------------------
    def row(self, table, name, fn, detail=""):
        """Run fn() -> dict of cell values and add it to table; any failure
        becomes an 'error: ...' row instead of aborting the run."""
        self.log("%s: %s ..." % (table.title, name))
        foreign = proc.ForeignCpu().start()
        try:
            vals = fn()
        except Skip as e:
            table.fail(name, str(e), detail)
            self.log("  skipped: %s" % e)
            return None
        except KeyboardInterrupt:
            raise
        except Exception as e:              # noqa: BLE001 - report, go on
            msg = str(e) or type(e).__name__
            table.fail(name, "error: " + msg, detail)
            self.log("  error: %s" % msg)
            return None
        other = foreign.cores()
        if other >= 0.1:
            detail = (detail + "; " if detail else "") + \
                "machine busy: other processes used %.1f cores" % other
        table.add(name, detail, **vals)
        self.log("  %s" % ", ".join("%s=%s" % (k, _short(v)) for k, v in vals.items()))
        return vals

    # --- our binary -----------------------------------------------------------
    def _snapshot(self, path):
        """Copy our binary into the temp dir so that a rebuild of build/ during
        the run cannot mix two binaries in one table. Sets self.bin_info."""
        self.bin_info = "binary not built"
        if not path or not os.path.isfile(path):
            return path
        st = os.stat(path)
        self.bin_info = "binary built %s" % time.strftime(
            "%Y-%m-%d %H:%M UTC", time.gmtime(st.st_mtime))
        dst = os.path.join(self.tmp, "wmproxy")
        try:
            shutil.copy2(path, dst)
        except OSError as e:
            self.log("cannot copy %s (%s), using it in place" % (path, e))
            return path
        return dst

    def ours_bin(self):
        """Path of our binary; raises Skip('not built') if it is missing."""
        if not self.bin or not os.path.isfile(self.bin):
            raise Skip("not built")
        if not os.access(self.bin, os.X_OK):
            raise Skip("not built (not executable)")
        return self.bin

    def ours_argv(self, port, workers=None):
        """workers: override --workers for this daemon (None: the run's)."""
        argv = [self.ours_bin(), "proxy", "-b", "127.0.0.1:%d" % port,
                "--disable-control", "--disable-stdout"]
        w = self.workers if workers is None else workers
        if w:
            argv += ["--workers", str(w)]
        return argv

    # --- C tools --------------------------------------------------------------
    def tool(self, name):
        """Compile bench/tools/NAME.c with gcc -O2 into the temp dir (once)."""
        if name in self._tools:
            return self._tools[name]
        src = os.path.join(TOOLS_DIR, name + ".c")
        out = os.path.join(self.tmp, name)
        r = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-o", out, src],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError("gcc %s failed: %s" % (name, r.stderr[-500:]))
        self._tools[name] = out
        return out


def _short(v):
    return "%.4g" % v if isinstance(v, float) else str(v)

