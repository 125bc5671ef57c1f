"""TLS trust of the tunnel carrier without a CA: a server with `tc` and no
certificate keeps a key pair of its own in its state directory; a client
with `ts` and no `ca` trusts the server's certificate on first use (a
known_hosts file, the SSH model), or only the one of `server_fingerprint`;
wmproxy's own config pair (both ends naming one self-signed pair) attaches."""

import hashlib
import os
import re
import ssl
import stat
import subprocess

from conftest import BIN
from helpers.net import free_port
from helpers.origin import pattern
from helpers.ref import need_ref, ref_file
from helpers.traffic import http_get
from helpers.tunnel import make_certs, wait_log, write_config

FP_RE = re.compile(r"SHA256:[0-9a-f]{64}")


def cert_fp(path):
    """SHA256:<hex> of the first certificate in a PEM file."""
    with open(path) as f:
        der = ssl.PEM_cert_to_DER_cert(f.read())
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def known_hosts(tmp_path):
    """The default known_hosts of the test's processes (conftest sets XDG)."""
    return str(tmp_path / "xdg-config" / "wmproxy" / "known_hosts")


def state_dir(tmp_path):
    return str(tmp_path / "xdg-state" / "wmproxy")


def quick_server(wmproxy, port, *extra):
    """wmproxy's README: `wmproxy proxy --user u --pass p -b 0.0.0.0:8091 --tc`
    (on loopback, without the control API)."""
    return wmproxy(["proxy", "--user", "u", "--pass", "p", "-b", "127.0.0.1:%d" % port, "--tc",
                    "--workers", "2", "--grace", "1", "--disable-control"] + list(extra), port=port)


def quick_client(wmproxy, sport, *extra):
    """wmproxy's README: `wmproxy proxy -b 127.0.0.1:8090 -S host:8091 --ts`.
    Our carrier authenticates with the server's credentials (wmproxy's
    carrier does not authenticate at all), hence --user/--pass."""
    ep = free_port()
    p = wmproxy(["proxy", "-b", "127.0.0.1:%d" % ep, "-S", "127.0.0.1:%d" % sport, "--ts",
                 "--user", "u", "--pass", "p", "--workers", "2", "--grace", "1",
                 "--disable-control"] + list(extra), port=ep)
    p.entry = ep
    return p


def get_ok(entry, origin, n=5000, seed=3):
    r = http_get(entry, origin.port, "/bytes/%d?seed=%d" % (n, seed), "u", "p")
    assert r.status == 200 and r.body == pattern(n, seed)


def get_fails(entry, origin):
    try:
        r = http_get(entry, origin.port, "/bytes/10?seed=1", "u", "p", timeout=5)
    except (OSError, EOFError, ValueError):
        return True
    return r.status != 200


def test_quick_start_without_certificates_trusts_on_first_use(wmproxy, tmp_path, origin):
    sp = free_port()
    srv = quick_server(wmproxy, sp)
    crt = os.path.join(state_dir(tmp_path), "tunnel.crt")
    key = os.path.join(state_dir(tmp_path), "tunnel.key")
    fp = cert_fp(crt)
    assert wait_log(srv, fp), srv.log()  # the server names its fingerprint
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(state_dir(tmp_path)).st_mode) == 0o700
    cli = quick_client(wmproxy, sp)
    assert wait_log(srv, "attached"), srv.log() + cli.log()
    assert wait_log(cli, "tunnel: connected"), cli.log()
    get_ok(cli.entry, origin)
    # the pin: file, line, and a warning that names the fingerprint
    with open(known_hosts(tmp_path)) as f:
        assert f.read() == "127.0.0.1:%d %s\n" % (sp, fp)
    assert wait_log(cli, "on first use: pinned " + fp), cli.log()[-3000:]
    assert "WARN" in [l for l in cli.log().splitlines() if "on first use: pinned " + fp in l][0]
    assert stat.S_IMODE(os.stat(known_hosts(tmp_path)).st_mode) == 0o600


