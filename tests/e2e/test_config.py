"""Config files: `wmproxy check` on the reference configs and on broken
files, TOML and YAML behaving the same, `run -c` / `config -c`, daemon with
pidfile, the --forever supervisor, and SIGHUP reload."""

import os
import re
import shutil
import signal
import subprocess

import pytest

from conftest import BIN
from helpers import control as ctl
from helpers.tunnel import wait_log
from helpers import socks
from helpers import traffic as tr
from helpers.http1 import Reader
from helpers.net import free_ports, connect, free_port, refused, wait_port
from helpers.ref import need_ref, ref_file

REF_FILES = ["client.toml", "client.yaml", "mapping_client.toml", "mapping_server.toml",
             "reverse.toml", "reverse.yaml", "server.toml", "server.yaml"]
DIAG = re.compile(r"^(warning: )?(.+?):(\d+):(\d+): (\S+): (.*)$")


def ports(n):
    return free_ports(n)


def check(path):
    """Run `wmproxy check -c path`: (exit code, errors, warnings, stdout,
    stderr); errors and warnings as (line, col, key, message)."""
    r = ctl.run(BIN, "check", "-c", path)
    errs, warns = [], []
    for ln in r.stderr.decode().splitlines():
        m = DIAG.match(ln)
        if m:
            (warns if m.group(1) else errs).append((int(m.group(3)), int(m.group(4)), m.group(5),
                                                    m.group(6)))
            assert m.group(2) == str(path), ln
    return r.returncode, errs, warns, r.stdout.decode(), r.stderr.decode()


# ---- check ----

