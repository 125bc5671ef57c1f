"""HTTP/2 test clients: a small blocking client on python3-h2 (streams,
flow control under the test's control), and raw frames (hyperframe + hpack)
for the floods a well-behaved library refuses to send."""

import socket
import ssl
import struct
import time

import h2.config
import h2.connection
import h2.events
import h2.settings
import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def open_socket(port, tls=False, timeout=10, alpn=("h2",)):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    if tls:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.set_alpn_protocols(list(alpn))
        s = ctx.wrap_socket(s, server_hostname="a.test")
    return s


class Stream:
    def __init__(self):
        self.status = None
        self.headers = {}
        self.informational = []
        self.data = bytearray()
        self.ended = False
        self.reset = None


class Client:
    """One HTTP/2 connection. Data is acknowledged (window updates) as it
    arrives, except on streams listed in `hold` (their bytes still count
    for the connection window, which is reopened)."""

    def __init__(self, port, tls=False, timeout=10, sock=None, upgrade_settings=None):
        self.tls = tls
        self.s = sock or open_socket(port, tls, timeout)
        if tls:
            assert self.s.selected_alpn_protocol() == "h2"
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8",
                                        validate_outbound_headers=False)
        self.c = h2.connection.H2Connection(config=cfg)
        if upgrade_settings is not None:
            self.c.initiate_upgrade_connection(upgrade_settings)
        else:
            self.c.initiate_connection()
        self.streams = {}
        self.hold = set()
        self.goaway = None
        self.closed = False
        self.pings = 0
        self.flush()

    def sync(self, timeout=10):
        """A PING round trip: the server has read everything sent before."""
        want = self.pings + 1
        self.c.ping(b"wmsync00")
        self.flush()
        self.wait(lambda: self.pings >= want, timeout, "PING ack")

    def flush(self):
        d = self.c.data_to_send()
        if d:
            self.s.sendall(d)

    def request(self, path, method="GET", headers=(), body=None, authority="a.test",
                end=True, extra_pseudo=()):
        sid = self.c.get_next_available_stream_id()
        hd = [(":method", method), (":scheme", "https" if self.tls else "http"),
              (":authority", authority), (":path", path)] + list(extra_pseudo) + list(headers)
        self.c.send_headers(sid, hd, end_stream=body is None and end)
        self.streams[sid] = Stream()
        if body is not None:
            self.send(sid, body, end)
        self.flush()
        return sid

    def send(self, sid, data, end=False):
        """Send what the windows allow; returns the bytes sent."""
        n = min(len(data), self.c.local_flow_control_window(sid))
        off = 0
        while off < n:
            k = min(n - off, self.c.max_outbound_frame_size)
            self.c.send_data(sid, data[off:off + k])
            off += k
        if end and n == len(data):
            self.c.end_stream(sid)
        self.flush()
        return n

    def pump(self, timeout=0.5):
        self.s.settimeout(timeout)
        try:
            d = self.s.recv(65536)
        except (socket.timeout, ssl.SSLWantReadError):
            return False
        except (ConnectionResetError, ssl.SSLError):
            d = b""
        if not d:
            self.closed = True
            return False
        for ev in self.c.receive_data(d):
            self._event(ev)
        self.flush()
        return True

    def _event(self, ev):
        st = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived) and st is not None:
            st.headers = dict(ev.headers)
            st.status = int(st.headers[":status"])
        elif isinstance(ev, h2.events.InformationalResponseReceived) and st is not None:
            st.informational.append(dict(ev.headers))
        elif isinstance(ev, h2.events.DataReceived):
            if st is not None:
                st.data += ev.data
            if ev.stream_id in self.hold:
                self.c.increment_flow_control_window(ev.flow_controlled_length)
            else:
                self.c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and st is not None:
            st.ended = True
        elif isinstance(ev, h2.events.StreamReset) and st is not None:
            st.reset = ev.error_code
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.goaway = ev
            if ev.error_code == 0:
                # a graceful GOAWAY: streams up to last_stream_id go on
                # (python3-h2 would refuse their frames from now on)
                self.c.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        elif isinstance(ev, h2.events.PingAckReceived):
            self.pings += 1

    def wait(self, cond, timeout=10, what="condition"):
        end = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > end:
                raise AssertionError("timeout waiting for " + what)
            if self.closed:
                raise AssertionError("connection closed waiting for " + what)
            self.pump()

    def response(self, sid, timeout=10):
        st = self.streams[sid]
        self.wait(lambda: st.ended or st.reset is not None, timeout, "stream %d" % sid)
        return st

    def get(self, path, **kw):
        st = self.response(self.request(path, **kw))
        return st.status, st.headers, bytes(st.data)

    def close(self):
        try:
            self.c.close_connection()
            self.flush()
        except Exception:
            pass
        self.s.close()


# ---- raw frames ----

def frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", sid) + payload


def raw_open(port, tls=False):
    """A connection with the preface and an empty SETTINGS sent."""
    s = open_socket(port, tls)
    s.sendall(PREFACE + frame(4, 0, 0))
    return s


def headers_block(path="/", authority="a.test", method="GET", extra=()):
    enc = hpack.Encoder()
    return enc.encode([(":method", method), (":scheme", "http"), (":authority", authority),
                       (":path", path)] + list(extra))


def read_frames(s, timeout=10, until_goaway=True):
    """Frames from the server until GOAWAY (or close/timeout): a list of
    (type, flags, stream, payload)."""
    buf = b""
    out = []
    end = time.monotonic() + timeout
    s.settimeout(0.5)
    while time.monotonic() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        if not d:
            break
        buf += d
        while len(buf) >= 9:
            n = struct.unpack(">I", b"\0" + buf[:3])[0]
            if len(buf) < 9 + n:
                break
            f = (buf[3], buf[4], struct.unpack(">I", buf[5:9])[0] & 0x7fffffff, buf[9:9 + n])
            out.append(f)
            buf = buf[9 + n:]
            if until_goaway and f[0] == 7:
                return out
    return out


def goaway_of(frames):
    """(last stream id, error code) of the GOAWAY among frames, or None."""
    for t, _, _, p in frames:
        if t == 7:
            return struct.unpack(">II", p[:8])
    return None
