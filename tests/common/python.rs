//! Python peers of the tests: running a script to its end ([`run`]) and the gRPC service
//! of `tests/grpc/echo_server.py` ([`GrpcioService`]) with its client
//! (`tests/grpc/client.py`, [`grpc_client`]). A missing interpreter or package fails the
//! test with the command that installs it (`./test.sh` does) — never a silent pass. The
//! WebSocket client script ([`WS_CLIENT`]) is here too; the WebSocket echo server and
//! its runner are in [`super::websocket`].

use std::ffi::OsStr;
use std::io::Read;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::child::ChildGuard;

/// The Python `websockets` client (`python3 -c WS_CLIENT MODE URI`, run with
/// [`super::websocket::python`]); CA, HOST
/// (for wss), ORIGIN, BIG (the large message's bytes, default 16 MiB) and CONNECT
/// (`ip:port` to connect to instead of the URI's host) from the environment. Prints
/// what it saw; any failed check raises (non-zero exit).
pub const WS_CLIENT: &str = r#"
import asyncio, hashlib, os, ssl, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

async def main():
    mode, uri = sys.argv[1], sys.argv[2]
    kw = dict(max_size=None, ping_interval=None, open_timeout=30, close_timeout=30)
    if uri.startswith("wss:"):
        kw["ssl"] = ssl.create_default_context(cafile=os.environ["CA"])
        kw["server_hostname"] = os.environ["HOST"]
    if "ORIGIN" in os.environ:
        kw["origin"] = os.environ["ORIGIN"]
    if "CONNECT" in os.environ:
        # Where the TCP connection goes; the URI's host stays the Host (and SNI) name.
        kw["host"], port = os.environ["CONNECT"].rsplit(":", 1)
        kw["port"] = int(port)
    if mode == "status":
        try:
            async with connect(uri, **kw) as ws:
                await ws.send("x")
                assert await ws.recv() == "x"
                print("open")
        except InvalidStatus as e:
            print("status", e.response.status_code)
        return
    async with connect(uri, **kw) as ws:
        if mode == "echo":
            await ws.send("héllo wörld")
            assert await ws.recv() == "héllo wörld"
            data = os.urandom(1000)
            await ws.send(data)
            assert await ws.recv() == data
            await ws.send(["frag-1 ", "frag-2 ", "frag-3"])
            assert await ws.recv() == "frag-1 frag-2 frag-3"
            await ws.send([b"\x00\x01", b"\x02" * 70000, b"\x03"])
            assert await ws.recv() == b"\x00\x01" + b"\x02" * 70000 + b"\x03"
            big = os.urandom(int(os.environ.get("BIG", 16 << 20)))
            await ws.send(big)
            back = await ws.recv()
            assert hashlib.sha256(back).hexdigest() == hashlib.sha256(big).hexdigest()
            pong = await ws.ping(b"are you there")
            await asyncio.wait_for(pong, 30)
            await ws.close(4000, "client done")
            print("echo ok, closed", ws.close_code, ws.close_reason)
        elif mode == "too-big":
            # One message of BIG bytes, which the server refuses: its close code.
            try:
                await ws.send(os.urandom(int(os.environ["BIG"])))
                await ws.recv()
                print("no close")
            except ConnectionClosed as e:
                print("closed", None if e.rcvd is None else e.rcvd.code)
        elif mode == "closed-by-server":
            try:
                await ws.recv()
                print("no close")
            except ConnectionClosed as e:
                print("closed", e.rcvd.code, e.rcvd.reason)
        elif mode == "idle":
            try:
                await asyncio.wait_for(ws.recv(), 120)
                print("a message came")
            except ConnectionClosed as e:
                print("closed", "without close frame" if e.rcvd is None else e.rcvd.code)

asyncio.run(main())
"#;

/// What installs grpcio.
pub const GRPC_HINT: &str = "python3 -m pip install grpcio (./test.sh installs it)";

/// A file under `tests/`.
pub fn test_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(rel)
}

/// Runs `python3 ARGS` with `env` to its end; its stdout, trimmed. Panics with its
/// stderr when it fails, and with `hint` when a module is missing.
pub fn run<S: AsRef<OsStr>>(args: &[S], env: &[(&str, &str)], hint: &str) -> String {
    let mut cmd = Command::new("python3");
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd, "python3");
    let mut err = String::new();
    let mut stderr = child.take_stderr().expect("stderr");
    // Read on a thread: a child filling both pipes would block either read alone.
    let reader = std::thread::spawn(move || {
        let _ = stderr.read_to_string(&mut err);
        err
    });
    let mut out = String::new();
    child
        .take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    let err = reader.join().unwrap_or_default();
    let status = child.wait();
    if err.contains("ModuleNotFoundError") {
        panic!("a Python package is missing: {hint}\n{err}");
    }
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert!(
        status.success(),
        "python3 {shown:?} failed: {status}\n{out}\n{err}"
    );
    out.trim().to_string()
}

/// `tests/grpc/client.py TARGET SCENARIO` with `env` (`CA` and `HOST` for TLS; `HOST`
/// alone sets the :authority of an h2c call); what it printed.
pub fn grpc_client(target: SocketAddr, scenario: &str, env: &[(&str, &str)]) -> String {
    let script = test_file("grpc/client.py");
    let target = target.to_string();
    run(
        &[
            script.as_os_str(),
            OsStr::new(&target),
            OsStr::new(scenario),
        ],
        env,
        GRPC_HINT,
    )
}

/// tests/grpc/echo_server.py, killed (and its stdin closed) on drop.
pub struct GrpcioService {
    _child: ChildGuard,
    pub addr: SocketAddr,
}

impl GrpcioService {
    pub fn start() -> GrpcioService {
        GrpcioService::start_with(&[])
    }

    /// Served over TLS with this PEM chain and key (ALPN h2), not h2c.
    pub fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> GrpcioService {
        GrpcioService::start_with(&[OsStr::new("--tls"), cert.as_os_str(), key.as_os_str()])
    }

    fn start_with(args: &[&OsStr]) -> GrpcioService {
        let script = test_file("grpc/echo_server.py");
        let mut cmd = Command::new("python3");
        cmd.arg(&script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut child = ChildGuard::spawn(&mut cmd, "python3 (and grpcio from PyPI)");
        let stdout = child.take_stdout().expect("piped stdout");
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line);
        let Some(port) = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse::<u16>().ok())
        else {
            panic!("echo_server.py printed {line:?}, not its port: {GRPC_HINT}");
        };
        GrpcioService {
            _child: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}
