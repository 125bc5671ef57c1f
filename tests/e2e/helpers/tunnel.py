"""Tunnel test helpers: certificates (made with the openssl CLI), node
configs, waiting for attachment."""

import os
import subprocess
import time


def _ssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certs(d):
    """A CA, a server cert for localhost/127.0.0.1, a client cert from the
    same CA, and a rogue CA with its own client cert. Returns paths."""
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    _ssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
         "-subj", "/CN=wm-test-ca", cwd=d)
    _ssl("req", "-x509", *ec, "-keyout", "rogue-ca.key", "-out", "rogue-ca.pem", "-days", "2",
         "-subj", "/CN=rogue-ca", cwd=d)
    with open(os.path.join(d, "srv.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,DNS:a.test,DNS:b.test,IP:127.0.0.1\n")
    with open(os.path.join(d, "cli.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ca, ext, cn in (("srv", "ca", "srv.ext", "localhost"),
                              ("cli", "ca", "cli.ext", "client-1"),
                              ("rogue", "rogue-ca", "cli.ext", "rogue")):
        _ssl("req", *ec, "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn,
             cwd=d)
        _ssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key",
             "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", ext, cwd=d)
    return {k: os.path.join(d, k) for k in (
        "ca.pem", "srv.pem", "srv.key", "cli.pem", "cli.key", "rogue.pem", "rogue.key",
        "rogue-ca.pem")}


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_config(path, proxy, mappings=(), top=None):
    lines = []
    for k, v in (top or {}).items():
        lines.append("%s = %s" % (k, toml_value(v)))
    lines.append("[proxy]")
    for k, v in proxy.items():
        lines.append("%s = %s" % (k, toml_value(v)))
    for m in mappings:
        lines.append("[[proxy.mappings]]")
        for k, v in m.items():
            lines.append("%s = %s" % (k, toml_value(v)))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def wait_log(proc, text, timeout=10, count=1):
    """Wait until text appears count times in the process log."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.log().count(text) >= count:
            return True
        if not proc.alive():
            break
        time.sleep(0.05)
    return False
