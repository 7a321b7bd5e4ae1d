#!/usr/bin/env python3
"""Open N idle TLS keep-alive connections to a local HTTPS proxy and hold them.

    python3 loadtest/idle_conns.py --port 19443 -n 10000 [--path /bytes/12]
        [--concurrency 200] [--timeout 120] [--hold 300] <FIFO

Each connection completes a TLS handshake and one HTTP/1.1 request (response read in
full, connection kept alive), then sits idle. At most --concurrency connections are
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


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--path", default="/bytes/12")
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

    conns, errors = [], {}
    sem = asyncio.Semaphore(a.concurrency)
    t0 = time.monotonic()
    tasks = [asyncio.create_task(one(a.port, a.path, ctx, sem, conns, errors))
             for _ in range(a.n)]
    done, pending = await asyncio.wait(tasks, timeout=a.timeout)
    for t in pending:
        t.cancel()
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
    print(f"released open={len(conns)}", flush=True)
    for _, w in conns:
        w.transport.abort()


if __name__ == "__main__":
    asyncio.run(main())
