"""wmproxy's quick start, exactly (issue 16 item 9): the server has
`--user u --pass p`, the client none. Those credentials guard the server's
proxy: the client node attaches without credentials for the two-level proxy
only, every end user authenticates to the server's proxy, and a client
without credentials registers no mapping (docs/tunnel.md "Who checks what")."""

import socket
import subprocess

from helpers import socks
from helpers.net import connect, free_port, recv_exact
from helpers.origin import pattern
from helpers.tunnel import wait_log, write_config


def quick_pair(wmproxy):
    sp, ep = free_port(), free_port()
    common = ["--workers", "2", "--grace", "1", "--disable-control"]
    # wmproxy proxy --user u --pass p -b 0.0.0.0:8091 --tc
    srv = wmproxy(["proxy", "--user", "u", "--pass", "p", "-b", "127.0.0.1:%d" % sp, "--tc"]
                  + common, port=sp)
    # wmproxy proxy -b 127.0.0.1:8090 -S host:8091 --ts
    cli = wmproxy(["proxy", "-b", "127.0.0.1:%d" % ep, "-S", "127.0.0.1:%d" % sp, "--ts"]
                  + common, port=ep)
    assert wait_log(srv, "attached (TLS) without credentials"), srv.log() + cli.log()
    assert wait_log(cli, "tunnel: connected"), cli.log()
    return srv, cli, sp, ep


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20"] + list(args), capture_output=True,
                          timeout=30)


def test_quick_start_commands_work(wmproxy, origin):
    srv, cli, sp, ep = quick_pair(wmproxy)
    url = "http://127.0.0.1:%d/bytes/70000?seed=9" % origin.port
    # with the proxy's credentials: HTTP, CONNECT and SOCKS5
    for args in (["-U", "u:p", "-x", "http://127.0.0.1:%d" % ep],
                 ["-p", "-U", "u:p", "-x", "http://127.0.0.1:%d" % ep],
                 ["--socks5", "u:p@127.0.0.1:%d" % ep]):
        r = curl(*(args + [url]))
        assert r.returncode == 0, (args, r.stderr, srv.log()[-2000:])
        assert r.stdout == pattern(70000, 9)
    # without: 407, and SOCKS5 offers no method we accept
    r = curl("-o", "/dev/null", "-w", "%{http_code}", "-x", "http://127.0.0.1:%d" % ep, url)
    assert r.stdout == b"407", (r.stdout, r.stderr)
    s = connect(ep)
    s.sendall(b"\x05\x01\x00")
    assert recv_exact(s, 2) == b"\x05\xff"
    s.close()
    # wrong password: SOCKS5 user/pass fails
    s, rep, st = socks.handshake(ep, "127.0.0.1", origin.port, "u", "wrong")
    s.close()
    assert rep is None and st[1] != 0, (rep, st)
    # the server's access lines name the client node's carrier, not what
    # an unauthenticated client claims
    assert wait_log(srv, "access proto=http client=127.0.0.1:"), srv.log()[-3000:]
    assert wait_log(srv, "user=u"), srv.log()[-3000:]


def test_credential_less_client_registers_nothing(wmproxy, tmp_path, origin):
    srv, cli, sp, ep = quick_pair(wmproxy)
    path = write_config(tmp_path / "nocred.toml",
                        {"bind_addr": "127.0.0.1:%d" % free_port(), "server": "127.0.0.1:%d" % sp,
                         "ts": True},
                        [{"name": "sneaky", "mode": "tcp", "local_addr": "127.0.0.1:1"}],
                        top={"disable_control": True})
    c2 = wmproxy(["run", "-c", path, "--workers", "2", "--grace", "1"], wait=False)
    assert wait_log(srv, 'mapping "sneaky" refused: this client presented no credentials'), \
        srv.log()
    assert wait_log(c2, "no credentials"), c2.log()
    assert "registered mapping" not in srv.log()


def test_a_server_with_clients_table_still_refuses_credential_less(wmproxy, tmp_path):
    # [[proxy.clients]] name who may attach: no anonymous carrier then
    cp = free_port()
    path = write_config(tmp_path / "srv.toml",
                        {"center_addr": "127.0.0.1:%d" % cp, "mode": "server",
                         "username": "u", "password": "p"},
                        top={"disable_control": True})
    with open(path, "a") as f:
        f.write('[[proxy.clients]]\nname = "office"\npassword = "x"\n')
    srv = wmproxy(["run", "-c", path, "--workers", "2"], port=cp)
    ep = free_port()
    cli = wmproxy(["proxy", "-b", "127.0.0.1:%d" % ep, "-S", "127.0.0.1:%d" % cp,
                   "--disable-control"], port=ep)
    assert wait_log(cli, "the server refused us: credentials required"), cli.log()
    assert "attached" not in srv.log()


def test_credential_less_carriers_stay_under_the_unauthenticated_caps(wmproxy, tmp_path):
    """A carrier admitted without credentials proved nothing: it counts as
    unauthenticated for its whole life (max_unauth_carriers[_per_ip])."""
    from helpers import control as ctl
    from helpers.net import wait_until

    cp, cport = free_port(), free_port()
    path = tmp_path / "cap.toml"
    path.write_text('control = "127.0.0.1:%d"\n[proxy]\ncenter_addr = "127.0.0.1:%d"\n'
                    'mode = "server"\nusername = "u"\npassword = "p"\n'
                    "max_unauth_carriers_per_ip = 2\n" % (cport, cp))
    srv = wmproxy(["run", "-c", str(path), "--workers", "2"], port=cp)

    def center():
        return ctl.api(cport, "GET", "/status")[2]["tunnel"]["center"]

    wait_until(lambda: center()["unauthenticated"] == 0, what="the port probe gone")
    common = ["--workers", "2", "--grace", "1", "--disable-control"]
    for i in range(2):
        ep = free_port()
        wmproxy(["proxy", "-b", "127.0.0.1:%d" % ep, "-S", "127.0.0.1:%d" % cp] + common, port=ep)
        assert wait_log(srv, "without credentials", count=i + 1), srv.log()
    doc = center()
    assert doc["anonymous"] == 2 and doc["unauthenticated"] == 2, doc
    ep = free_port()
    wmproxy(["proxy", "-b", "127.0.0.1:%d" % ep, "-S", "127.0.0.1:%d" % cp] + common, port=ep)
    assert wait_log(srv, "refused: carriers waiting to authenticate from this address"), srv.log()
    assert srv.log().count("without credentials") == 2