@need_ref
@pytest.mark.parametrize("name", REF_FILES)
def test_check_reference_config(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # reverse.toml's log files are relative: made here
    path = tmp_path / name
    shutil.copy(ref_file(name), path)
    code, errs, warns, out, err = check(path)
    if name == "mapping_client.toml":
        # its control API listens on 0.0.0.0 without control_token: refused
        # (anyone could stop or reload the instance); with a token it loads
        assert code == 1 and len(errs) == 1, err
        assert errs[0][:3] == (1, 11, "control") and "beyond loopback" in errs[0][3], err
        path.write_text('control_token = "t"\n' + path.read_text())
        code, errs, _, out, err = check(path)
        assert code == 0 and errs == [], err
        return
    if name != "reverse.toml":
        assert code == 0 and errs == [], err
        assert out == "wmproxy: %s: the configuration is valid\n" % path
        assert all("not yet active" in w[3] for w in warns), warns
        return
    # reverse.toml carries a junk key under [http]: that, and only that.
    assert code == 1
    assert errs == [(11, 1, "http.aa", 'unknown key "aa" in [http]')], err
    assert "1 error(s); the configuration is not valid" in err
    text = path.read_text()
    assert '\naa = "b"\n' in text
    path.write_text(text.replace('\naa = "b"\n', "\n", 1))
    code, errs, _, out, err = check(path)
    assert code == 0 and errs == [], err


def test_check_lists_every_error(tmp_path):
    path = ctl.write(tmp_path / "bad.toml",
                     'workers = 0\n'                      # 1
                     'default_level = "loud"\n'           # 2
                     '[proxy]\n'                          # 3
                     'bind_addr = "0.0.0.0"\n'            # 4
                     'flag = "ftp"\n'                     # 5
                     'username = "u"\n'                   # 6
                     'idle_timeout = "1y"\n'              # 7
                     'udp_bind = "127.0.0.1"\n'           # 8 (warning only)
                     '[[proxy.mappings]]\n'               # 9
                     'mode = "tcp"\n'                     # 10
                     '[http]\n'                           # 11
                     'rate_limit = "4m/h"\n'              # 12
                     'limit_req = "zone=nope"\n'          # 13
                     'aa = 1\n')                          # 14
    code, errs, warns, out, err = check(path)
    assert code == 1 and out == ""
    assert [(e[0], e[1], e[2]) for e in errs] == [
        (1, 11, "workers"), (2, 17, "default_level"), (4, 13, "proxy.bind_addr"),
        (5, 8, "proxy.flag"), (6, 12, "proxy.username"), (7, 16, "proxy.idle_timeout"),
        (9, 1, "proxy.mappings[0].name"), (9, 1, "proxy.mappings[0]"), (12, 14, "http.rate_limit"),
        (14, 1, "http.aa")], err
    assert [w[:3] for w in warns] == [(8, 12, "proxy.udp_bind")], err
    assert all(w[3].startswith("accepted, not yet active (") for w in warns), err
    assert err.rstrip("\n").endswith("wmproxy: %s: 10 error(s); the configuration is not valid"
                                      % path)
    # Cross-section references are checked once the sections themselves are
    # fine (the unknown zone above waited for the rest to be fixed).
    ctl.write(path, '[http]\nlimit_req = "zone=nope"\n')
    code, errs, _, _, _ = check(path)
    assert code == 1 and errs == [(2, 13, "http.limit_req",
                                   'zone "nope" is not defined in [http.limit_req_zone]')]


def test_check_exit_codes(tmp_path):
    ok = ctl.write(tmp_path / "ok.yaml", "proxy:\n  bind_addr: 127.0.0.1:8090\n")
    code, errs, warns, out, _ = check(ok)
    assert (code, errs, warns) == (0, [], []) and "valid" in out
    warn = ctl.write(tmp_path / "w.toml", '[proxy]\nudp_bind = "127.0.0.1"\n')
    code, errs, warns, _, _ = check(warn)
    assert code == 0 and errs == [] and len(warns) == 1
    r = ctl.run(BIN, "check", "-c", tmp_path / "missing.toml")
    assert r.returncode == 1 and b"missing.toml: cannot open: No such file" in r.stderr, r
    for args in (["check"], ["check", "-c"], ["check", "-c", ok, "extra"], ["check", "--nope"]):
        r = ctl.run(BIN, *args)
        assert r.returncode == 2, (args, r)
    r = ctl.run(BIN, "check", "--help")
    assert r.returncode == 0 and b"wmproxy check -c FILE" in r.stdout


def test_a_duration_in_seconds_too_large_is_refused(tmp_path):
    # 18446744073709552 s is 2^64 ms + 384 ms: it wrapped to 384 ms and passed
    # the 1..3600000 ms range; a key without a range stored the wrapped value
    path = ctl.write(tmp_path / "big.toml",
                     '[proxy]\n'
                     'connect_timeout = 18446744073709552\n'
                     '[[http.server]]\n'
                     'bind_addr = "127.0.0.1:1"\n'
                     '[[http.server.location]]\n'
                     'rule = "/"\n'
                     'file_server = { root = ".", cache_time = 9223372036854775807 }\n')
    code, errs, _, _, err = check(path)
    assert code == 1, err
    assert [e[:3] for e in errs] == [(2, 19, "proxy.connect_timeout"),
                                     (7, 42, "http.server[0].location[0].file_server.cache_time")], err
    assert "out of range (1..3600000 ms)" in errs[0][3], err
    assert "too large" in errs[1][3], err
    yml = ctl.write(tmp_path / "big.yaml", "proxy:\n  connect_timeout: 18446744073709552\n")
    code, errs, _, _, err = check(yml)
    assert code == 1 and [e[:3] for e in errs] == [(2, 20, "proxy.connect_timeout")], err


def test_a_secret_of_the_wrong_type_is_not_echoed(tmp_path):
    # `password = 123456789` (a TOML integer) and a string holding a NUL
    # were refused with the value in the message ("got 123456789", "got
    # "sec"": the part before the NUL), so the secret went to the terminal,
    # the log and the control API's reload answer
    path = ctl.write(tmp_path / "sec.toml",
                     'control_token = 987654321\n'
                     '[proxy]\n'
                     'bind_addr = "127.0.0.1:1"\n'
                     'username = "u"\n'
                     'password = "s3cr\\u0000et"\n')
    code, errs, _, _, err = check(path)
    assert code == 1 and [e[:3] for e in errs] == [(1, 17, "control_token"),
                                                   (5, 12, "proxy.password")], err
    assert "987654321" not in err and "s3cr" not in err, err
    assert "expected a string, got an integer" in errs[0][3], err
    assert "NUL" in errs[1][3], err
    ctl.write(path, '[proxy]\nbind_addr = "127.0.0.1:1"\nusername = "u"\npassword = 123456789\n')
    code, errs, _, _, err = check(path)
    assert code == 1 and [e[:3] for e in errs] == [(4, 12, "proxy.password")], err
    assert "123456789" not in err, err
    # a key that is no secret still shows what it got
    ctl.write(path, '[proxy]\nbind_addr = "127.0.0.1:1"\nusername = 42\npassword = "p"\n')
    code, errs, _, _, err = check(path)
    assert code == 1 and errs[0][2:] == ("proxy.username", "expected a string, got 42"), err


def openssl(*args):
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=30)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_check_cert_and_key_files(tmp_path):
    for n in ("a", "b"):
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-keyout", str(tmp_path / (n + ".key")), "-out",
                str(tmp_path / (n + ".pem")), "-subj", "/CN=" + n, "-days", "2")

    def server(cert, key):
        return ('[[http.server]]\nbind_addr = "127.0.0.1:1"\ncert = "%s"\nkey = "%s"\n'
                'static_response = "ok"\n' % (tmp_path / cert, tmp_path / key))

    path = tmp_path / "tls.toml"
    ctl.write(path, server("a.pem", "a.key"))
    assert check(path)[:2] == (0, [])
    ctl.write(path, server("a.pem", "b.key"))
    code, errs, _, _, err = check(path)
    assert code == 1 and len(errs) == 1 and errs[0][:3] == (4, 7, "http.server[0].key"), err
    assert "does not match certificate" in errs[0][3]
    ctl.write(path, server("a.pem", "nope.key"))
    code, errs, _, _, err = check(path)
    assert code == 1 and errs[0][:3] == (4, 7, "http.server[0].key") and \
        "No such file" in errs[0][3], err
    ctl.write(path, server("a.key", "a.key"))
    code, errs, _, _, err = check(path)
    assert code == 1 and errs[0][:3] == (3, 8, "http.server[0].cert") and \
        "not a usable PEM certificate" in errs[0][3], err


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command")
def test_check_tunnel_ca_file_names_its_line(tmp_path):
    """A tunnel `ca` that is missing or holds no certificate was reported
    as `file: proxy.ts: trust anchors ...`, without the line and column
    every other error has (README: `file:line:col: key.path: message`)."""
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", str(tmp_path / "ca.key"), "-out", str(tmp_path / "ca.pem"),
            "-subj", "/CN=ca", "-days", "2")
    ctl.write(tmp_path / "junk.pem", "not a certificate\n")
    path = tmp_path / "client.toml"
    for ca, code, why in (("ca.pem", 0, None), ("nope.pem", 1, "No such file"),
                          ("junk.pem", 1, "no usable PEM certificate")):
        ctl.write(path, '[proxy]\nbind_addr = "127.0.0.1:1"\nserver = "127.0.0.1:2"\n'
                  'ts = true\nca = "%s"\n' % ca)
        c, errs, _, _, err = check(path)
        assert c == code, err
        if why is not None:
            assert len(errs) == 1 and errs[0][:3] == (5, 6, "proxy.ca") and why in errs[0][3], err
    # the server side reads it with two_way_tls
    ctl.write(path, '[proxy]\nbind_addr = "127.0.0.1:1"\ntc = true\ntwo_way_tls = true\n'
              'cert = "ca.pem"\nkey = "ca.key"\nca = "nope.pem"\n')
    c, errs, _, _, err = check(path)
    assert c == 1 and len(errs) == 1 and errs[0][:3] == (7, 6, "proxy.ca"), err


