"""A WebSocket client over HTTP/2 (RFC 8441 extended CONNECT) for tests/websocket_h2.rs.

Usage: ws_client.py MODE ADDR PATH [SCHEME]
  ADDR host:port of the proxy; SCHEME "https" (TLS, ALPN h2; CA and HOST from the
  environment) or "http" (h2c, prior knowledge). ORIGIN (environment) adds an origin.
Frames: the Python `h2` package; WebSocket framing: `websockets`' sans-I/O Protocol
(client side: masked frames), started OPEN since the handshake is the HTTP/2 stream's.
Prints what it saw; a failed check raises (non-zero exit).
"""

import hashlib
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side, State

HOST = os.environ.get("HOST", "app.test")


class Stream:
    def __init__(self):
        self.headers = None
        self.data = bytearray()
        self.ended = False
        self.reset = None


class H2:
    """One HTTP/2 connection; `pump` reads once and files events by stream."""

    def __init__(self, addr, scheme):
        host, port = addr.rsplit(":", 1)
        sock = socket.create_connection((host, int(port)), timeout=60)
        if scheme == "https":
            ctx = ssl.create_default_context(cafile=os.environ["CA"])
            ctx.set_alpn_protocols(["h2"])
            sock = ctx.wrap_socket(sock, server_hostname=HOST)
            assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
        self.sock = sock
        self.scheme = scheme
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        )
        self.conn.initiate_connection()
        self.flush()
        self.streams = {}
        self.settings = False
        self.terminated = None
        # Streams whose DATA is never read: their window stays shut (the connection's
        # is still opened, so other streams flow).
        self.held = set()
        self.wait(lambda: self.settings)

    def flush(self):
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def pump(self):
        data = self.sock.recv(1 << 16)
        if not data:
            raise EOFError("the proxy closed the connection")
        for ev in self.conn.receive_data(data):
            st = self.streams.get(getattr(ev, "stream_id", None))
            if isinstance(ev, h2.events.RemoteSettingsChanged):
                self.settings = True
            elif isinstance(ev, h2.events.ResponseReceived):
                st.headers = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id in self.held:
                    st.held_bytes = getattr(st, "held_bytes", 0) + len(ev.data)
                    if ev.flow_controlled_length:
                        self.conn.increment_flow_control_window(ev.flow_controlled_length)
                else:
                    st.data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                st.ended = True
            elif isinstance(ev, h2.events.StreamReset):
                st.reset = ev.error_code
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.terminated = ev.error_code
        self.flush()

    def wait(self, cond):
        while not cond():
            self.pump()

    def request(self, headers, end=False):
        sid = self.conn.get_next_available_stream_id()
        self.streams[sid] = Stream()
        self.conn.send_headers(sid, headers, end_stream=end)
        self.flush()
        return sid

    def connect(self, path, protocol="websocket", extra=()):
        headers = [
            (":method", "CONNECT"),
            (":protocol", protocol),
            (":scheme", self.scheme),
            (":path", path),
            (":authority", HOST),
            ("sec-websocket-version", "13"),
        ]
        if "ORIGIN" in os.environ:
            headers.append(("origin", os.environ["ORIGIN"]))
        headers.extend(extra)
        sid = self.request(headers)
        st = self.streams[sid]
        self.wait(lambda: st.headers is not None or st.reset is not None)
        return sid

    def send(self, sid, data, end=False):
        """Sends within the stream's and the connection's windows."""
        view = memoryview(data)
        while len(view):
            room = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size)
            if room <= 0:
                self.pump()
                continue
            self.conn.send_data(sid, view[:room].tobytes())
            view = view[room:]
            self.flush()
        if end:
            self.conn.end_stream(sid)
            self.flush()


