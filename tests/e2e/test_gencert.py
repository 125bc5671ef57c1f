"""`wmproxy gen-cert`: a private CA, server and client certificates that
make a mutual-TLS tunnel work as the README's recipe shows."""

import os
import socket
import ssl
import stat
import subprocess

import pytest

from conftest import BIN
from helpers.net import connect, free_port, recv_exact, wait_port, wait_until
from helpers.tunnel import wait_log, write_config


def gen(*args):
    r = subprocess.run([BIN, "gen-cert"] + list(args), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_gen_cert_files_and_usage(tmp_path):
    d = str(tmp_path / "ca")
    out = gen("--ca-dir", d, "server", "localhost", "127.0.0.1", "::1")
    assert "made CA" in out and "SHA256:" in out
    out = gen("-d", d, "client", "edge-1")
    assert "made CA" not in out  # the CA is reused
    for name, mode in (("ca.key", 0o600), ("server.key", 0o600), ("client-edge-1.key", 0o600),
                       ("ca.crt", 0o644), ("server.crt", 0o644)):
        assert stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode) == mode, name
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           os.path.join(d, "server.crt")], capture_output=True,
                          text=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    assert "TLS Web Server Authentication" in text and "CA:FALSE" in text
    assert "prime256v1" in text
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           os.path.join(d, "client-edge-1.crt")], capture_output=True,
                          text=True).stdout
    assert "TLS Web Client Authentication" in text
    r = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(d, "ca.crt"),
                        os.path.join(d, "server.crt"), os.path.join(d, "client-edge-1.crt")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # bad input: a clear usage error, never a file outside the directory
    for bad in (["client"], ["client", "../x"], ["bogus", "x"], ["--days", "0", "server", "a"]):
        r = subprocess.run([BIN, "gen-cert", "-d", d] + bad, capture_output=True, text=True)
        assert r.returncode == 2, bad
    assert not os.path.exists(str(tmp_path / "x.crt"))


def test_gen_cert_failed_write_keeps_the_old_pair(tmp_path):
    """Re-issuing the server certificate when the certificate file cannot be
    written (here its temporary file's name is taken by a directory) fails
    and replaces nothing: the old key and certificate still match. It used
    to leave the new key beside the old certificate."""
    d = str(tmp_path / "pki")
    gen("-d", d, "server", "a.test")
    key, crt = os.path.join(d, "server.key"), os.path.join(d, "server.crt")
    old = (open(key).read(), open(crt).read())
    os.mkdir(crt + ".tmp")
    r = subprocess.run([BIN, "gen-cert", "-d", d, "server", "b.test"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "server.crt" in r.stderr, r.stderr
    assert (open(key).read(), open(crt).read()) == old
    assert not os.path.exists(key + ".tmp")
    os.rmdir(crt + ".tmp")
    gen("-d", d, "server", "b.test")  # then it works, and the pair matches
    assert open(key).read() != old[0]
    r = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", crt], capture_output=True,
                       text=True)
    assert "DNS:b.test" in r.stdout
    pub = [subprocess.run(["openssl", "pkey", "-pubout", "-in", p], capture_output=True,
                          text=True).stdout for p in (key,)]
    pub.append(subprocess.run(["openssl", "x509", "-pubkey", "-noout", "-in", crt],
                              capture_output=True, text=True).stdout)
    assert pub[0] and pub[0] == pub[1]


def test_gen_cert_mutual_tls_tunnel(wmproxy, tmp_path, echo):
    d = str(tmp_path / "pki")
    gen("-d", d, "server", "127.0.0.1")
    gen("-d", d, "client", "edge")
    cp, tp = free_port(), free_port()
    srv_conf = write_config(tmp_path / "srv.toml", {
        "mode": "server", "bind_addr": "127.0.0.1:%d" % cp, "map_tcp_bind": "127.0.0.1:%d" % tp,
        "tc": True, "two_way_tls": True, "cert": d + "/server.crt", "key": d + "/server.key",
        "ca": d + "/ca.crt"}, (), top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_conf], port=cp)
    ep = free_port()
    cli_conf = write_config(tmp_path / "cli.toml", {
        "bind_addr": "127.0.0.1:%d" % ep, "server": "127.0.0.1:%d" % cp,
        "ts": True, "two_way_tls": True, "cert": d + "/client-edge.crt",
        "key": d + "/client-edge.key", "ca": d + "/ca.crt"},
        [{"name": "t", "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port}],
        top={"disable_control": True})
    wmproxy(["run", "-c", cli_conf], port=ep)
    assert wait_log(srv, "attached"), srv.log()
    assert wait_port("127.0.0.1", tp, 10)
    s = connect(tp)
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.close()


def _session_of(s):
    """The TLS session of s once its tickets (TLS 1.3: after the handshake)
    came in; the server of a carrier waits for us, so nothing else does."""
    s.setblocking(False)

    def ticket():
        try:
            s.recv(1)
        except (ssl.SSLWantReadError, BlockingIOError):
            pass
        return s.session if s.session is not None and s.session.has_ticket else None
    return wait_until(ticket, what="a session ticket")


@pytest.mark.parametrize("version", ["TLSv1_3", "TLSv1_2"])
def test_mutual_tls_server_resumes_sessions(wmproxy, tmp_path, version):
    """A client resuming its session with a two_way_tls server is resumed
    (the peer's certificate comes with the session); without a session id
    context OpenSSL refused every such handshake with an internal error."""
    d = str(tmp_path / "pki")
    gen("-d", d, "server", "127.0.0.1")
    gen("-d", d, "client", "edge")
    cp = free_port()
    srv_conf = write_config(tmp_path / "srv.toml", {
        "mode": "server", "bind_addr": "127.0.0.1:%d" % cp, "tc": True, "two_way_tls": True,
        "cert": d + "/server.crt", "key": d + "/server.key", "ca": d + "/ca.crt"}, (),
        top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_conf], port=cp)
    ctx = ssl.create_default_context(cafile=d + "/ca.crt")
    ctx.load_cert_chain(d + "/client-edge.crt", d + "/client-edge.key")
    ctx.minimum_version = ctx.maximum_version = getattr(ssl.TLSVersion, version)

    def handshake(session=None):
        raw = socket.create_connection(("127.0.0.1", cp), timeout=10)
        return ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session)

    first = handshake()
    session = _session_of(first)
    first.close()
    for _ in range(2):
        again = handshake(session)
        assert again.session_reused
        again.close()
    assert "session id context" not in srv.log()