# ---- TOML and YAML: one behaviour ----

TOML = '''control = "127.0.0.1:{c}"
workers = 2
default_level = "warn"
[proxy]
bind_addr = "127.0.0.1:{p}"
flag = 5
username = "bob"
password = "pa ss:1"
connect_timeout = "5s"
handshake_timeout = 3
'''

YAML = '''control: 127.0.0.1:{c}
workers: 2
default_level: warn
proxy:
  bind_addr: 127.0.0.1:{p}
  flag: http socks5
  username: bob
  password: "pa ss:1"
  connect_timeout: 5s
  handshake_timeout: 3
'''


def outcomes(port, oport):
    """What a set of clients get from the proxy on port."""
    out = []
    r = tr.http_get(port, oport, "/bytes/100?seed=1")
    out.append(("http no auth", r.status, r.header("Proxy-Authenticate")))
    r = tr.http_get(port, oport, "/bytes/100?seed=1", "bob", "pa ss")
    out.append(("http wrong password", r.status))
    r = tr.http_get(port, oport, "/bytes/100?seed=1", "bob", "pa ss:1")
    out.append(("http ok", r.status, len(r.body)))
    rs = tr.keepalive_gets(port, oport, ["/bytes/10?seed=2"] * 3, "bob", "pa ss:1")
    out.append(("keep-alive", [x.status for x in rs]))
    s, _, st = tr.connect_tunnel(port, "127.0.0.1", oport, "bob", "pa ss:1")
    s.close()
    out.append(("CONNECT (https off)", st))
    out.append(("socks5 no-auth offer", tr.socks_offer_noauth(port)))
    s, rep, auth = socks.handshake(port, "127.0.0.1", oport, "bob", "nope")
    s.close()
    out.append(("socks5 wrong password", rep, auth))
    s = tr.socks_tunnel(port, "127.0.0.1", oport, "bob", "pa ss:1")
    r = tr.tunnel_get(s, Reader(s), oport, "/bytes/5000?seed=3", close=True)
    s.close()
    out.append(("socks5 ok", r.status, len(r.body)))
    out.append(("socks4", tr.socks4_connect(port, oport)))
    return out


