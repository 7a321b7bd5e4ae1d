#!/usr/bin/env python3
"""GET and POST bodies over HTTP/2 with the Python `h2` package (tests/http2_clients.rs).

    python3 bodies.py ADDR PORT SIZES...      (env: CA and HOST for TLS with ALPN h2;
                                               without CA: h2c, prior knowledge)

On one connection, for each size N: GET /bytes/N, printing `GET N <sha256 of the
body>` (the test compares it with its backend's pattern); then POST /echo with N random
bytes, checking that the echoed body and the backend's `x-body-sha256` both match what
was sent, printing `POST N ok`. Request DATA is sent as the windows allow; received DATA
is acknowledged as it is read. Any failure raises (non-zero exit).
"""
import hashlib
import os
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.events


def connect(addr, port):
    sock = socket.create_connection((addr, port), timeout=60)
    ca = os.environ.get("CA")
    if ca:
        ctx = ssl.create_default_context(cafile=ca)
        ctx.set_alpn_protocols(["h2"])
        sock = ctx.wrap_socket(sock, server_hostname=os.environ["HOST"])
        assert sock.selected_alpn_protocol() == "h2", sock.selected_alpn_protocol()
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.increment_flow_control_window(16 << 20)
    sock.sendall(conn.data_to_send())
    return sock, conn


def exchange(sock, conn, method, path, body):
    """One request; returns (status, headers, body)."""
    sid = conn.get_next_available_stream_id()
    authority = os.environ.get("HOST", "app.test")
    headers = [(":method", method), (":path", path), (":scheme", "https" if os.environ.get("CA") else "http"),
               (":authority", authority)]
    if body is not None:
        headers.append(("content-length", str(len(body))))
    conn.send_headers(sid, headers, end_stream=body is None or len(body) == 0)
    rest = memoryview(body or b"")
    status, got, resp_headers, ended = None, bytearray(), {}, False
    while not ended:
        # Send what the windows allow.
        while len(rest) > 0:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(rest))
            if room <= 0:
                break
            conn.send_data(sid, bytes(rest[:room]), end_stream=room == len(rest))
            rest = rest[room:]
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
        data = sock.recv(65536)
        if not data:
            raise SystemExit("connection closed")
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                resp_headers = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
                                for k, v in ev.headers}
                status = int(resp_headers[":status"])
            elif isinstance(ev, h2.events.DataReceived):
                if ev.stream_id == sid:
                    got += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == sid:
                ended = True
            elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                raise SystemExit(f"stream reset: {ev.error_code}")
            elif isinstance(ev, h2.events.ConnectionTerminated):
                raise SystemExit(f"GOAWAY: {ev.error_code}")
        out = conn.data_to_send()
        if out:
            sock.sendall(out)
    return status, resp_headers, bytes(got)


def main():
    addr, port, sizes = sys.argv[1], int(sys.argv[2]), [int(s) for s in sys.argv[3:]]
    sock, conn = connect(addr, port)
    for n in sizes:
        status, _, body = exchange(sock, conn, "GET", f"/bytes/{n}", None)
        assert status == 200 and len(body) == n, (n, status, len(body))
        print(f"GET {n} {hashlib.sha256(body).hexdigest()}", flush=True)
        sent = os.urandom(n)
        want = hashlib.sha256(sent).hexdigest()
        status, headers, body = exchange(sock, conn, "POST", "/echo", sent)
        assert status == 200, (n, status)
        assert headers.get("x-body-sha256") == want, (n, headers.get("x-body-sha256"), want)
        assert hashlib.sha256(body).hexdigest() == want, (n, len(body))
        print(f"POST {n} ok", flush=True)
    conn.close_connection()
    sock.sendall(conn.data_to_send())
    sock.close()


if __name__ == "__main__":
    main()
