"""Config writers and starters for every daemon the sections use.

All daemons run in the foreground as children of bench.py, listen on
127.0.0.1 on a port chosen at runtime and keep config, pid and logs in the
run's temp dir. Each function returns a started Proc (port open) and sets
p.cmdline (shown in the docs) and p.conf (the config text, if any).
"""
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time

from .proc import Proc, free_port

BENCH_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_BODY = b"0123456789abcdef"             # 16 bytes, /tiny on the origin


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)
    return path


def _dir(ctx, name):
    d = os.path.join(ctx.tmp, name)
    os.makedirs(d, exist_ok=True)
    return d


# --- content ------------------------------------------------------------------
def www(ctx, big=False):
    """Docroot with /1k (1024 bytes), /100k (102400 bytes), /tiny (16 bytes)
    and, if big, /big (ctx.big_bytes, a regular file of real data blocks,
    written once)."""
    d = _dir(ctx, "www")
    p = os.path.join(d, "1k")
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write((b"0123456789abcdef" * 64)[:1023] + b"\n")
        with open(os.path.join(d, "100k"), "wb") as f:
            f.write((b"0123456789abcdef" * 6400)[:102399] + b"\n")
        with open(os.path.join(d, "tiny"), "wb") as f:
            f.write(TINY_BODY)
    big_path = os.path.join(d, "big")
    if big and (not os.path.exists(big_path)
                or os.path.getsize(big_path) != ctx.big_bytes):
        # A real (non-sparse) file: nginx serves it from the page cache with
        # sendfile. Written in 8 MiB chunks of non-zero data.
        chunk = (b"wmproxy-bench-\n" * 600000)[:8 << 20]
        with open(big_path, "wb") as f:
            left = ctx.big_bytes
            while left > 0:
                n = min(left, len(chunk))
                f.write(chunk[:n])
                left -= n
    return d


# --- nginx --------------------------------------------------------------------
def _nginx_conf(prefix, workers, http_body):
    user = "user root;\n" if os.geteuid() == 0 else ""
    tmps = "".join("    %s_temp_path %s/tmp/%s;\n" % (k, prefix, k)
                   for k in ("proxy", "fastcgi", "uwsgi", "scgi"))
    return """%sworker_processes %d;
worker_rlimit_nofile 65536;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 16384; }
http {
    access_log off;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path %s/tmp/client_body;
%s%s}
""" % (user, workers, prefix, prefix, prefix, tmps, http_body)


def _nginx(ctx, name, workers, http_body, port):
    prefix = _dir(ctx, name)
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    conf = _write(os.path.join(prefix, "nginx.conf"),
                  _nginx_conf(prefix, workers, http_body))
    p = Proc(name, ["nginx", "-p", prefix + "/", "-c", conf,
                    "-e", prefix + "/error.log"], ctx.logdir, port=port)
    p.conf = open(conf).read()
    return p.start()


def nginx_origin(ctx, workers=1, big=False):
    """Static origin: /1k, /tiny and (if big) /big, access_log off."""
    root = www(ctx, big)
    port = free_port()
    body = """    server {
        listen 127.0.0.1:%d backlog=4096;
        root %s;
        location / { }
    }
""" % (port, root)
    return _nginx(ctx, "nginx-origin", workers, body, port)


