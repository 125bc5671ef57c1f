"""Reverse proxy ([http]) test helpers: one config written once as a Python
dict and rendered as TOML or YAML (the same keys, both readers), a one-shot
HTTP/1.1 client, named backends, certificates and listening-socket counts.
Every wait is bounded."""

import hashlib
import http.server
import json
import os
import re
import socket
import ssl
import subprocess
import threading

from conftest import BIN
from helpers.net import connect, recv_all, wait_until

FORMATS = ("toml", "yaml")


class Words(str):
    """A header rule ("proxy + X-A {client_ip}"): a string in TOML, and in
    YAML wmproxy's own form, a flow list of words ([proxy, +, X-A, "{client_ip}"])."""


# Lists of tables written as [[...]] in TOML (the rest are inline): by key,
# except "server", which is [[http.server]] directly under [http] and an
# inline list of {addr, ...} in an upstream.
_AOT = {"location", "upstream"}

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")
_PLAIN_WORD = re.compile(r"^[A-Za-z0-9_.+/=-]+$")


def _key(k):
    return k if _BARE.match(k) else json.dumps(k)


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)  # a valid TOML basic string and YAML double-quoted one
    raise TypeError("unsupported value %r" % (v,))


def _toml_inline(v):
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (_key(k), _toml_inline(x)) for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_inline(x) for x in v) + "]"
    return _scalar(v)


def _is_aot(path, k, v):
    return (isinstance(v, list) and v and all(isinstance(x, dict) for x in v) and
            (k in _AOT or (k == "server" and path == ["http"])))


def _toml_table(d, path, out):
    subs, aots = [], []
    for k, v in d.items():
        if isinstance(v, dict) and not path and k == "http":
            subs.append((k, v))
        elif _is_aot(path, k, v):
            aots.append((k, v))
        else:
            out.append("%s = %s" % (_key(k), _toml_inline(v)))
    for k, v in subs:
        out.append("\n[%s]" % ".".join(_key(x) for x in path + [k]))
        _toml_table(v, path + [k], out)
    for k, v in aots:
        for e in v:
            out.append("\n[[%s]]" % ".".join(_key(x) for x in path + [k]))
            _toml_table(e, path + [k], out)


def to_toml(doc):
    out = []
    _toml_table(doc, [], out)
    return "\n".join(out) + "\n"


def _yaml_flow(v):
    if isinstance(v, Words):
        return "[" + ", ".join(w if _PLAIN_WORD.match(w) else json.dumps(w)
                               for w in v.split(" ")) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join("%s: %s" % (_key(k), _yaml_flow(x)) for k, x in v.items()) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(_yaml_flow(x) for x in v) + "]"
    return _scalar(v)


def _yaml_map(d, ind, out):
    pad = " " * ind
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.append("%s%s:" % (pad, _key(k)))
            _yaml_map(v, ind + 2, out)
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append("%s%s:" % (pad, _key(k)))
            for e in v:
                lines = []
                _yaml_map(e, ind + 4, lines)
                lines[0] = " " * (ind + 2) + "- " + lines[0][ind + 4:]
                out.extend(lines)
        else:
            out.append("%s%s: %s" % (pad, _key(k), _yaml_flow(v)))


def to_yaml(doc):
    out = ["# written by tests/e2e/helpers/revconf.py"]
    _yaml_map(doc, 0, out)
    return "\n".join(out) + "\n"


def render(doc, fmt):
    return to_toml(doc) if fmt == "toml" else to_yaml(doc)


def write_conf(tmp_path, doc, fmt, name="rev"):
    """Write doc as tmp_path/name.toml or .yaml (atomically: a reload never
    reads half a file); returns the path."""
    path = os.path.join(str(tmp_path), "%s.%s" % (name, fmt))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(render(doc, fmt))
    os.replace(tmp, path)
    return path


def top(http, cport=None, workers=2, **extra):
    """A whole config: the control API off (or on cport), workers, [http]."""
    doc = {"control": "127.0.0.1:%d" % cport} if cport else {"disable_control": True}
    doc["workers"] = workers
    doc.update(extra)
    doc["http"] = http
    return doc


# ---- clients ----

def get(port, path="/", host="a.test", headers=None, method="GET", body=b"", timeout=10,
        addr="127.0.0.1"):
    """One request on a new connection: (status, headers dict lower-case, body)."""
    s = connect(port, host=addr, timeout=timeout)
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: %s" % host, "Connection: close"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if body:
        lines.append("Content-Length: %d" % len(body))
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    data = recv_all(s)
    s.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    first, *hl = head.decode("latin-1").split("\r\n")
    hd = {}
    for h in hl:
        k, _, v = h.partition(":")
        hd[k.strip().lower()] = v.strip()
    return int(first.split()[1]), hd, rest


def wait_serving(port, host="a.test", path="/", addr="127.0.0.1"):
    def ok():
        try:
            get(port, path, host, addr=addr)
            return True
        except (OSError, IndexError, ValueError):
            return False
    wait_until(ok, what="reverse proxy on %s:%d" % (addr, port))


def ws_handshake(path="/ws", host="a.test"):
    return ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            % (path, host)).encode()


# ---- backends ----

class NamedBackend:
    """An HTTP/1.1 backend answering its name to any GET (counted in hits),
    except /health, which answers `status` (switchable)."""

    def __init__(self, name):
        me = self
        self.name = name
        self.status = 200
        self.hits = 0
        self.lock = threading.Lock()

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                if self.path.startswith("/health"):
                    code, body = me.status, b"h"
                else:
                    with me.lock:
                        me.hits += 1
                    code, body = 200, name.encode()
                # one write: a head and a body written apart meet Nagle and
                # the peer's delayed ACK (40 ms a request on keep-alive)
                self.wfile.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s"
                                 % (code, len(body), body))

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


# ---- TLS ----

def gencert(d, *names):
    """A CA and a server certificate for names under directory d (wmproxy
    gen-cert): d/ca.crt, d/server.crt, d/server.key."""
    os.makedirs(str(d), exist_ok=True)
    r = subprocess.run([BIN, "gen-cert", "--ca-dir", str(d), "server"] + list(names),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return str(d)


def tls_get(port, sni, path="/", host=None, cafile=None):
    """One HTTP/1.1 request over TLS with SNI sni: (sha256 of the server's
    certificate, raw response). With cafile the certificate is verified."""
    if cafile:
        ctx = ssl.create_default_context(cafile=cafile)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            fp = hashlib.sha256(s.getpeercert(binary_form=True)).hexdigest()
            s.sendall(b"GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                      % (path.encode(), (host or sni).encode()))
            return fp, recv_all(s)


def cert_fingerprint(pem_path):
    """sha256 of a PEM certificate's DER bytes (as tls_get reports it)."""
    with open(pem_path) as f:
        pem = f.read()
    end = "-----END CERTIFICATE-----"
    first = pem[pem.index("-----BEGIN CERTIFICATE-----"):pem.index(end) + len(end)]
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(first)).hexdigest()


# ---- sockets of the machine ----

def listening_sockets(port):
    """The listening TCP sockets on port, as (family, local address hex)
    rows of /proc/net/tcp and tcp6: one row per socket (SO_REUSEPORT
    siblings each have theirs)."""
    rows = []
    for fam in ("tcp", "tcp6"):
        try:
            with open("/proc/net/" + fam) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            addr, p = parts[1].rsplit(":", 1)
            if parts[3] == "0A" and int(p, 16) == port:
                rows.append((fam, addr))
    return rows