class WebSocket:
    """A WebSocket on an open RFC 8441 stream."""

    def __init__(self, h, sid):
        self.h, self.sid = h, sid
        self.ws = Protocol(Side.CLIENT, state=State.OPEN, max_size=None)
        self.eof_fed = False
        self.frames = []

    def flush(self):
        for chunk in self.ws.data_to_send():
            if chunk:
                self.h.send(self.sid, chunk)
            else:
                # The WebSocket's end of stream: END_STREAM (half-close).
                self.h.conn.end_stream(self.sid)
                self.h.flush()

    def feed(self):
        st = self.h.streams[self.sid]
        if st.data:
            self.ws.receive_data(bytes(st.data))
            st.data.clear()
        if st.ended and not self.eof_fed:
            self.eof_fed = True
            self.ws.receive_eof()
        self.frames.extend(self.ws.events_received())
        self.flush()

    def next_frame(self):
        st = self.h.streams[self.sid]
        while not self.frames:
            if st.reset is not None:
                raise ConnectionError(f"stream reset ({st.reset})")
            if self.eof_fed:
                raise EOFError("stream ended")
            self.h.pump()
            self.feed()
        return self.frames.pop(0)

    def recv(self):
        """The next message (fragments joined); pings are answered by the protocol."""
        parts, kind = [], None
        while True:
            f = self.next_frame()
            if f.opcode in (Opcode.PING, Opcode.PONG):
                continue
            if f.opcode == Opcode.CLOSE:
                raise CloseReceived(self.ws.close_rcvd)
            if f.opcode != Opcode.CONT:
                kind = f.opcode
            parts.append(f.data)
            if f.fin:
                data = b"".join(parts)
                return data.decode() if kind == Opcode.TEXT else data


class CloseReceived(Exception):
    def __init__(self, close):
        super().__init__(close)
        self.close = close


