"""Cluster against a Redis that misbehaves (docs/cluster.md "Redis
trouble"): one that accepts and never answers, one that speaks something
else than RESP, one that refuses our password, one whose reply never ends,
one whose pub/sub messages have shapes hiredis aborts on, a read-only
replica (a master demoted by a failover), and routes in Redis with odd
bytes. The node says why, once, and keeps retrying."""

import datetime
import json
import subprocess
import threading

from helpers.cluster import Cluster, Redis, redis  # noqa: F401 (fixture)
from helpers.cluster import redis_send, status
from helpers.control import rss_kb
from helpers.net import free_port, serve_tcp, wait_port, wait_until
from helpers.tunnel import wait_log


class FakeRedis:
    """A TCP server on a free port that answers each read of every
    connection with `answer` (None: never answers; a function: called with
    the connection). Counts connections."""

    def __init__(self, answer):
        self.answer = answer
        self.conns = 0
        self.lock = threading.Lock()
        self.lst = serve_tcp(self.handle)
        self.port = self.lst.getsockname()[1]

    def handle(self, c):
        with self.lock:
            self.conns += 1
        try:
            while c.recv(65536):
                if callable(self.answer):
                    self.answer(c)
                elif self.answer is not None:
                    c.sendall(self.answer)
        except OSError:
            pass
        finally:
            c.close()

    def url(self, db=0):
        return "redis://127.0.0.1:%d/%d" % (self.port, db)

    def close(self):
        self.lst.close()


class ShapedRedis(FakeRedis):
    """Answers as Redis would (PING, SUBSCRIBE, EVAL: an empty array,
    others: +OK), then sends `sub` on the subscriber connection once it is
    subscribed, or `spont` once after the first EVAL's answer."""

    def __init__(self, sub=b"", spont=b"", flap=False, eval_err=b""):
        self.sub, self.spont, self.flap = sub, spont, flap  # flap: close after an EVAL
        self.eval_err, self.evals = eval_err, 0  # eval_err: the answer to every EVAL
        FakeRedis.__init__(self, None)

    def handle(self, c):
        with self.lock:
            self.conns += 1
        buf = b""
        try:
            while True:
                d = c.recv(65536)
                if not d:
                    return
                buf += d
                while buf.startswith(b"*") and buf.count(b"\r\n") >= 1 + 2 * int(
                        buf[1:buf.index(b"\r\n")]):
                    parts = buf.split(b"\r\n")
                    n = int(parts[0][1:])
                    cmd, buf = parts[2].upper(), b"\r\n".join(parts[1 + 2 * n:])
                    if cmd == b"PING":
                        c.sendall(b"+PONG\r\n")
                    elif cmd == b"SUBSCRIBE":
                        for i, ch in enumerate(parts[4:1 + 2 * n:2]):
                            c.sendall(b"*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:%d\r\n"
                                      % (len(ch), ch, i + 1))
                        c.sendall(self.sub)
                    elif cmd == b"EVAL" and self.eval_err:
                        self.evals += 1
                        c.sendall(self.eval_err)
                    elif cmd == b"EVAL":
                        c.sendall(b"*0\r\n" + self.spont)
                        self.spont = b""
                        if self.flap:
                            return
                    else:
                        c.sendall(b"+OK\r\n")
        except OSError:
            pass
        finally:
            c.close()


def node(wmproxy, tmp_path, store, ttl="1s"):
    cl = Cluster(wmproxy, tmp_path, store)
    return cl.node("a", cluster_keys={"ttl": ttl}, started="cluster: node a")


def warns(n, text):
    return [ln for ln in n.log().splitlines() if " WARN " in ln and text in ln]


def test_redis_that_never_answers_is_dropped_and_retried(wmproxy, tmp_path):
    # Before: the node waited for the PING's answer forever (no timeout while
    # connecting), said nothing, and never tried again.
    fake = FakeRedis(None)
    try:
        a = node(wmproxy, tmp_path, fake)
        wait_until(lambda: status(a)["redis"]["last_error"] == "Redis does not answer", 10,
                   what="the stall in /status")
        wait_until(lambda: fake.conns >= 4, 10, what="a second attempt (command + subscriber)")
        assert status(a)["redis"]["state"] == "down"
        assert len(warns(a, "unreachable (Redis does not answer)")) == 1, a.log()
    finally:
        fake.close()