def test_restart_keeps_the_certificate_and_a_new_one_is_refused(wmproxy, tmp_path, origin):
    sp = free_port()
    srv = quick_server(wmproxy, sp)
    fp = cert_fp(os.path.join(state_dir(tmp_path), "tunnel.crt"))
    cli = quick_client(wmproxy, sp)
    assert wait_log(cli, "tunnel: connected"), cli.log()
    # a restart keeps the key pair: the client reconnects on its own
    srv.stop()
    srv = quick_server(wmproxy, sp)
    assert wait_log(srv, fp), srv.log()[-3000:]
    assert cert_fp(os.path.join(state_dir(tmp_path), "tunnel.crt")) == fp
    assert wait_log(cli, "tunnel: connected", count=2, timeout=20), cli.log()
    get_ok(cli.entry, origin)
    # another key pair on that address (a new state dir): refused, and
    # the message says how to accept it
    srv.stop()
    srv = quick_server(wmproxy, sp, "--state-dir", str(tmp_path / "other-state"))
    new = cert_fp(str(tmp_path / "other-state" / "tunnel.crt"))
    assert new != fp
    assert wait_log(cli, "CERTIFICATE CHANGED", timeout=20), cli.log()
    assert wait_log(cli, "CERTIFICATE CHANGED"), cli.log()[-3000:]
    line = [l for l in cli.log().splitlines() if "CERTIFICATE CHANGED" in l][0]
    assert "ERROR" in line and "it is now " + new in line and "pins " + fp in line
    assert "delete line 1 of %s" % known_hosts(tmp_path) in line
    assert 'server_fingerprint = "%s"' % new in line
    assert get_fails(cli.entry, origin)
    # the handshake failed: no credentials, no registration went over
    assert wait_log(srv, "handshake failed"), srv.log()
    assert "attached" not in srv.log() and "credentials" not in srv.log(), srv.log()
    with open(known_hosts(tmp_path)) as f:
        assert f.read() == "127.0.0.1:%d %s\n" % (sp, fp)
    # accepting it the SSH way: delete the line, the next start pins anew
    cli.stop()
    os.unlink(known_hosts(tmp_path))
    cli = quick_client(wmproxy, sp)
    assert wait_log(cli, "tunnel: connected"), cli.log()
    get_ok(cli.entry, origin)
    with open(known_hosts(tmp_path)) as f:
        assert f.read() == "127.0.0.1:%d %s\n" % (sp, new)


