"""Config writers and starters for every daemon the sections use.

All daemons run in the foreground as children of bench.py, listen on
127.0.0.1 on a port chosen at runtime and keep config, pid and logs in the
run's temp dir. Each function returns a started Proc (port open) and sets
p.cmdline (shown in the docs) and p.conf (the config text, if any).
"""
import os
import sys

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
    """Docroot with /1k (1024 bytes), /tiny (16 bytes) and, if big, /big
    (ctx.big_bytes, a regular file of real data blocks, written once)."""
    d = _dir(ctx, "www")
    p = os.path.join(d, "1k")
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write((b"0123456789abcdef" * 64)[:1023] + b"\n")
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


def nginx_reverse(ctx, upstream_port, workers=1):
    """Reverse proxy with a keep-alive upstream pool (the reference row)."""
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
        }
    }
""" % (upstream_port, port)
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


def haproxy_tcp(ctx, backend_port):
    d = _dir(ctx, "haproxy")
    port = free_port()
    conf = """global
    maxconn 8000
defaults
    mode tcp
    timeout connect 5s
    timeout client 10m
    timeout server 10m
frontend fe
    bind 127.0.0.1:%d
    default_backend be
backend be
    server s1 127.0.0.1:%d
""" % (port, backend_port)
    path = _write(os.path.join(d, "haproxy.cfg"), conf)
    p = Proc("haproxy", ["haproxy", "-db", "-f", path], ctx.logdir, port=port)
    p.conf = conf
    return p.start()


def ours(ctx, name="wmproxy"):
    """Our proxy (HTTP proxy + CONNECT + SOCKS5 on one port). Raises
    ctx.Skip-compatible Skip('not built') when the binary is missing."""
    port = free_port()
    p = Proc(name, ctx.ours_argv(port), ctx.logdir, port=port)
    p.conf = None
    return p.start()


# --- helpers servers ---------------------------------------------------------
def idle_server(ctx):
    """Accepts and holds TCP connections without sending anything."""
    port = free_port()
    p = Proc("idle-server", [sys.executable,
                             os.path.join(BENCH_DIR, "tools", "idle_server.py"),
                             "--port", port], ctx.logdir, port=port)
    p.conf = None
    return p.start()