# The request headers wmproxy's reverse proxy adds by default (X-Forwarded-For,
# X-Real-IP, X-Forwarded-Proto): nginx and HAProxy rows add them too, so every
# proxy builds the same upstream head and the origin parses the same bytes.
def nginx_fwd_headers(scheme):
    return "\n".join("            proxy_set_header %s %s;" % kv for kv in (
        ("X-Forwarded-For", "$proxy_add_x_forwarded_for"), ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-Proto", scheme)))


def haproxy_fwd_headers(scheme):
    return ("    option forwardfor\n"
            "    http-request set-header X-Real-IP %%[src]\n"
            "    http-request set-header X-Forwarded-Proto %s" % scheme)


def nginx_reverse(ctx, upstream_port, workers=1, fwd_headers=False):
    """Reverse proxy with a keep-alive upstream pool (the reference row);
    fwd_headers: add wmproxy's default forwarding headers (reverse section)."""
    port = free_port()
    body = """    upstream origin {
        server 127.0.0.1:%d;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:%d backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
%s
        }
    }
""" % (upstream_port, port, nginx_fwd_headers("$scheme") if fwd_headers else "")
    return _nginx(ctx, "nginx-proxy", workers, body, port)


# --- forward proxies ---------------------------------------------------------
def tinyproxy(ctx, connect_ports=()):
    d = _dir(ctx, "tinyproxy")
    port = free_port()
    conf = """Port %d
Listen 127.0.0.1
Timeout 600
MaxClients 4096
Allow 127.0.0.1
DisableViaHeader Yes
XTinyproxy No
LogLevel Error
%s""" % (port, "".join("ConnectPort %d\n" % p for p in connect_ports))
    path = _write(os.path.join(d, "tinyproxy.conf"), conf)
    p = Proc("tinyproxy", ["tinyproxy", "-d", "-c", path], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def danted(ctx):
    d = _dir(ctx, "danted")
    port = free_port()
    user = ("user.privileged: root\nuser.unprivileged: nobody\n"
            if os.geteuid() == 0 else "")
    conf = """logoutput: stderr
internal: 127.0.0.1 port = %d
external: 127.0.0.1
socksmethod: none
clientmethod: none
%stimeout.negotiate: 30
timeout.io: 0
client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }
socks pass { from: 127.0.0.0/8 to: 0.0.0.0/0 command: connect }
""" % (port, user)
    path = _write(os.path.join(d, "danted.conf"), conf)
    p = Proc("danted", ["danted", "-f", path, "-N", "1",
                        "-p", os.path.join(d, "danted.pid")],
             ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def microsocks(ctx):
    port = free_port()
    p = Proc("microsocks", ["microsocks", "-i", "127.0.0.1", "-p", port],
             ctx.logdir, port=port)
    p.conf = None
    return p.start()


def haproxy_tcp(ctx, backend_port, threads=None):
    """`mode tcp` forward; threads: `nbthread` (None: HAProxy's default, one
    thread per CPU)."""
    d = _dir(ctx, "haproxy")
    port = free_port()
    nbt = "    nbthread %d\n" % threads if threads else ""
    conf = """global
    maxconn 8000
%sdefaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server s1 127.0.0.1:%d
""" % (nbt, port, backend_port)
    path = _write(os.path.join(d, "haproxy.cfg"), conf)
    p = Proc("haproxy", ["haproxy", "-db", "-f", path], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def haproxy_http(ctx, backend_port, threads=1, fwd_headers=False):
    """HTTP reverse proxy with server-side connection reuse (reverse section):
    `mode http`, `http-reuse always`, `nbthread threads`, no logging;
    fwd_headers: add wmproxy's default forwarding headers."""
    d = _dir(ctx, "haproxy-http")
    port = free_port()
    conf = """global
    maxconn 8000
    nbthread %d
defaults
    mode http
    http-reuse always
    timeout connect 5s
    timeout client 10m
    timeout server 10m
    timeout http-request 60s
    timeout http-keep-alive 10m
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
%s
    server s1 127.0.0.1:%d
""" % (threads, port, haproxy_fwd_headers("http") if fwd_headers else "", backend_port)
    path = _write(os.path.join(d, "haproxy.cfg"), conf)
    p = Proc("haproxy-http", ["haproxy", "-db", "-f", path], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def ours_reverse(ctx, upstream_port, workers=1, keepalive=None, name="rev-ours"):
    """Our reverse proxy: `wmproxy run -c rev.toml --disable-stdout` with one
    [[http.upstream]] (the origin) and one [[http.server]] proxying to it.
    workers: the `workers` key (0 omits it: one per core); keepalive: the
    upstream's idle pool per server and worker (None: our default)."""
    ours = ctx.ours_bin()
    d = _dir(ctx, name)
    port = free_port()
    lines = []
    if workers:
        lines.append("workers = %d" % workers)
    lines += ["disable_control = true", "[http]", "[[http.upstream]]",
              'name = "origin"',
              'server = [{ addr = "127.0.0.1:%d" }]' % upstream_port]
    if keepalive is not None:
        lines.append("keepalive = %d" % keepalive)
    lines += ["[[http.server]]", 'bind_addr = "127.0.0.1:%d"' % port,
              'proxy_url = "http://origin"']
    conf = "\n".join(lines) + "\n"
    path = _write(os.path.join(d, "rev.toml"), conf)
    p = Proc(name, [ours, "run", "-c", path, "--disable-stdout"], ctx.logdir,
             port=port, cwd=d)
    p.conf = conf
    return p.start()


def ours(ctx, name="wmproxy", workers=None):
    """Our proxy (HTTP proxy + CONNECT + SOCKS5 on one port). Raises
    ctx.Skip-compatible Skip('not built') when the binary is missing.
    workers: --workers for this one (None: the run's --workers)."""
    port = free_port()
    p = Proc(name, ctx.ours_argv(port, workers), ctx.logdir, port=port)
    p.conf = None
    return p.start()


# --- helpers servers ---------------------------------------------------------
def idle_server(ctx, stats=False):
    """Accepts and holds TCP connections without sending anything. With
    stats, p.stats() returns (connections open, bytes received)."""
    port = free_port()
    argv = [sys.executable, os.path.join(BENCH_DIR, "tools", "idle_server.py"),
            "--port", port]
    stats_path = os.path.join(ctx.tmp, "idle-%d.stats" % port)
    if stats:
        argv += ["--stats-file", stats_path]
    p = Proc("idle-server", argv, ctx.logdir, port=port, probe="listen")
    p.conf = None

    def read_stats():
        try:
            with open(stats_path) as f:
                a, b = f.read().split()
            return int(a), int(b)
        except (OSError, ValueError):
            return 0, 0
    p.stats = read_stats
    return p.start()


# --- tunnels (section tunnel) ------------------------------------------------
def _run_ok(argv, cwd, what):
    r = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True,
                       text=True, timeout=30, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise RuntimeError("%s failed (rc=%d): %s" % (what, r.returncode,
                                                      (r.stderr or r.stdout)[-300:]))
    return r


CERT_CMDS = [
    ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"],
    ["openssl", "req", "-x509", "-new", "-key", "ca.key", "-sha256", "-days", "2",
     "-subj", "/CN=wmproxy bench CA", "-addext", "basicConstraints=critical,CA:TRUE",
     "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", "ca.pem"],
    ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "srv.key"],
    ["openssl", "req", "-new", "-key", "srv.key", "-subj", "/CN=localhost",
     "-out", "srv.csr"],
    ["openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
     "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "srv.ext",
     "-out", "srv.pem"],
]
SRV_EXT = """subjectAltName = IP:127.0.0.1, DNS:localhost
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
"""


def tunnel_certs(ctx):
    """EC P-256 CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost)
    made with the openssl CLI in $TMP/certs; returns {name: path}."""
    d = _dir(ctx, "certs")
    if not os.path.exists(os.path.join(d, "srv.pem")):
        _write(os.path.join(d, "srv.ext"), SRV_EXT)
        for argv in CERT_CMDS:
            _run_ok(argv, d, " ".join(argv[:2]))
        _run_ok(["openssl", "verify", "-CAfile", "ca.pem", "srv.pem"], d,
                "openssl verify")
    return {n: os.path.join(d, n) for n in ("ca.pem", "ca.key", "srv.pem", "srv.key")}


def _toml_str(s):
    return '"%s"' % str(s).replace("\\", "\\\\").replace('"', '\\"')


TUNNEL_USER, TUNNEL_PASS = "wm", "bench-pw"
TUNNEL_DOMAIN = "bench.test"


def tunnel_pair(ctx, name, tls, tcp_target, http_target, certs):
    """A wmproxy tunnel: server node (public tcp mapping port + public HTTP
    port routed by Host) and client node offering two mappings: "bulk"
    (tcp -> 127.0.0.1:tcp_target) and "web" (http, domain bench.test ->
    127.0.0.1:http_target). Returns (server Proc, client Proc, ports) once a
    request through the HTTP mapping succeeds, i.e. the client has attached
    and registered both mappings. ports: center, tcp, http, entry."""
    ours = ctx.ours_bin()
    d = _dir(ctx, name)
    ports = {k: free_port() for k in ("center", "tcp", "http", "entry")}
    srv = ["disable_control = true", "[proxy]",
           "bind_addr = \"127.0.0.1:%d\"" % ports["center"], 'mode = "server"']
    if tls:
        srv += ["tc = true", "cert = %s" % _toml_str(certs["srv.pem"]),
                "key = %s" % _toml_str(certs["srv.key"])]
    srv += ["username = %s" % _toml_str(TUNNEL_USER),
            "password = %s" % _toml_str(TUNNEL_PASS),
            "map_tcp_bind = \"127.0.0.1:%d\"" % ports["tcp"],
            "map_http_bind = \"127.0.0.1:%d\"" % ports["http"]]
    cli = ["disable_control = true", "[proxy]",
           "server = \"127.0.0.1:%d\"" % ports["center"]]
    if tls:
        cli += ["ts = true", "ca = %s" % _toml_str(certs["ca.pem"])]
    cli += ["bind_addr = \"127.0.0.1:%d\"" % ports["entry"],
            "username = %s" % _toml_str(TUNNEL_USER),
            "password = %s" % _toml_str(TUNNEL_PASS),
            "", "[[proxy.mappings]]", 'name = "bulk"', 'mode = "tcp"',
            "local_addr = \"127.0.0.1:%d\"" % tcp_target,
            "", "[[proxy.mappings]]", 'name = "web"', 'mode = "http"',
            "local_addr = \"127.0.0.1:%d\"" % http_target,
            "domain = %s" % _toml_str(TUNNEL_DOMAIN)]
    spath = _write(os.path.join(d, "server.toml"), "\n".join(srv) + "\n")
    cpath = _write(os.path.join(d, "client.toml"), "\n".join(cli) + "\n")

    def argv(path, log):
        # --log-file at warn level: errors land in the temp dir without a
        # log line per stream (--disable-stdout alone would log nothing)
        return [ours, "run", "-c", path, "--disable-stdout", "--workers", "2",
                "--log-file", os.path.join(d, log), "--default-level", "warn"]
    s = Proc(name + "-server", argv(spath, "server.log"), ctx.logdir,
             port=ports["center"], probe="listen", cwd=d)
    s.conf, s.node_log = open(spath).read(), os.path.join(d, "server.log")
    s.start()
    try:
        s.wait_port(ports["tcp"], 5)
        s.wait_port(ports["http"], 5)
        c = Proc(name + "-client", argv(cpath, "client.log"), ctx.logdir,
                 port=ports["entry"], probe="listen", cwd=d)
        c.conf, c.node_log = open(cpath).read(), os.path.join(d, "client.log")
        c.start()
    except BaseException:
        s.stop()
        raise
    try:
        _wait_http_mapping(ports["http"], TUNNEL_DOMAIN, [s, c], 15)
    except BaseException:
        c.stop()
        s.stop()
        raise
    return s, c, ports


def node_log_tail(p, n=400):
    """Last n bytes of a tunnel node's --log-file (plus its stdout/stderr)."""
    out = []
    for path in (getattr(p, "node_log", None), p.logpath):
        try:
            with open(path, "rb") as f:
                data = f.read()[-n:].decode("utf-8", "replace").strip()
            if data:
                out.append(data)
        except (OSError, TypeError):
            pass
    return " / ".join(out)


def _wait_http_mapping(port, host, procs, timeout):
    """Poll GET /1k with Host: host on the public HTTP port until 200."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        for p in procs:
            if not p.alive():
                raise RuntimeError("%s exited (rc=%s): %s" % (
                    p.name, p.popen.returncode, node_log_tail(p)))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(("GET /1k HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                           % host).encode())
                buf = b""
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    buf += chunk
            status = buf.split(b"\r\n", 1)[0]
            if status.startswith(b"HTTP/1.1 200") or status.startswith(b"HTTP/1.0 200"):
                return
            last = status.decode("latin-1")[:80] or "empty reply"
        except OSError as e:
            last = str(e)
        time.sleep(0.1)
    raise RuntimeError("tunnel HTTP mapping not ready after %.0fs (last: %s); "
                       "server log: %s; client log: %s" % (
                           timeout, last, node_log_tail(procs[0]),
                           node_log_tail(procs[1])))


def iperf3_server(ctx):
    port = free_port()
    p = Proc("iperf3-server", ["iperf3", "-s", "-B", "127.0.0.1", "-p", port],
             ctx.logdir, port=port, probe="listen")
    p.conf = None
    return p.start()


SSH_CIPHER = "aes128-gcm@openssh.com"


def sshd_and_forward(ctx, target_port):
    """A private sshd on a free port (own host key, temporary authorized key,
    only SSH_CIPHER) and `ssh -N -L LP:127.0.0.1:target_port` through it.
    Returns (sshd Proc, ssh Proc, LP). sshd runs as root needs /run/sshd
    (privilege separation dir); it is created if missing and recorded in
    ctx.cleanup_paths."""
    d = _dir(ctx, "ssh")
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    for key in ("host_key", "user_key"):
        if not os.path.exists(os.path.join(d, key)):
            _run_ok(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "wmbench",
                     "-f", os.path.join(d, key)], d, "ssh-keygen")
    with open(os.path.join(d, "user_key.pub")) as f:
        _write(os.path.join(d, "authorized_keys"), f.read())
    os.chmod(os.path.join(d, "authorized_keys"), 0o600)
    if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
        os.makedirs("/run/sshd", mode=0o755)
        ctx.cleanup_paths.append("/run/sshd")
    sp = free_port()
    conf = """Port %d
ListenAddress 127.0.0.1
HostKey %s/host_key
PidFile %s/sshd.pid
AuthorizedKeysFile %s/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
AllowTcpForwarding yes
Compression no
Ciphers %s
LogLevel INFO
""" % (sp, d, d, d, SSH_CIPHER)
    cpath = _write(os.path.join(d, "sshd_config"), conf)
    sshd = Proc("sshd", [sshd_bin, "-D", "-e", "-f", cpath], ctx.logdir, port=sp,
                probe="listen")
    sshd.conf = conf
    sshd.start()
    lp = free_port()
    user = getpass.getuser()
    ssh = Proc("ssh-L", ["ssh", "-N", "-F", "/dev/null", "-c", SSH_CIPHER,
                         "-o", "Compression=no", "-o", "BatchMode=yes",
                         "-o", "IdentitiesOnly=yes", "-i", os.path.join(d, "user_key"),
                         "-o", "StrictHostKeyChecking=accept-new",
                         "-o", "UserKnownHostsFile=%s/known_hosts" % d,
                         "-o", "GlobalKnownHostsFile=/dev/null",
                         "-o", "ExitOnForwardFailure=yes",
                         "-L", "127.0.0.1:%d:127.0.0.1:%d" % (lp, target_port),
                         "-p", sp, "%s@127.0.0.1" % user],
               ctx.logdir, port=lp, probe="listen")
    ssh.conf = None
    try:
        ssh.start()
    except BaseException:
        sshd.stop()
        raise
    return sshd, ssh, lp


def stunnel_pair(ctx, target_port, certs):
    """stunnel client (accept LP) -> stunnel server (TLS, server cert of the
    tunnel section) -> 127.0.0.1:target_port. Returns (server, client, LP)."""
    d = _dir(ctx, "stunnel")
    sp, lp = free_port(), free_port()
    sconf = """foreground = yes
pid =
debug = info
[bench-server]
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
cert = %s
key = %s
""" % (sp, target_port, certs["srv.pem"], certs["srv.key"])
    cconf = """foreground = yes
pid =
debug = info
[bench-client]
client = yes
accept = 127.0.0.1:%d
connect = 127.0.0.1:%d
CAfile = %s
verifyChain = yes
checkIP = 127.0.0.1
""" % (lp, sp, certs["ca.pem"])
    spath = _write(os.path.join(d, "server.conf"), sconf)
    cpath = _write(os.path.join(d, "client.conf"), cconf)
    exe = "stunnel4" if shutil.which("stunnel4") else "stunnel"
    s = Proc("stunnel-server", [exe, spath], ctx.logdir, port=sp, probe="listen")
    s.conf = sconf
    s.start()
    c = Proc("stunnel-client", [exe, cpath], ctx.logdir, port=lp, probe="listen")
    c.conf = cconf
    try:
        c.start()
    except BaseException:
        s.stop()
        raise
    return s, c, lp


# --- L4 forwarders (l4 section) ----------------------------------------------------
NGINX_STREAM_SO = "/usr/lib/nginx/modules/ngx_stream_module.so"


def ours_stream(ctx, target_port, udp=False, workers=1, name="l4-ours"):
    """Our [stream] TCP forward to 127.0.0.1:target_port (and, with udp, a UDP
    server on the same port to the same target port)."""
    ours = ctx.ours_bin()
    d = _dir(ctx, name)
    port = free_port()
    lines = ["disable_control = true"]
    if workers:
        lines.append("workers = %d" % workers)
    lines += ["[[stream.server]]", 'bind_addr = "127.0.0.1:%d"' % port,
              'proxy_url = "tcp://127.0.0.1:%d"' % target_port]
    if udp:
        lines += ["[[stream.server]]", 'bind_addr = "127.0.0.1:%d"' % port,
                  'bind_mode = "udp"', 'proxy_url = "udp://127.0.0.1:%d"' % target_port]
    conf = "\n".join(lines) + "\n"
    path = _write(os.path.join(d, "stream.toml"), conf)
    p = Proc(name, [ours, "run", "-c", path, "--disable-stdout"], ctx.logdir, port=port,
             cwd=d)
    p.conf = conf
    return p.start()


def nginx_stream(ctx, target_port, udp=False, workers=1):
    """nginx `stream` proxy_pass (TCP, and UDP on the same port with udp)."""
    from .ctx import Skip
    if not os.path.exists(NGINX_STREAM_SO):
        raise Skip("nginx stream module not installed (libnginx-mod-stream)")
    prefix = _dir(ctx, "nginx-stream")
    os.makedirs(os.path.join(prefix, "tmp"), exist_ok=True)
    port = free_port()
    user = "user root;\n" if os.geteuid() == 0 else ""
    udp_srv = ("    server { listen 127.0.0.1:%d udp; proxy_pass 127.0.0.1:%d; "
               "proxy_timeout 60s; }\n" % (port, target_port)) if udp else ""
    conf = """load_module %s;
%sworker_processes %d;
worker_rlimit_nofile 65536;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 16384; }
stream {
    server { listen 127.0.0.1:%d backlog=4096; proxy_pass 127.0.0.1:%d; }
%s}
""" % (NGINX_STREAM_SO, user, workers, prefix, prefix, port, target_port, udp_srv)
    path = _write(os.path.join(prefix, "nginx.conf"), conf)
    p = Proc("nginx-stream", ["nginx", "-p", prefix + "/", "-c", path, "-e",
                              prefix + "/error.log"], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def socat_fwd(ctx, target_port, udp=False):
    """socat TCP (fork per connection) and, with udp, a UDP forward on the
    same port (one socat per peer, fork)."""
    from .ctx import Skip
    if shutil.which("socat") is None:
        raise Skip("socat not installed")
    port = free_port()
    p = Proc("socat", ["socat", "TCP4-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr,backlog=4096"
                       % port, "TCP4:127.0.0.1:%d" % target_port], ctx.logdir, port=port)
    p.conf = None
    p.start()
    if udp:
        u = Proc("socat-udp", ["socat", "-T", "60", "UDP4-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr"
                               % port, "UDP4:127.0.0.1:%d" % target_port], ctx.logdir)
        u.start()
        p.extra = [u]
    return p