def main():
    mode, addr, path = sys.argv[1], sys.argv[2], sys.argv[3]
    scheme = sys.argv[4] if len(sys.argv) > 4 else "https"
    h = H2(addr, scheme)
    print("setting", h.conn.remote_settings.enable_connect_protocol)
    if mode == "setting":
        return
    if mode == "plain-connect":
        sid = h.request([(":method", "CONNECT"), (":authority", HOST + ":443")])
        st = h.streams[sid]
        h.wait(lambda: st.headers is not None or st.reset is not None)
        print("status " + st.headers[":status"] if st.headers else "reset")
        return
    if mode == "protocol":
        sid = h.connect(path, protocol=os.environ["PROTOCOL"])
        st = h.streams[sid]
        print("status " + st.headers[":status"] if st.headers else "reset")
        return
    if mode == "status":
        sid = h.connect(path)
        st = h.streams[sid]
        # (A response that ends the stream may be followed by RST_STREAM NO_ERROR: the
        # client's side was still open.)
        if st.headers is None:
            print("reset", st.reset)
            return
        print("status", st.headers[":status"])
        if st.headers[":status"] != "200":
            h.wait(lambda: st.ended or st.reset is not None)
            print("body", bytes(st.data).decode(errors="replace").strip())
        return
    sid = h.connect(path, extra=[("sec-websocket-protocol", "chat")] if mode == "echo" else ())
    st = h.streams[sid]
    assert st.headers[":status"] == "200", st.headers
    ws = WebSocket(h, sid)
    if mode == "echo":
        # The 101's end-to-end fields, not its accept value nor Upgrade/Connection.
        assert "sec-websocket-accept" not in st.headers, st.headers
        assert "upgrade" not in st.headers and "connection" not in st.headers, st.headers
        print("subprotocol", st.headers.get("sec-websocket-protocol"))
        ws.ws.send_text("héllo wörld".encode())
        ws.flush()
        assert ws.recv() == "héllo wörld"
        data = os.urandom(1000)
        ws.ws.send_binary(data)
        ws.flush()
        assert ws.recv() == data
        ws.ws.send_text(b"frag-1 ", fin=False)
        ws.ws.send_continuation(b"frag-2 ", fin=False)
        ws.ws.send_continuation(b"frag-3", fin=True)
        ws.flush()
        assert ws.recv() == "frag-1 frag-2 frag-3"
        ws.ws.send_binary(b"\x00\x01", fin=False)
        ws.ws.send_continuation(b"\x02" * 70000, fin=False)
        ws.ws.send_continuation(b"\x03", fin=True)
        ws.flush()
        assert ws.recv() == b"\x00\x01" + b"\x02" * 70000 + b"\x03"
        big = os.urandom(16 << 20)
        ws.ws.send_binary(big)
        ws.flush()
        back = ws.recv()
        assert hashlib.sha256(back).hexdigest() == hashlib.sha256(big).hexdigest()
        print("16 MiB ok")
        ws.ws.send_ping(b"are you there")
        ws.flush()
        while True:
            f = ws.next_frame()
            if f.opcode == Opcode.PONG:
                assert f.data == b"are you there"
                break
        print("pong ok")
        ws.ws.send_close(4000, "client done")
        ws.flush()
        try:
            ws.recv()
            raise AssertionError("no close came back")
        except CloseReceived as e:
            print("closed", e.close.code, e.close.reason)
        # The upstream's EOF after the close: END_STREAM.
        h.wait(lambda: st.ended or st.reset is not None)
        print("stream", "ended" if st.ended else f"reset {st.reset}")
    elif mode == "closed-by-server":
        try:
            ws.recv()
            print("no close")
        except CloseReceived as e:
            print("closed", e.close.code, e.close.reason)
    elif mode == "idle":
        try:
            ws.recv()
            print("a message came")
        except CloseReceived:
            print("close frame")
        except ConnectionError:
            print("reset", st.reset)
        except EOFError:
            print("ended")
    elif mode == "second-stream":
        ws.ws.send_text(b"one")
        ws.flush()
        assert ws.recv() == "one"
        # A plain request on the same connection while the tunnel is open.
        other = h.request(
            [(":method", "GET"), (":scheme", scheme), (":path", "/plain"), (":authority", HOST)],
            end=True,
        )
        ost = h.streams[other]
        h.wait(lambda: ost.ended or ost.reset is not None)
        print("second stream", ost.headers[":status"] if ost.headers else f"reset {ost.reset}")
        # And a second tunnel beside the first.
        sid2 = h.connect(path)
        ws2 = WebSocket(h, sid2)
        ws2.ws.send_text(b"two")
        ws2.flush()
        assert ws2.recv() == "two"
        ws.ws.send_text(b"three")
        ws.flush()
        assert ws.recv() == "three"
        print("tunnels ok")
    elif mode == "hold":
        # Never read the tunnel: the proxy may send only the stream's window.
        h.held.add(sid)
        for _ in range(3):
            other = h.request(
                [(":method", "GET"), (":scheme", scheme), (":path", "/plain"), (":authority", HOST)],
                end=True,
            )
            ost = h.streams[other]
            h.wait(lambda: ost.ended or ost.reset is not None)
            assert ost.headers is not None, ost.reset
        print("held", getattr(st, "held_bytes", 0) <= 65535, "others served")
        sys.stdout.flush()
        # Kept open until the test has counted what the upstream could write.
        sys.stdin.read()
    elif mode == "half":
        # Raw bytes (the upstream does not speak WebSocket), then END_STREAM.
        h.send(sid, b"x" * 1000, end=True)
        h.wait(lambda: st.ended or st.reset is not None)
        print(bytes(st.data).decode())
        print("stream", "ended" if st.ended else f"reset {st.reset}")
    elif mode in ("rst", "drop"):
        ws.ws.send_text(b"before the reset")
        ws.flush()
        assert ws.recv() == "before the reset"
        if mode == "rst":
            h.conn.reset_stream(sid, error_code=8)
            h.flush()
            print("reset sent")
        else:
            # The connection lost: no RST_STREAM, no GOAWAY.
            h.sock.close()
            print("connection dropped")
        sys.stdout.flush()
        # The connection stays open while the test watches the proxy's metrics.
        sys.stdin.read()
    elif mode == "tunnels-full":
        ws.ws.send_text(b"held")
        ws.flush()
        assert ws.recv() == "held"
        sid2 = h.connect(path)
        st2 = h.streams[sid2]
        h.wait(lambda: st2.ended or st2.reset is not None)
        print("second tunnel", st2.headers[":status"] if st2.headers else f"reset {st2.reset}")
        ws.ws.send_text(b"still")
        ws.flush()
        assert ws.recv() == "still"
        print("first tunnel ok")
    else:
        raise SystemExit(f"unknown mode {mode}")


main()