def test_redis_errors_are_reported_whole_and_once(wmproxy, tmp_path):
    # Before: last_error was cut to 7 bytes ("Protoco"; hiredis' errstr is a
    # pointer, sized as one), a Redis never reached at start was logged at
    # debug level only, and a refused password logged a warning per retry.
    fake = FakeRedis(b"HTTP/1.1 400 Bad Request\r\n\r\n")
    try:
        a = node(wmproxy, tmp_path, fake)
        why = 'Protocol error, got "H" as reply type byte'
        wait_until(lambda: status(a)["redis"]["last_error"] == why, 10, what="the whole reason")
        wait_until(lambda: fake.conns >= 6, 10, what="three attempts")
        assert len(warns(a, "unreachable (%s)" % why)) == 1, a.log()
    finally:
        fake.close()
    wrong = FakeRedis(b"-WRONGPASS invalid username-password pair\r\n")
    try:
        b = node(wmproxy, tmp_path, wrong)
        wait_until(lambda: wrong.conns >= 6, 10, what="three attempts")
        assert "WRONGPASS" in status(b)["redis"]["last_error"]
        assert len(warns(b, "WRONGPASS")) == 1, b.log()
    finally:
        wrong.close()
    # nothing listens: said at once
    gone = free_port()
    c = node(wmproxy, tmp_path, type("Gone", (), {"url": lambda self, db=0:
                                                  "redis://127.0.0.1:%d/0" % gone})())
    assert wait_log(c, "unreachable (Connection refused)"), c.log()


def test_a_flapping_redis_is_retried_ever_later(wmproxy, tmp_path):
    # Before: every reconnection reset the delay, so a Redis that accepts
    # and drops us at once gave two WARN lines (reconnected, lost) every
    # 0.1-0.2 s for as long as it flapped; now the delay grows to its
    # 1-2 s ceiling unless a connection lasted 10 s.
    fake = ShapedRedis(flap=True)
    try:
        a = node(wmproxy, tmp_path, fake)
        again = wait_until(lambda: warns(a, "reconnected")[5:6], 30,
                           what="six reconnections")
        lines = warns(a, "reconnected")
        stamp = [datetime.datetime.fromisoformat(ln.split()[0]) for ln in lines[4:6]]
        assert (stamp[1] - stamp[0]).total_seconds() >= 0.9, again
    finally:
        fake.close()


def test_a_command_failing_every_heartbeat_is_logged_once_a_minute(wmproxy, tmp_path):
    # Before: a Redis without EVAL (disabled, or a proxy that refuses it)
    # gave a WARN line per failed command, several per heartbeat.
    fake = ShapedRedis(eval_err=b"-ERR unknown command 'EVAL'\r\n")
    try:
        a = node(wmproxy, tmp_path, fake)
        wait_until(lambda: fake.evals >= 12, 30, what="a dozen refused EVALs")
        assert len(warns(a, "failed: ERR unknown command")) == 1, a.log()
    finally:
        fake.close()


