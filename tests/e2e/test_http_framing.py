"""Request framing the HTTP/1 layer refuses before anything reaches an
upstream (request smuggling through Connection-nominated framing headers,
transfer codings we do not forward, request lines without a version).

Each case goes through the forward proxy to a listener that records whether
a connection arrived: the answer must come from the proxy, and the origin
must never be dialled."""

import json
import socket

import pytest

from helpers import http1
from helpers.net import connect, listen_local, recv_head


def send_raw(proxy_port, raw):
    s = connect(proxy_port, timeout=10)
    s.sendall(raw)
    r = http1.Reader(s).response()
    s.close()
    return r


def origin_dialled(lst):
    lst.setblocking(False)
    try:
        c, _ = lst.accept()
    except BlockingIOError:
        return False
    c.close()
    return True


CASES = [
    # Connection names the header that frames the body: a hop honouring it
    # would drop Content-Length and see the body as a second request.
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive, Content-Length\r\n"
     "Content-Length: 44\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: {host}\r\n\r\n", 400,
     "Connection names"),
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nConnection: transfer-encoding\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Connection names"),
    ("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: Host\r\n\r\n", 400, "Connection names"),
    # codings other than exactly "chunked" are not forwarded verbatim
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
     "0\r\n\r\n", 501, "transfer coding"),
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
     "0\r\n\r\n", 501, "transfer coding"),
    # chunked twice: llhttp refuses it itself
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n"
     "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "Transfer-Encoding"),
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400,
     "does not end in chunked"),
    # HTTP/0.9-style request line
    ("GET {url}\r\n\r\n", 400, "without an HTTP version"),
    # obs-fold (RFC 9112 5.2): refused, not unfolded
    ("GET {url} HTTP/1.1\r\nHost: {host}\r\nX-F: a\r\n b\r\n\r\n", 400, "obs-fold"),
    # an expectation other than 100-continue (RFC 9110 10.1.1)
    ("POST {url} HTTP/1.1\r\nHost: {host}\r\nExpect: foo\r\nContent-Length: 2\r\n\r\nhi",
     417, "unsupported expectation"),
]


@pytest.mark.parametrize("raw,status,why", CASES)
def test_refused_before_the_origin(proxy, raw, status, why):
    lst = listen_local(backlog=4)
    host = "127.0.0.1:%d" % lst.getsockname()[1]
    try:
        r = send_raw(proxy, raw.format(url="http://%s/x" % host, host=host).encode())
        assert r.status == status, (r.status, r.body)
        assert why.encode() in r.body
        assert not origin_dialled(lst), "the request reached the origin"
    finally:
        lst.close()


def test_plain_chunked_still_forwarded(proxy, origin):
    body = b"5\r\nhello\r\n0\r\n\r\n"
    raw = ("POST http://127.0.0.1:%d/echo HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
           "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
           % (origin.port, origin.port)).encode() + body
    r = send_raw(proxy, raw)
    assert r.status == 200
    assert r.body == b"hello"


def test_expect_100_continue_answered_by_the_proxy(proxy, origin):
    """As on the reverse path (same engine): the proxy sends its own 100
    Continue once the request is routed, the origin never sees Expect."""
    s = connect(proxy, timeout=10)
    s.sendall(("POST http://127.0.0.1:%d/headers HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
               "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n"
               % (origin.port, origin.port)).encode())
    assert recv_head(s) == b"HTTP/1.1 100 Continue\r\n\r\n"
    s.sendall(b"hello")
    r = http1.Reader(s).response()
    s.close()
    assert r.status == 200
    names = [k.lower() for k, _ in json.loads(r.body)["headers"]]
    assert "expect" not in names and "content-length" in names
