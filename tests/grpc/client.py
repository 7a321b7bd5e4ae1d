#!/usr/bin/env python3
"""A real gRPC client (grpcio) for ringgate's gRPC tests (issue 23): calls the service of
echo_server.py (`ringgate.test.Echo`, raw-bytes methods) through the proxy.

    client.py TARGET SCENARIO

TARGET is host:port. Over TLS when CA is set in the environment (a PEM file: the root
the proxy's certificate chains to; HOST: the name to verify and send as :authority);
otherwise plaintext HTTP/2 (h2c), with HOST, when set, as :authority.

Scenarios (each prints one line; a failed check raises, so the exit status is non-zero):
  echo      unary, server streaming, client streaming and bidi, payloads hash-checked
  fail      Fail(9): prints the code, the message and the custom trailing metadata
  code      Unary (or the full method path in METHOD, e.g. /pkg.Svc/Call): prints the
            status code name (OK or the error's)
  deadline  Sleep(5 s) with a 300 ms deadline: prints the code, then that a unary call
            on the same channel still works
"""
import hashlib
import os
import sys

try:
    import grpc
except ImportError:
    sys.stderr.write("grpcio is needed: pip install grpcio (ModuleNotFoundError)\n")
    sys.exit(2)

SERVICE = "/ringgate.test.Echo/"
# Bounds a call that a broken proxy never answers (the test fails instead of hanging).
BOUND = 60


def ident(b):
    return b


def h(b):
    return hashlib.sha256(b).hexdigest()


def channel(target):
    host = os.environ.get("HOST")
    opts = [("grpc.max_receive_message_length", 32 << 20),
            ("grpc.max_send_message_length", 32 << 20),
            ("grpc.enable_retries", 0)]
    ca = os.environ.get("CA")
    if ca:
        with open(ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        if host:
            opts.append(("grpc.ssl_target_name_override", host))
            opts.append(("grpc.default_authority", host))
        return grpc.secure_channel(target, creds, options=opts)
    if host:
        opts.append(("grpc.default_authority", host))
    return grpc.insecure_channel(target, options=opts)


def method(ch, kind, name):
    make = {"uu": ch.unary_unary, "us": ch.unary_stream,
            "su": ch.stream_unary, "ss": ch.stream_stream}[kind]
    return make(SERVICE + name, request_serializer=ident, response_deserializer=ident)


def echo(ch):
    # Unary: 1 MiB of random bytes.
    big = os.urandom(1 << 20)
    got = method(ch, "uu", "Unary")(big, timeout=BOUND)
    assert h(got) == h(big), "unary: echoed bytes differ"
    # Server streaming: the request 7 times (its first byte says how many).
    req = bytes([7]) + os.urandom(100_000)
    got = list(method(ch, "us", "ServerStream")(req, timeout=BOUND))
    assert len(got) == 7, f"server streaming: {len(got)} messages"
    assert all(h(g) == h(req) for g in got), "server streaming: bytes differ"
    # Client streaming: 50 chunks of varied sizes, joined by the service.
    chunks = [os.urandom(1 + i * 997) for i in range(50)]
    got = method(ch, "su", "ClientStream")(iter(chunks), timeout=BOUND)
    assert h(got) == h(b"".join(chunks)), "client streaming: joined bytes differ"
    # Bidi: each message echoed as it arrives, in order.
    msgs = [os.urandom(1 + (i * 7919) % 200_000) for i in range(40)]
    got = list(method(ch, "ss", "Bidi")(iter(msgs), timeout=BOUND))
    assert [h(g) for g in got] == [h(m) for m in msgs], "bidi: messages differ"
    print("echo ok")


def fail(ch):
    try:
        method(ch, "uu", "Fail")(bytes([9, 1, 2]), timeout=BOUND)
        print("no error")
    except grpc.RpcError as e:
        md = dict(e.trailing_metadata() or ())
        print(e.code().name, repr(e.details()), repr(md.get("x-reason")),
              md.get("x-detail-bin", b"").hex())


def code(ch):
    try:
        path = os.environ.get("METHOD", SERVICE + "Unary")
        ch.unary_unary(path, request_serializer=ident, response_deserializer=ident)(
            b"hello", timeout=BOUND)
        print("OK")
    except grpc.RpcError as e:
        print(e.code().name)


def deadline(ch):
    try:
        method(ch, "uu", "Sleep")(bytes([50]), timeout=0.3)
        print("no error")
        return
    except grpc.RpcError as e:
        print(e.code().name, end=" ")
    got = method(ch, "uu", "Unary")(b"after", timeout=BOUND)
    print("then", got.decode())


def main():
    target, scenario = sys.argv[1], sys.argv[2]
    with channel(target) as ch:
        {"echo": echo, "fail": fail, "code": code, "deadline": deadline}[scenario](ch)


if __name__ == "__main__":
    main()