def test_toml_and_yaml_behave_identically(wmproxy, origin, tmp_path):
    (pt, ct_), (py, cy) = ports(2), ports(2)
    ft = ctl.write(tmp_path / "same.toml", TOML.format(c=ct_, p=pt))
    fy = ctl.write(tmp_path / "same.yaml", YAML.format(c=cy, p=py))
    wmproxy(["run", "-c", ft], port=pt)
    wmproxy(["run", "-c", fy], port=py)
    got_t = outcomes(pt, origin.port)
    got_y = outcomes(py, origin.port)
    assert got_t == got_y
    assert got_t == [
        ("http no auth", 407, 'Basic realm="wmproxy"'),
        ("http wrong password", 407),
        ("http ok", 200, 100),
        ("keep-alive", [200, 200, 200]),
        ("CONNECT (https off)", 405),
        ("socks5 no-auth offer", b"\x05\xff"),
        ("socks5 wrong password", None, b"\x01\x01"),
        ("socks5 ok", 200, 5000),
        ("socks4", b"\x00\x5b"),
    ]
    st, sy = ctl.status(ct_), ctl.status(cy)
    for s, port in ((st, pt), (sy, py)):
        assert [(x["addr"], x["kind"]) for x in s["listeners"]] == \
            [("127.0.0.1:%d" % port, "proxy")]
        assert s["workers"] == 2
    # The handshake timeout (3 s) is the same too: a silent client is cut.
    silent = [connect(port, timeout=10) for port in (pt, py)]
    for s in silent:
        assert s.recv(1) == b""
        s.close()


# ---- run ----

def test_run_bad_file_exits_1(tmp_path):
    bad = ctl.write(tmp_path / "bad.toml", '[proxy]\nflag = 7\nbind_addr = "127.0.0.1"\n')
    r = ctl.run(BIN, "run", "-c", bad, timeout=20)
    assert r.returncode == 1, r
    assert ('wmproxy: %s:3:13: proxy.bind_addr: expected "ip:port", got "127.0.0.1"' % bad
            ).encode() in r.stderr
    bady = ctl.write(tmp_path / "bad.yaml", "proxy:\n  flag: 9\n")
    for extra in ([], ["--daemon", "--pidfile", str(tmp_path / "x.pid")], ["--forever"]):
        r = ctl.run(BIN, "run", "-c", bady, *extra, timeout=20)
        assert r.returncode == 1 and ("%s:2:9: proxy.flag:" % bady).encode() in r.stderr, (extra, r)
    assert not (tmp_path / "x.pid").exists()
    r = ctl.run(BIN, "run", "-c", tmp_path / "none.toml")
    assert r.returncode == 1 and b"none.toml: cannot open" in r.stderr, r
    r = ctl.run(BIN, "run")
    assert r.returncode == 2 and b"run needs -c FILE" in r.stderr


def test_config_alias(wmproxy, origin, tmp_path):
    port, cport = ports(2)
    path = ctl.write(tmp_path / "a.toml", 'control = "127.0.0.1:%d"\n[proxy]\n'
                     'bind_addr = "127.0.0.1:%d"\n' % (cport, port))
    wmproxy(["config", "-c", path], port=port)
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/300?seed=4"), 300, 4)
    assert ctl.status(cport)["config"] == path