def endless(head, unit):
    def send(c):
        c.sendall(head)
        block = unit * (65536 // len(unit))
        while True:
            c.sendall(block)
    return send


def test_a_reply_without_end_is_bounded(wmproxy, tmp_path):
    # Before: hiredis kept every byte of a bulk string announced as 100 GB,
    # and every element of an array announced as 2e9, until memory ran out.
    arr = FakeRedis(endless(b"*2000000000\r\n", b":1\r\n"))
    bulk = FakeRedis(endless(b"$99999999999\r\n", b"x"))
    try:
        a = node(wmproxy, tmp_path, arr, ttl="60s")
        wait_until(lambda: "more than 1048576 elements" in status(a)["redis"]["last_error"], 30,
                   what="the array refused")
        b = node(wmproxy, tmp_path, bulk, ttl="60s")
        wait_until(lambda: "more than 64 MiB" in status(b)["redis"]["last_error"], 60,
                   what="the bulk string refused")
        for n in (a, b):
            assert rss_kb(n.p.pid) < 2 * 1024 * 1024, "rss %d kB" % rss_kb(n.p.pid)
    finally:
        arr.close()
        bulk.close()


def test_messages_hiredis_would_abort_on_drop_the_connection(wmproxy, tmp_path):
    # Before: hiredis' assert() took the whole process down on each of these.
    cases = {
        "a pub/sub message without a kind and a channel": {"sub": b"*1\r\n$7\r\nmessage\r\n"},
        "a pub/sub message whose kind or channel is not a string":
            {"sub": b"*3\r\n:1\r\n$1\r\nx\r\n$1\r\ny\r\n"},
        "an unsubscribe message without its count":
            {"sub": b"*2\r\n$11\r\nunsubscribe\r\n$9\r\nwm:events\r\n"},
        "an unsubscribe message whose count is not an integer":
            {"sub": b"*3\r\n$12\r\nPUNSUBSCRIBE\r\n$9\r\nwm:events\r\n$1\r\nx\r\n"},
        # after the answer to the last command of a heartbeat, the next is
        # a ttl/3 away: nothing is pending then
        "a reply to no command": {"spont": b"+OK\r\n"},
    }
    for why, kw in cases.items():
        fake = ShapedRedis(**kw)
        try:
            n = node(wmproxy, tmp_path, fake, ttl="9s")
            assert wait_log(n, "lost (Redis sent %s)" % why), n.log()
            assert n.alive() and status(n)["node"] == "a"
        finally:
            fake.close()
        n.stop()


def test_a_read_only_replica_is_not_a_store(wmproxy, tmp_path, redis):  # noqa: F811
    # Before: a node pointed at a replica (or left on a master that a
    # failover demoted) was "up" for good, every write refused, and warned
    # about it three times a second.
    port = free_port()
    rep = subprocess.Popen([Redis.binary(), "--bind", "127.0.0.1", "--port", str(port),
                            "--save", "", "--appendonly", "no", "--dir", str(tmp_path),
                            "--replicaof", "127.0.0.1", str(redis.port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_port("127.0.0.1", port, 10, rep)
        store = type("Replica", (), {"url": lambda self, db=0: "redis://127.0.0.1:%d/0" % port})()
        a = node(wmproxy, tmp_path, store, ttl="3s")
        wait_until(lambda: "READONLY" in status(a)["redis"]["last_error"], 10,
                   what="the replica's refusal in /status")
        assert status(a)["redis"]["state"] == "down"
        redis_send(port, ("REPLICAOF", "NO", "ONE"))  # promoted: a store now
        assert wait_log(a, "cluster: redis 127.0.0.1:%d connected" % port), a.log()
        redis_send(port, ("REPLICAOF", "127.0.0.1", str(redis.port)))  # demoted again
        assert wait_log(a, "lost (node key: READONLY"), a.log()
        wait_until(lambda: status(a)["redis"]["state"] == "down", 10, what="down again")
        assert len(warns(a, "cluster: redis")) == 2, a.log()  # unreachable, lost
    finally:
        rep.terminate()
        rep.wait(10)


def test_status_stays_json_with_odd_route_bytes_in_redis(wmproxy, tmp_path, redis):  # noqa: F811
    # Before: a route's namespace was written into /status unescaped.
    a = node(wmproxy, tmp_path, redis, ttl="3s")
    redis_send(redis.port, ("SET", "wm:node:zz", "127.0.0.1:1\t0", "PX", "60000"),
               ("SADD", "wm:nodes", "zz"),
               ("HSET", "wm:routes:zz", 'w"b\x01 k"ey', "g\tcl\"ient\tm\\ap"))
    wait_until(lambda: any(n["id"] == "zz" and n["routes"] for n in status(a)["nodes"]), 10,
               what="the odd route in /status (as JSON)")
    zz = [n for n in status(a)["nodes"] if n["id"] == "zz"][0]
    assert zz["routes"] == [{"ns": 'w"b\x01', "key": 'k"ey', "client": 'cl"ient',
                             "mapping": "m\\ap", "group": "g"}], json.dumps(zz)
