"""Minimal SOCKS5 (RFC 1928/1929) and SOCKS4 client pieces over raw sockets."""

import ipaddress
import socket
import struct

from .net import connect, recv_exact


def addr_bytes(host, port):
    try:
        ip = ipaddress.ip_address(host)
        if ip.version == 4:
            return b"\x01" + ip.packed + struct.pack("!H", port)
        return b"\x04" + ip.packed + struct.pack("!H", port)
    except ValueError:
        h = host.encode()
        return b"\x03" + bytes([len(h)]) + h + struct.pack("!H", port)


def read_reply(s):
    """Read a SOCKS5 reply; returns (rep, (host, port))."""
    hdr = recv_exact(s, 4)
    assert hdr[0] == 5, hdr
    atyp = hdr[3]
    if atyp == 1:
        a = socket.inet_ntop(socket.AF_INET, recv_exact(s, 4))
    elif atyp == 4:
        a = socket.inet_ntop(socket.AF_INET6, recv_exact(s, 16))
    else:
        a = recv_exact(s, recv_exact(s, 1)[0]).decode()
    port = struct.unpack("!H", recv_exact(s, 2))[0]
    return hdr[1], (a, port)


def handshake(port, host, tport, user=None, password=None, cmd=1, proxy_host="127.0.0.1",
              early=b""):
    """Greeting (+auth) + request, sent in as few writes as possible.
    Returns (sock, rep, bound)."""
    s = connect(port, proxy_host)
    if user is None:
        s.sendall(b"\x05\x01\x00" + b"\x05" + bytes([cmd]) + b"\x00" + addr_bytes(host, tport) + early)
        assert recv_exact(s, 2) == b"\x05\x00"
    else:
        u, p = user.encode(), password.encode()
        s.sendall(b"\x05\x01\x02" + b"\x01" + bytes([len(u)]) + u + bytes([len(p)]) + p +
                  b"\x05" + bytes([cmd]) + b"\x00" + addr_bytes(host, tport) + early)
        assert recv_exact(s, 2) == b"\x05\x02"
        st = recv_exact(s, 2)
        if st != b"\x01\x00":
            return s, None, st
    rep, bound = read_reply(s)
    return s, rep, bound


def udp_header(host, port):
    return b"\x00\x00\x00" + addr_bytes(host, port)


def parse_udp(data):
    assert data[:3] == b"\x00\x00\x00", data[:10]
    atyp = data[3]
    if atyp == 1:
        host = socket.inet_ntop(socket.AF_INET, data[4:8])
        off = 8
    elif atyp == 4:
        host = socket.inet_ntop(socket.AF_INET6, data[4:20])
        off = 20
    else:
        n = data[4]
        host = data[5:5 + n].decode()
        off = 5 + n
    port = struct.unpack("!H", data[off:off + 2])[0]
    return host, port, data[off + 2:]
