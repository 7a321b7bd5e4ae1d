#!/usr/bin/env python3
"""A gRPC echo service for ringgate's gRPC tests (issue 23): the upstream behind a
`protocol = "h2"` upstream, reached over h2c.

Raw-bytes methods (no .proto, no generated code: messages are bytes as they are), on
service `ringgate.test.Echo`:
  Unary(bytes) -> bytes                   the request, echoed
  ServerStream(bytes) -> stream bytes     the request N times, N = its first byte (0: none)
  ClientStream(stream bytes) -> bytes     the requests joined
  Bidi(stream bytes) -> stream bytes      each request echoed as it arrives
  Fail(bytes) -> error                    grpc-status = the first byte, message "failed",
                                          trailing metadata x-reason: "on purpose" and
                                          x-detail-bin: the request
  Sleep(bytes) -> bytes                   answers after the first byte x 100 ms (deadlines)

Binds 127.0.0.1:0 and prints `PORT <n>` on stdout (flushed) once serving; runs until
stdin closes or a signal ends it. `--tls CERT KEY` serves TLS (grpcio offers ALPN h2)
with that PEM chain and key instead of h2c. Needs grpcio (`pip install grpcio`).
"""
import sys
import threading
import time
from concurrent import futures

try:
    import grpc
except ImportError:
    sys.stderr.write("grpcio is needed: pip install grpcio\n")
    sys.exit(2)

SERVICE = "ringgate.test.Echo"


def unary(request, context):
    return request


def server_stream(request, context):
    count = request[0] if request else 0
    for _ in range(count):
        yield request


def client_stream(requests, context):
    return b"".join(requests)


def bidi(requests, context):
    for r in requests:
        yield r


def fail(request, context):
    code = request[0] if request else 2
    status = next((s for s in grpc.StatusCode if s.value[0] == code), grpc.StatusCode.UNKNOWN)
    context.set_trailing_metadata((("x-reason", "on purpose"), ("x-detail-bin", bytes(request))))
    context.abort(status, "failed")


def sleep(request, context):
    time.sleep((request[0] if request else 0) * 0.1)
    return request


def main():
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Sleep": grpc.unary_unary_rpc_method_handler(sleep),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    if len(sys.argv) == 4 and sys.argv[1] == "--tls":
        with open(sys.argv[2], "rb") as c, open(sys.argv[3], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port("127.0.0.1:0", creds)
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    # Ends when the test closes our stdin (or kills us).
    threading.Thread(target=lambda: (sys.stdin.read(), server.stop(0)), daemon=True).start()
    server.wait_for_termination()


if __name__ == "__main__":
    main()