def test_server_fingerprint_turns_tofu_off(wmproxy, tmp_path, origin):
    sp = free_port()
    quick_server(wmproxy, sp)
    fp = cert_fp(os.path.join(state_dir(tmp_path), "tunnel.crt"))
    wrong = "SHA256:" + "ab" * 32
    # flags: a wrong fingerprint is refused
    bad = quick_client(wmproxy, sp, "--server-fingerprint", wrong)
    assert wait_log(bad, "not the server_fingerprint " + wrong), bad.log()
    assert "tunnel: connected" not in bad.log()
    assert get_fails(bad.entry, origin)
    bad.stop()
    # config (TOML and YAML): the right one, typed as openssl prints it
    colons = ":".join(fp[7:][i:i + 2] for i in range(0, 64, 2)).upper()
    for n, (kind, value) in enumerate((("toml", fp), ("yaml", "SHA256:" + colons))):
        ep = free_port()
        path = str(tmp_path / ("cli%d.%s" % (n, kind)))
        body = {"bind_addr": "127.0.0.1:%d" % ep, "server": "127.0.0.1:%d" % sp, "ts": True,
                "username": "u", "password": "p", "server_fingerprint": value}
        if kind == "toml":
            write_config(path, body, top={"disable_control": True})
        else:
            with open(path, "w") as f:
                f.write("disable_control: true\nproxy:\n")
                for k, v in body.items():
                    f.write("  %s: %s\n" % (k, "true" if v is True else '"%s"' % v))
        cli = wmproxy(["run", "-c", path, "--workers", "2", "--grace", "1"], port=ep)
        assert wait_log(cli, "tunnel: connected"), cli.log()
        get_ok(ep, origin)
        cli.stop()
    assert not os.path.exists(known_hosts(tmp_path))  # TOFU was off throughout
    # a malformed fingerprint is a config error with its place
    path = write_config(tmp_path / "badfp.toml", {"server": "127.0.0.1:1", "ts": True,
                                                  "server_fingerprint": "SHA256:abc"})
    r = subprocess.run([BIN, "check", "-c", path], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "badfp.toml:4:22: proxy.server_fingerprint: expected" in r.stderr, r.stderr


def test_ca_turns_tofu_off(wmproxy, tmp_path, origin):
    certs = make_certs(str(tmp_path / "certs"))
    sp = free_port()
    srv = wmproxy(["proxy", "--user", "u", "--pass", "p", "-b", "127.0.0.1:%d" % sp, "--tc",
                   "--cert", certs["srv.pem"], "--key", certs["srv.key"], "--workers", "2",
                   "--disable-control"], port=sp)
    # a CA that did not sign the server's certificate: refused, not pinned
    bad = quick_client(wmproxy, sp, "--ca", certs["rogue-ca.pem"])
    assert wait_log(bad, "certificate verify failed"), bad.log()
    assert "tunnel: connected" not in bad.log() and "first use" not in bad.log()
    bad.stop()
    # the right CA, but the name checked is not the certificate's
    bad = quick_client(wmproxy, sp, "--ca", certs["ca.pem"], "--domain", "other.test")
    assert wait_log(bad, "hostname mismatch"), bad.log()
    bad.stop()
    # the right CA and server_fingerprint: both must pass
    bad = quick_client(wmproxy, sp, "--ca", certs["ca.pem"], "--server-fingerprint",
                       "SHA256:" + "cd" * 32)
    assert wait_log(bad, "not the server_fingerprint"), bad.log()
    bad.stop()
    cli = quick_client(wmproxy, sp, "--ca", certs["ca.pem"], "--server-fingerprint",
                       cert_fp(certs["srv.pem"]))
    assert wait_log(cli, "tunnel: connected"), cli.log()
    cli.stop()
    # the right CA: normal verification, nothing pinned
    cli = quick_client(wmproxy, sp, "--ca", certs["ca.pem"])
    assert wait_log(cli, "tunnel: connected"), cli.log()
    get_ok(cli.entry, origin)
    assert not os.path.exists(known_hosts(tmp_path))
    assert wait_log(srv, "attached"), srv.log()[-3000:]


def test_known_hosts_and_state_dir_keys(wmproxy, tmp_path, origin):
    """The paths from the config; a state dir that cannot be written
    gives a key pair for the run only (warned), not a failed start."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cp, ep = free_port(), free_port()
    srv_path = write_config(tmp_path / "srv.toml", {
        "bind_addr": "127.0.0.1:%d" % cp, "mode": "server", "tc": True, "username": "u",
        "password": "p", "state_dir": str(blocker / "state")}, top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_path, "--workers", "2"], port=cp)
    assert wait_log(srv, "lasts until the process ends"), srv.log()
    kh = str(tmp_path / "kh" / "hosts")
    cli_path = write_config(tmp_path / "cli.toml", {
        "bind_addr": "127.0.0.1:%d" % ep, "server": "127.0.0.1:%d" % cp, "ts": True,
        "username": "u", "password": "p", "known_hosts": kh}, top={"disable_control": True})
    cli = wmproxy(["run", "-c", cli_path, "--workers", "2"], port=ep)
    assert wait_log(cli, "tunnel: connected"), cli.log()
    get_ok(ep, origin)
    assert wait_log(srv, "proxy.tc"), srv.log()[-3000:]
    fp = FP_RE.search([l for l in srv.log().splitlines() if "proxy.tc" in l][0]).group(0)
    with open(kh) as f:
        assert f.read() == "127.0.0.1:%d %s\n" % (cp, fp)
    assert not os.path.exists(known_hosts(tmp_path))
    # `check` writes nothing: no key pair in the default state dir
    chk = write_config(tmp_path / "chk.toml", {"bind_addr": "127.0.0.1:%d" % free_port(),
                                               "mode": "server", "tc": True})
    r = subprocess.run([BIN, "check", "-c", chk], capture_output=True, text=True, timeout=20,
                       env=dict(os.environ, XDG_STATE_HOME=str(tmp_path / "chk-state")))
    assert r.returncode == 0, r.stderr
    assert not os.path.exists(str(tmp_path / "chk-state"))


def test_empty_known_hosts_and_state_dir_mean_the_defaults(wmproxy, tmp_path, origin):
    """`known_hosts = ""` and `state_dir = ""` are unset, as wmproxy's
    configs write an unset path (`root = ""`): the default places are used.
    They used to name an empty path: the server's key pair lasted for the
    run only, with a warning, and the client's pins were kept in memory."""
    cp, ep = free_port(), free_port()
    srv_path = write_config(tmp_path / "srv.toml", {
        "bind_addr": "127.0.0.1:%d" % cp, "mode": "server", "tc": True, "username": "u",
        "password": "p", "state_dir": ""}, top={"disable_control": True})
    srv = wmproxy(["run", "-c", srv_path, "--workers", "2"], port=cp)
    cli_path = write_config(tmp_path / "cli.toml", {
        "bind_addr": "127.0.0.1:%d" % ep, "server": "127.0.0.1:%d" % cp, "ts": True,
        "username": "u", "password": "p", "known_hosts": ""}, top={"disable_control": True})
    cli = wmproxy(["run", "-c", cli_path, "--workers", "2"], port=ep)
    assert wait_log(cli, "tunnel: connected"), cli.log()
    get_ok(ep, origin)
    assert "lasts until the process ends" not in srv.log()
    assert os.path.isdir(state_dir(tmp_path)), srv.log()
    with open(known_hosts(tmp_path)) as f:
        assert f.read().startswith("127.0.0.1:%d SHA256:" % cp)


def _ref(name, subst):
    with open(ref_file(name)) as f:
        text = f.read()
    for a, b in subst:
        assert a in text, a
        text = text.replace(a, b)
    return text


@need_ref
def test_wmproxy_reference_pair_with_one_self_signed_pair(wmproxy, tmp_path, origin):
    """config/server.toml + config/client.toml of wmproxy, both naming the
    same self-signed cert/key (mutual TLS, no ca): they attach and carry
    traffic, as with wmproxy."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "pair.key", "-out",
                    "pair.pem", "-days", "2", "-subj", "/CN=soft.wm-proxy.com"],
                   cwd=str(tmp_path), check=True, capture_output=True, timeout=30)
    pair = 'cert = "%s"\nkey = "%s"\n' % (tmp_path / "pair.pem", tmp_path / "pair.key")
    cp, ep, ctl = free_port(), free_port(), free_port()
    mh, mt, ms = free_port(), free_port(), free_port()
    srv_text = _ref("server.toml", [
        ("[proxy]\n", "[proxy]\n" + pair), ("0.0.0.0:8091", "127.0.0.1:%d" % cp),
        ("0.0.0.0:8001", "127.0.0.1:%d" % mh), ("0.0.0.0:8002", "127.0.0.1:%d" % mt),
        ("0.0.0.0:8003", "127.0.0.1:%d" % ms)])
    cli_text = _ref("client.toml", [
        ("[proxy]\n", "[proxy]\n" + pair), ("127.0.0.1:8838", "127.0.0.1:%d" % ctl),
        ("127.0.0.1:8091", "127.0.0.1:%d" % cp), ("0.0.0.0:8090", "127.0.0.1:%d" % ep),
        ("127.0.0.1:8080", "127.0.0.1:%d" % origin.port)])
    (tmp_path / "server.toml").write_text(srv_text)
    (tmp_path / "client.toml").write_text(cli_text)
    srv = wmproxy(["run", "-c", str(tmp_path / "server.toml"), "--workers", "2",
                   "--disable-control"], port=cp)
    cli = wmproxy(["run", "-c", str(tmp_path / "client.toml"), "--workers", "2"], port=ep)
    assert wait_log(srv, "attached (TLS)"), srv.log() + cli.log()
    assert wait_log(cli, "tunnel: connected"), cli.log()
    # two-level proxy, with the server's credentials (under 64 KiB: a
    # longer body cut by the server's close is a tunnel bug of its own)
    r = http_get(ep, origin.port, "/bytes/30000?seed=9", "wmproxy", "wmproxy")
    assert r.status == 200 and r.body == pattern(30000, 9)
    # its own certificate, not a pin: nothing written
    assert not os.path.exists(known_hosts(tmp_path))
    # a client with another self-signed pair is refused by the server
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", "o.key", "-out", "o.pem",
                    "-days", "2", "-subj", "/CN=other"],
                   cwd=str(tmp_path), check=True, capture_output=True, timeout=30)
    ep2, ctl2 = free_port(), free_port()
    other = cli_text.replace(str(tmp_path / "pair."), str(tmp_path / "o.")).replace(
        "127.0.0.1:%d" % ep, "127.0.0.1:%d" % ep2).replace("127.0.0.1:%d" % ctl,
                                                         "127.0.0.1:%d" % ctl2)
    (tmp_path / "other.toml").write_text(other)
    before = srv.log().count("attached")
    wmproxy(["run", "-c", str(tmp_path / "other.toml"), "--workers", "2"], port=ep2)
    assert wait_log(srv, "handshake failed"), srv.log()
    assert srv.log().count("attached") == before


def test_known_hosts_with_a_nul_byte_is_refused_not_repinned(wmproxy, tmp_path, origin):
    """A NUL byte (a hand edit, a damaged disk) hid every line after it:
    the pin below was not seen, and the server's certificate, whatever it
    was, was trusted again on first use at each connection."""
    sp = free_port()
    quick_server(wmproxy, sp)
    fp = cert_fp(os.path.join(state_dir(tmp_path), "tunnel.crt"))
    old = "SHA256:" + "ab" * 32
    kh = tmp_path / "kh"
    kh.write_bytes(b"# pins\x00\n127.0.0.1:%d %s\n" % (sp, old.encode()))
    cli = quick_client(wmproxy, sp, "--known-hosts", str(kh))
    assert wait_log(cli, "NUL byte"), cli.log()
    line = [l for l in cli.log().splitlines() if "NUL byte" in l][0]
    assert "ERROR" in line and "%s line 1" % kh in line, line
    assert "on first use: pinned" not in cli.log() and "tunnel: connected" not in cli.log()
    assert get_fails(cli.entry, origin)
    assert kh.read_bytes() == b"# pins\x00\n127.0.0.1:%d %s\n" % (sp, old.encode())
    assert fp not in kh.read_text()


def test_known_hosts_that_is_not_a_file_is_refused(wmproxy, tmp_path, origin):
    """A FIFO at the known_hosts path blocked the handshake in open(2)
    until some writer came (the client hung, silently); a directory read
    as an empty file: the certificate was trusted, pinned in memory only.
    Both are now refused at the handshake with an ERROR that says why."""
    sp = free_port()
    quick_server(wmproxy, sp)
    fifo = tmp_path / "fifo"
    os.mkfifo(str(fifo))
    folder = tmp_path / "folder"
    folder.mkdir()
    for path, why in ((fifo, "not a regular file"), (folder, "is a directory")):
        cli = quick_client(wmproxy, sp, "--known-hosts", str(path))
        msg = "cannot check the pinned certificate: %s: cannot read: %s" % (path, why)
        assert wait_log(cli, msg), cli.log()
        assert "ERROR" in [l for l in cli.log().splitlines() if msg in l][0]
        # it keeps retrying: not stuck in the first attempt
        assert wait_log(cli, msg, count=2, timeout=20), cli.log()
        assert "first use" not in cli.log().replace("trusted on first use (pinned", "")
        assert "tunnel: connected" not in cli.log()
        assert get_fails(cli.entry, origin)
        cli.stop()
    assert stat.S_ISFIFO(os.stat(str(fifo)).st_mode) and os.listdir(str(folder)) == []


def test_clients_sharing_known_hosts_pin_each_server_once(wmproxy, tmp_path, origin):
    """Four clients of two servers, one known_hosts, started together: the
    lock and the re-check under it keep one line per server, none lost."""
    ports = [free_port(), free_port()]
    fps = []
    for i, sp in enumerate(ports):
        quick_server(wmproxy, sp, "--state-dir", str(tmp_path / ("st%d" % i)))
        fps.append(cert_fp(str(tmp_path / ("st%d" % i) / "tunnel.crt")))
    kh = tmp_path / "shared" / "known_hosts"
    clis = [quick_client(wmproxy, ports[i % 2], "--known-hosts", str(kh)) for i in range(4)]
    for cli in clis:
        assert wait_log(cli, "tunnel: connected", timeout=20), cli.log()
    lines = sorted(kh.read_text().splitlines())
    assert lines == sorted("127.0.0.1:%d %s" % (sp, fp) for sp, fp in zip(ports, fps)), lines
    for cli in clis:
        get_ok(cli.entry, origin)


def test_state_key_readable_by_others_is_warned(wmproxy, tmp_path):
    """The kept tunnel.key, made 0600, loaded without a word after a chmod
    (a copy, a backup restore) made it readable by every local user."""
    sp = free_port()
    srv = quick_server(wmproxy, sp)
    key = os.path.join(state_dir(tmp_path), "tunnel.key")
    assert wait_log(srv, "proxy.tc"), srv.log()
    assert "readable by others" not in srv.log()
    srv.stop()
    os.chmod(key, 0o644)
    srv = quick_server(wmproxy, sp)
    msg = "proxy.state_dir: %s is readable by others (mode 644): chmod 600 it" % key
    assert wait_log(srv, msg), srv.log()
    assert "WARN" in [l for l in srv.log().splitlines() if msg in l][0]
