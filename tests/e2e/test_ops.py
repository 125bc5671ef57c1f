"""Operations (issue 18): lossless tunnel reloads, relative paths, log
timestamps and reload lines, the sd_notify protocol, make install, the
systemd units, the man pages and the example configs."""

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import BIN, sha256
from helpers import control as ctl
from helpers.net import connect, free_port, is_closed, recv_exact, wait_port
from helpers.tunnel import wait_log, write_config
from test_tunnel import CRED, Nodes

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def nodes(wmproxy, tmp_path):
    return Nodes(wmproxy, tmp_path)


# ---- point 6: tunnel reloads end only what they must ----

class Held:
    """One TCP session through a tunnel mapping to the echo server, fed in
    chunks by a thread until stop(); every byte echoed back is kept."""

    def __init__(self, port):
        self.s = connect(port)
        self.s.settimeout(20)
        self.sent = hashlib.sha256()
        self.nsent = 0
        self.got = bytearray()
        self.err = None
        self.halt = threading.Event()
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        i = 0
        try:
            while not self.halt.is_set() and i < 100000:  # bounded
                chunk = (b"%08d" % i) * 512  # 4 KiB
                self.s.sendall(chunk)
                self.sent.update(chunk)
                self.nsent += len(chunk)
                self.got += recv_exact(self.s, len(chunk))
                i += 1
                time.sleep(0.005)
        except Exception as e:  # collected, asserted by finish()
            self.err = e

    def finish(self):
        self.halt.set()
        self.t.join(30)
        assert self.err is None, "the held session broke: %r" % (self.err,)
        self.s.shutdown(socket.SHUT_WR)
        digest = recv_exact(self.s, 64).decode()
        assert is_closed(self.s)
        assert len(self.got) == self.nsent
        assert digest == self.sent.hexdigest(), "bytes lost or changed"
        return self.nsent


def echo_ok(port):
    s = connect(port)
    s.sendall(b"ping")
    assert recv_exact(s, 4) == b"ping"
    s.close()


def tcp_map(name, echo, port):
    return {"name": name, "mode": "tcp", "local_addr": "127.0.0.1:%d" % echo.port,
            "remote_port": port}


def test_client_reload_remaps_over_the_live_carrier(nodes, echo):
    """Issue 18 point 6: a client reload that adds and removes mappings
    re-registers them over the live carrier: a session through an unchanged
    mapping keeps flowing across it (every byte arrives), only the removed
    mapping's session ends, the new mapping serves, no reconnect."""
    keep, gone, new = free_port(), free_port(), free_port()
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv,
                       mappings=[tcp_map("keep", echo, keep), tcp_map("gone", echo, gone)])
    path = nodes.tmp / ("node%d.toml" % nodes.n)
    for p in (keep, gone):
        assert wait_port("127.0.0.1", p, 5)
    held = Held(keep)
    doomed = connect(gone)
    doomed.sendall(b"x")
    assert recv_exact(doomed, 1) == b"x"
    time.sleep(0.3)  # traffic flows before the reload
    write_config(path, {"bind_addr": "127.0.0.1:%d" % cli.entry, "server": srv.center, **CRED},
                 [tcp_map("keep", echo, keep), tcp_map("new", echo, new)],
                 top={"disable_control": True})
    cli.signal(signal.SIGHUP)
    assert wait_log(cli, "registered again over the live carrier"), cli.log()
    assert wait_log(srv, "re-registered 2 mapping(s) over the live carrier"), srv.log()
    assert wait_port("127.0.0.1", new, 5)
    echo_ok(new)
    assert is_closed(doomed), "the removed mapping's session goes on"
    with pytest.raises(OSError):
        connect(gone).recv(1)
    time.sleep(0.3)  # and after it
    n = held.finish()
    assert n > 0
    assert srv.log().count("attached") == 1, "the carrier was rebuilt"
    assert "carrier to" not in cli.log()


def test_client_reload_of_mappings_only_keeps_every_stream(nodes, echo):
    """A reload that changes nothing the server sees (same mappings) sends
    nothing and ends nothing; one that only adds keeps every stream."""
    keep, add = free_port(), free_port()
    srv = nodes.server()
    cli = nodes.client(srv.center, srv_proc=srv, mappings=[tcp_map("keep", echo, keep)])
    path = nodes.tmp / ("node%d.toml" % nodes.n)
    assert wait_port("127.0.0.1", keep, 5)
    held = Held(keep)
    write_config(path, {"bind_addr": "127.0.0.1:%d" % cli.entry, "server": srv.center, **CRED},
                 [tcp_map("keep", echo, keep), tcp_map("add", echo, add)],
                 top={"disable_control": True})
    cli.signal(signal.SIGHUP)
    assert wait_log(cli, "0 stream(s) of removed mappings ended"), cli.log()
    assert wait_port("127.0.0.1", add, 5)
    echo_ok(add)
    held.finish()
    assert srv.log().count("attached") == 1


def test_server_narrowing_ends_only_the_withdrawn_mapping(nodes, echo):
    """Server side: narrowing allow_ports withdraws one mapping: its open
    session ends, a session through the other mapping and the carrier go
    on."""
    keep, drop = free_port(), free_port()
    srv = nodes.server(extra={"allow_ports": "%d,%d" % (keep, drop)})
    spath = nodes.tmp / ("node%d.toml" % nodes.n)
    nodes.client(srv.center, srv_proc=srv,
                 mappings=[tcp_map("keep", echo, keep), tcp_map("drop", echo, drop)])
    for p in (keep, drop):
        assert wait_port("127.0.0.1", p, 5)
    held = Held(keep)
    doomed = connect(drop)
    doomed.sendall(b"x")
    assert recv_exact(doomed, 1) == b"x"
    spath.write_text(spath.read_text().replace('"%d,%d"' % (keep, drop), '"%d"' % keep))
    srv.signal(signal.SIGHUP)
    assert wait_log(srv, 'mapping "drop" withdrawn'), srv.log()
    assert is_closed(doomed), "the withdrawn mapping's session goes on"
    time.sleep(0.3)
    held.finish()
    assert srv.log().count("attached") == 1