def wait_gone(pid, timeout=15):
    ctl.wait_until(lambda: not ctl.pid_alive(pid), timeout, what="pid %d to exit" % pid)


def sanitizer_env(tmp_path):
    """Daemons write no stderr: sanitizer reports go to files instead."""
    return {"ASAN_OPTIONS": "detect_leaks=1:log_path=%s/asan" % tmp_path,
            "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:log_path=%s/ubsan" % tmp_path}


def no_sanitizer_reports(tmp_path):
    reports = [f for f in os.listdir(tmp_path) if f.startswith(("asan.", "ubsan."))]
    assert not reports, [open(os.path.join(tmp_path, f)).read()[:4000] for f in reports]


@pytest.mark.parametrize("pidfile_in", ["flag", "file"])
def test_daemon_pidfile_and_stop(origin, tmp_path, pidfile_in):
    port, cport = ports(2)
    pidfile = tmp_path / "w.pid"
    text = 'control = "127.0.0.1:%d"\nworkers = 2\n[proxy]\nbind_addr = "127.0.0.1:%d"\n' % (
        cport, port)
    args = ["run", "-c", None, "--daemon"]
    if pidfile_in == "file":
        text = 'pidfile = "%s"\n' % pidfile + text
    else:
        args += ["--pidfile", pidfile]
    path = ctl.write(tmp_path / "d.toml", text)
    args[2] = path
    r = ctl.run(BIN, *args, env=sanitizer_env(tmp_path))
    assert r.returncode == 0, r
    assert wait_port("127.0.0.1", port, 5)
    pid = int(pidfile.read_text())
    assert ctl.pid_alive(pid) and ctl.status(cport)["pid"] == pid
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/100?seed=5"), 100, 5)
    # Another start on the same file fails in the foreground.
    r = ctl.run(BIN, *args, env=sanitizer_env(tmp_path))
    assert r.returncode == 1 and b"Address already in use" in r.stderr, r
    assert int(pidfile.read_text()) == pid

    r = ctl.run(BIN, "stop", "-c", path)
    assert r.returncode == 0 and r.stdout == b"stopping\n", r
    wait_gone(pid)
    assert not pidfile.exists()
    no_sanitizer_reports(tmp_path)


def test_forever_restarts_the_server(wmproxy, origin, tmp_path):
    port, cport = ports(2)
    path = ctl.write(tmp_path / "f.toml", 'control = "127.0.0.1:%d"\nworkers = 2\n'
                     '[proxy]\nbind_addr = "127.0.0.1:%d"\n' % (cport, port))
    sup = wmproxy(["run", "-c", path, "--forever"], port=port)
    child = ctl.status(cport)["pid"]
    assert child != sup.p.pid and ctl.children(sup.p.pid) == [child]
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/100?seed=6"), 100, 6)

    for _ in range(2):
        os.kill(child, signal.SIGKILL)
        new = ctl.wait_until(lambda: ctl.children(sup.p.pid) not in ([], [child]) and
                             ctl.children(sup.p.pid), 10, what="a new server process")
        assert wait_port("127.0.0.1", port, 10)
        tr.check_bytes(tr.http_get(port, origin.port, "/bytes/100?seed=7"), 100, 7)
        st = ctl.wait_until(lambda: _status_or_none(cport), 10, what="the control API")
        assert [st["pid"]] == new and sup.alive()
        child = st["pid"]

    # A clean stop of the server ends the supervisor too, with 0.
    r = ctl.run(BIN, "stop", "-c", path)
    assert r.returncode == 0, r
    assert sup.p.wait(20) == 0
    assert sup.stop() == 0
    assert not ctl.pid_alive(child)


def _status_or_none(cport):
    try:
        return ctl.status(cport)
    except OSError:
        return None


def test_forever_sigterm_stops_both(wmproxy, tmp_path):
    port, cport = ports(2)
    path = ctl.write(tmp_path / "g.toml", 'control = "127.0.0.1:%d"\n[proxy]\n'
                     'bind_addr = "127.0.0.1:%d"\n' % (cport, port))
    sup = wmproxy(["run", "-c", path, "--forever", "--workers", "1"], port=port)
    child = ctl.status(cport)["pid"]
    assert sup.stop() == 0
    wait_gone(child, 5)