def test_gen_cert_never_replaces_a_ca_key(tmp_path):
    """ca.crt gone (moved, deleted by mistake) but ca.key still there: a
    new CA was made and its key written over the old one, so the old CA
    could sign nothing more. Now it is refused, and the key is kept."""
    d = str(tmp_path / "ca")
    gen("-d", d, "server", "localhost")
    key = os.path.join(d, "ca.key")
    with open(key, "rb") as f:
        before = f.read()
    os.rename(os.path.join(d, "ca.crt"), str(tmp_path / "ca.crt.bak"))
    r = subprocess.run([BIN, "gen-cert", "-d", d, "client", "edge-2"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "%s: there is no %s: put it back, or move the key away to make a new CA" % (
        key, os.path.join(d, "ca.crt")) in r.stderr, r.stderr
    with open(key, "rb") as f:
        assert f.read() == before
    assert not os.path.exists(os.path.join(d, "ca.crt"))
    assert not os.path.exists(os.path.join(d, "client-edge-2.crt"))


def test_gen_cert_long_and_bracketed_names(tmp_path):
    """A valid DNS name longer than 64 bytes first failed with "asn1 ...
    string too long" (the subject's CN has that limit), "[::1]" went in as
    a DNS name no client would match, "" gave "string too short"."""
    d = str(tmp_path / "ca")
    long_name = "a" * 63 + ".example.com"
    gen("-d", d, "server", long_name, "[::1]", "short.test")
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in",
                           os.path.join(d, "server.crt")], capture_output=True,
                          text=True).stdout
    assert "DNS:" + long_name in text and "DNS:short.test" in text, text
    assert "IP Address:0:0:0:0:0:0:0:1" in text and "[::1]" not in text, text
    assert "Subject:CN=::1\n" in text.replace(" ", ""), text  # the first name that fits
    r = subprocess.run([BIN, "gen-cert", "-d", d, "server", "ok.test", ""], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 2 and 'bad name ""' in r.stderr, r.stderr
