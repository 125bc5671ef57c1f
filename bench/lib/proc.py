"""Process helpers: start daemons in the foreground, wait for their port,
stop them (whole process group), free ports, RSS of a process tree.

Every Proc is registered in a module-level list so that bench.py can kill
everything still running on exit, Ctrl-C or an exception (stop_all()).
"""
import os
import resource
import signal
import socket
import subprocess
import time

_LIVE = []          # Procs not yet stopped
_PORTS = set()      # ports handed out in this run (avoid handing one out twice)
_SEQ = [0]          # log file sequence number


class ProcError(RuntimeError):
    pass


def free_port():
    """A TCP port on 127.0.0.1 that is free right now (bind to port 0)."""
    for _ in range(100):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in _PORTS:
            _PORTS.add(port)
            return port
    raise ProcError("no free port found")


def raise_nofile():
    """Raise RLIMIT_NOFILE to the hard limit (at most 65536); used for us and
    as preexec_fn of every child so 1000+ tunnels (2 fds each) fit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    want = min(want, 65536)
    if soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            pass


try:
    import ctypes
    _LIBC = ctypes.CDLL(None, use_errno=True)
except (ImportError, OSError):
    _LIBC = None


def _child_setup():
    raise_nofile()
    # Die with the parent if it is SIGKILLed (PR_SET_PDEATHSIG = 1); best
    # effort, the normal path is stop_all().
    if _LIBC is not None:
        try:
            _LIBC.prctl(1, signal.SIGKILL, 0, 0, 0)
        except Exception:
            pass


def listening(port):
    """True if a TCP socket is in LISTEN state on port (IPv4 or IPv6), from
    /proc/net/tcp{,6}. Unlike port_open() it does not connect, so daemons
    that log or mis-handle an empty probe connection (iperf3, sshd, stunnel,
    tunnel carriers) see nothing."""
    want = ":%04X" % port
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(path) as f:
                next(f)
                for line in f:
                    parts = line.split(None, 4)
                    if parts[1].endswith(want) and parts[3] == "0A":
                        return True
        except OSError:
            continue
    return False


def port_open(port, host="127.0.0.1", timeout=0.2):
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class Proc:
    """One child process (a daemon in the foreground or a client).

    p = Proc("nginx", [...], logdir, port=8080).start()  # waits for the port
    ...
    p.stop()
    """

    def __init__(self, name, argv, logdir, port=None, cwd=None, env=None,
                 start_timeout=10.0, probe="connect"):
        """probe: how start() waits for `port`: "connect" (a TCP connect
        succeeds) or "listen" (a LISTEN socket shows up in /proc/net/tcp,
        no connection is made)."""
        self.name = name
        self.probe = probe
        self.argv = [str(a) for a in argv]
        self.port = port
        self.cwd = cwd or logdir
        self.env = env
        self.start_timeout = start_timeout
        _SEQ[0] += 1
        self.logpath = os.path.join(logdir, "%02d-%s.log" % (_SEQ[0], name))
        self.popen = None
        self._log = None

    def __repr__(self):
        return "Proc(%s pid=%s)" % (self.name, self.pid)

    @property
    def pid(self):
        return self.popen.pid if self.popen else None

    @property
    def cmdline(self):
        return " ".join(self.argv)

    def start(self):
        self._log = open(self.logpath, "wb")
        try:
            self.popen = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                stderr=subprocess.STDOUT, cwd=self.cwd, env=self.env,
                preexec_fn=_child_setup, start_new_session=True)
        except OSError as e:
            self._log.close()
            raise ProcError("%s: cannot exec %s: %s" % (self.name, self.argv[0], e))
        _LIVE.append(self)
        if self.port is not None:
            self.wait_port(self.port, self.start_timeout)
        return self

    def alive(self):
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, n=400):
        try:
            with open(self.logpath, "rb") as f:
                data = f.read()
        except OSError:
            return ""
        return data[-n:].decode("utf-8", "replace").strip()

    def wait_port(self, port, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                rc = self.popen.returncode
                self.stop()
                raise ProcError("%s exited (rc=%s) before listening on %d: %s"
                                % (self.name, rc, port, self.log_tail()))
            if (listening(port) if self.probe == "listen" else port_open(port)):
                return
            time.sleep(0.05)
        self.stop()
        raise ProcError("%s: port %d not open after %.0fs: %s"
                        % (self.name, port, timeout, self.log_tail()))

    def wait(self, timeout):
        """Wait for exit (a client started with start()); returns the exit
        code. Kills the group and raises on timeout."""
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ProcError("%s did not finish within %.0fs" % (self.name, timeout))
        self.stop()             # reap leftovers of the group, close the log
        return rc

    def output(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self, grace=3.0):
        if self.popen is None:
            return
        if self.popen.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
                try:
                    os.killpg(self.popen.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # Leftover group members (forked children of a daemon whose leader
        # exited first): kill the group regardless.
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self in _LIVE:
            _LIVE.remove(self)
        if self._log and not self._log.closed:
            self._log.close()

    # --- memory ---------------------------------------------------------
    def tree_pids(self):
        return tree_pids(self.pid) if self.alive() else []

    def rss_kib(self):
        return sum_status_field(self.tree_pids(), "VmRSS")

    def pss_kib(self):
        return sum_pss(self.tree_pids())

    def cpu_secs(self):
        """utime + stime of the process tree (all threads), in seconds."""
        return tree_cpu_secs(self.tree_pids())


def stop_all():
    for p in list(reversed(_LIVE)):
        try:
            p.stop(grace=1.0)
        except Exception:
            pass


def run(argv, timeout, **kw):
    """subprocess.run with a hard timeout; returns CompletedProcess."""
    return subprocess.run([str(a) for a in argv], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_child_setup, **kw)


def tree_pids(root):
    """root and all its descendants, from /proc/*/stat ppid fields."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
        except OSError:
            continue
        # comm may contain spaces/parens: fields after the last ')'
        rest = stat[stat.rfind(")") + 2:].split()
        children.setdefault(int(rest[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def sum_status_field(pids, field):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def sum_pss(pids):
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


# --- CPU used by others (noise indicator) ------------------------------------------
_TICK = os.sysconf("SC_CLK_TCK")


def tree_cpu_secs(pids):
    """Sum of utime + stime (/proc/PID/stat fields 14 and 15, all threads of
    each process) over pids, in seconds; processes gone meanwhile count 0."""
    total = 0
    for pid in pids:
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        total += int(rest[11]) + int(rest[12])
    return total / _TICK


def _busy_secs():
    """user+nice+system+irq+softirq seconds over all CPUs since boot
    (/proc/stat). softirq is included because without IRQ time accounting
    the kernel charges it to the interrupted task (our loopback traffic)."""
    with open("/proc/stat") as f:
        f = [int(x) for x in f.readline().split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6]) / _TICK


def _our_cpu_secs():
    """CPU seconds of this process and all its descendants, live or reaped."""
    t = os.times()
    total = t.user + t.system + t.children_user + t.children_system
    me = os.getpid()
    for pid in tree_pids(me):
        if pid == me:
            continue
        try:
            with open("/proc/%d/stat" % pid) as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        # utime stime cutime cstime = fields 14..17 (rest[11..14])
        total += sum(int(x) for x in rest[11:15]) / _TICK
    return total


class ForeignCpu:
    """Measures CPU used by processes outside this benchmark between
    start() and cores(): a hint that a row ran on a busy machine. Approximate
    (softirq time of loopback traffic may land either side)."""

    def start(self):
        self.t0 = time.monotonic()
        self.busy0, self.ours0 = _busy_secs(), _our_cpu_secs()
        return self

    def cores(self):
        wall = time.monotonic() - self.t0
        if wall <= 0:
            return 0.0
        other = (_busy_secs() - self.busy0) - (_our_cpu_secs() - self.ours0)
        return max(0.0, other / wall)