def test_sighup_reloads(wmproxy, origin, tmp_path):
    port, cport = ports(2)

    def text(password, extra=""):
        return ('control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
                'username = "u"\npassword = "%s"\n%s' % (cport, port, password, extra))

    path = ctl.write(tmp_path / "h.toml", text("one"))
    p = wmproxy(["run", "-c", path], port=port)
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=8", "u", "one"), 10, 8)

    ctl.write(path, text("two"))
    p.signal(signal.SIGHUP)
    ctl.wait_until(lambda: ctl.status(cport)["reload"]["ok"] == 1, 10, what="SIGHUP reload")
    assert tr.http_get(port, origin.port, "/bytes/10", "u", "one").status == 407
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=9", "u", "two"), 10, 9)

    ctl.write(path, text("three", 'flag = "ftp"\n'))
    p.signal(signal.SIGHUP)
    st = ctl.wait_until(lambda: (lambda s: s if s["reload"]["failed"] == 1 else None)(
        ctl.status(cport)), 10, what="SIGHUP reload")
    assert st["reload"]["last_ok"] is False
    assert '%s:6:8: proxy.flag: expected "http https socks5"' % path in st["reload"]["last_message"]
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=10", "u", "two"), 10, 10)
    assert wait_log(p, "reload of %s refused" % path), p.log()[-3000:]


def test_a_config_that_is_not_a_regular_file(wmproxy, origin, tmp_path):
    """A FIFO blocked the reader until some writer came: `check` hung, and a
    SIGHUP reload froze the main loop (control API, stop signals) for good.
    Anything but a regular file is refused at once, and a reload keeps the
    running configuration."""
    fifo = tmp_path / "fifo.toml"
    os.mkfifo(fifo)
    r = ctl.run(BIN, "check", "-c", fifo, timeout=20)
    assert r.returncode == 1 and ("%s: cannot read: not a regular file" % fifo).encode() \
        in r.stderr, r
    r = ctl.run(BIN, "reload", "-c", fifo, timeout=20)
    assert r.returncode == 1 and r.stderr == (
        "wmproxy: %s: cannot read: not a regular file\n" % fifo).encode(), r
    r = ctl.run(BIN, "check", "-c", tmp_path, timeout=20)
    assert r.returncode == 1 and ("%s: cannot read: is a directory" % tmp_path).encode() \
        in r.stderr, r

    port, cport = ports(2)
    path = tmp_path / "h.toml"
    ctl.write(path, 'control = "127.0.0.1:%d"\n[proxy]\nbind_addr = "127.0.0.1:%d"\n'
              % (cport, port))
    p = wmproxy(["run", "-c", path], port=port)
    os.replace(fifo, path)
    p.signal(signal.SIGHUP)
    st = ctl.wait_until(lambda: (lambda s: s if s["reload"]["failed"] == 1 else None)(
        ctl.status(cport)), 10, what="the refused reload")
    assert "%s: cannot read: not a regular file" % path in st["reload"]["last_message"], st
    tr.check_bytes(tr.http_get(port, origin.port, "/bytes/10?seed=11"), 10, 11)


def test_forever_writes_the_pidfile_of_the_file_or_fails(wmproxy, tmp_path):
    """--forever ignored the file's `pidfile` (neither the supervisor nor the
    server wrote one) and started without a word when --pidfile could not be
    written (a start without --forever exits 1 for it)."""
    port, cport = ports(2)
    path = ctl.write(tmp_path / "p.toml", 'pidfile = "sup.pid"\ncontrol = "127.0.0.1:%d"\n'
                     '[proxy]\nbind_addr = "127.0.0.1:%d"\n' % (cport, port))
    sup = wmproxy(["run", "-c", path, "--forever", "--workers", "1"], port=port)
    pidfile = tmp_path / "sup.pid"
    assert int(pidfile.read_text()) == sup.p.pid
    assert sup.stop() == 0
    assert not pidfile.exists()

    for extra in (["--pidfile", tmp_path / "none" / "x.pid"], ["--daemon", "--pidfile", tmp_path]):
        r = ctl.run(BIN, "run", "-c", path, "--forever", "--workers", "1", *extra, timeout=20)
        assert r.returncode == 1 and ("wmproxy: cannot write pidfile %s: " % extra[-1]).encode() \
            in r.stderr, (extra, r)
        assert refused(port)
