#!/usr/bin/env python3
"""Open N idle TLS keep-alive connections to a local HTTPS proxy and hold them.

    python3 loadtest/idle_conns.py --port 19443 -n 10000 [--path /bytes/12] [--h2]
        [--concurrency 200] [--timeout 120] [--hold 300] <FIFO

Each connection completes a TLS handshake and one HTTP/1.1 request (response read in
full, connection kept alive), then sits idle. With --h2 it offers ALPN h2 only, sends
the connection preface and SETTINGS, one GET (its response read in full, the window
given back), then sits idle while a task per connection answers whatever the proxy
sends (PING, SETTINGS; a GOAWAY or a close ends that connection, counted at release). At most --concurrency connections are
being opened at a time (1 = sequentially, one after the other). When every connection is
open (or has failed, or --timeout seconds have passed) it prints one line to stdout:

    ready open=N failed=M secs=T

and holds all connections until stdin reaches EOF or gets a line, SIGTERM/SIGINT
arrives, or --hold seconds pass (a bound, so it never runs forever); then it prints
`released open=N` and closes them. So stdin must stay open while the connections are
wanted: a fifo whose write end the caller closes after its measurement (compare.sh), or a
terminal. With stdin on /dev/null or a regular file (which cannot be polled) it says so
on stderr and holds until a signal or --hold. Only 127.0.0.1 is contacted. The caller
must raise `ulimit -n` above N first.
"""
import argparse
import asyncio
import signal
import ssl
import sys
import time


async def one(port, path, ctx, sem, conns, errors):
    async with sem:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                 server_hostname="localhost")
            w.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
            await w.drain()
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    length = int(v.strip())
            if length:
                await r.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n")[0].decode(errors="replace"))
            conns.append((r, w))
        except Exception as e:  # noqa: BLE001 - count every failure kind
            errors[type(e).__name__ + ": " + str(e)[:80]] = errors.get(
                type(e).__name__ + ": " + str(e)[:80], 0) + 1


async def one_h2(port, path, ctx, sem, conns, errors):
    import h2.config
    import h2.connection
    import h2.events
    async with sem:
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                 server_hostname="localhost")
            alpn = w.get_extra_info("ssl_object").selected_alpn_protocol()
            if alpn != "h2":
                raise RuntimeError(f"ALPN chose {alpn!r}")
            c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            c.initiate_connection()
            c.send_headers(1, [(":method", "GET"), (":scheme", "https"),
                               (":authority", "localhost"), (":path", path)],
                           end_stream=True)
            w.write(c.data_to_send())
            await w.drain()
            status, ended = None, False
            while not ended:
                data = await r.read(65536)
                if not data:
                    raise RuntimeError("closed before the response ended")
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.ResponseReceived):
                        status = dict(ev.headers).get(b":status")
                    elif isinstance(ev, h2.events.DataReceived):
                        c.acknowledge_received_data(ev.flow_controlled_length, 1)
                    elif isinstance(ev, h2.events.StreamEnded):
                        ended = True
                    elif isinstance(ev, (h2.events.StreamReset,
                                         h2.events.ConnectionTerminated)):
                        raise RuntimeError(type(ev).__name__)
                w.write(c.data_to_send())
            await w.drain()
            if status != b"200":
                raise RuntimeError(f"status {status!r}")
            conns.append((r, w))
        except Exception as e:  # noqa: BLE001 - count every failure kind
            key = type(e).__name__ + ": " + str(e)[:80]
            errors[key] = errors.get(key, 0) + 1
            return
    # Idle: answer PINGs and SETTINGS until the proxy closes or the caller aborts.
    try:
        while True:
            data = await r.read(65536)
            if not data:
                break
            c.receive_data(data)
            out = c.data_to_send()
            if out:
                w.write(out)
    except Exception:  # noqa: BLE001 - the connection is over; counted at release
        pass
    ended_early.append(1)


ended_early = []


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/bytes/12")
    ap.add_argument("--h2", action="store_true",
                    help="HTTP/2 (ALPN h2) instead of HTTP/1.1")
    ap.add_argument("--concurrency", type=int, default=200,
                    help="connections being opened at once; 1 = sequentially")
    ap.add_argument("--timeout", type=float, default=180.0,
                    help="bound on the time spent opening")
    ap.add_argument("--hold", type=float, default=300.0,
                    help="bound on the time spent holding")
    a = ap.parse_args()
    if a.concurrency < 1:
        ap.error("--concurrency must be at least 1")

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if a.h2:
        ctx.set_alpn_protocols(["h2"])

    conns, errors = [], {}
    sem = asyncio.Semaphore(a.concurrency)
    t0 = time.monotonic()
    opener = one_h2 if a.h2 else one
    tasks = [asyncio.create_task(opener(a.port, a.path, ctx, sem, conns, errors))
             for _ in range(a.n)]
    # An h2 task runs on after its connection is open (it answers the proxy): wait
    # for every connection to be open or failed, not for the tasks to end.
    t_end = time.monotonic() + a.timeout
    while len(conns) + sum(errors.values()) < a.n and time.monotonic() < t_end:
        await asyncio.sleep(0.05)
    failed = a.n - len(conns)
    print(f"ready open={len(conns)} failed={failed} secs={time.monotonic() - t0:.1f}",
          flush=True)
    for k, v in sorted(errors.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  error x{v}: {k}", file=sys.stderr)

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(s, stop.set)
    try:
        loop.add_reader(sys.stdin.fileno(), stop.set)
    except (OSError, ValueError) as e:  # /dev/null, a regular file: epoll refuses them
        print(f"stdin cannot be polled ({e}): holding until a signal or --hold",
              file=sys.stderr)
    try:
        await asyncio.wait_for(stop.wait(), timeout=a.hold)
    except asyncio.TimeoutError:
        pass
    print(f"released open={len(conns)} ended_early={len(ended_early)}", flush=True)
    for _, w in conns:
        w.transport.abort()
    for t in tasks:
        t.cancel()


if __name__ == "__main__":
    asyncio.run(main())
