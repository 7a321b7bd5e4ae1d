//! The WebSocket tests' shared pieces (tests/websocket.rs over HTTP/1.1,
//! tests/websocket_h2.rs over HTTP/2): the Python `websockets` echo server used as the
//! upstream, and a runner for Python scripts that fails with an install hint when a
//! package is missing.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use super::child::ChildGuard;

pub const HINT: &str = "python3 -m pip install 'websockets>=13' kosoku (./test.sh installs them)";

/// The upstream: echoes every message; `/close-CODE` closes with CODE at once;
/// `/forbidden` answers 403 instead of switching; picks the `chat` subprotocol when
/// offered. Prints its port.
pub const ECHO_SERVER: &str = r#"
import asyncio, logging
from websockets.asyncio.server import serve

# The Autobahn cases send broken frames on purpose: their errors are expected.
logging.getLogger("websockets").setLevel(logging.CRITICAL)

async def handler(ws):
    path = ws.request.path
    if path.startswith("/close-"):
        await ws.close(int(path[len("/close-"):]), "server says bye")
        return
    async for message in ws:
        await ws.send(message)

def process_request(conn, request):
    if request.path.endswith("/forbidden"):
        return conn.respond(403, "no WebSocket here\n")
    return None

async def main():
    # The `chat` subprotocol when the client offers it (no subprotocol otherwise).
    select = lambda conn, offered: "chat" if "chat" in offered else None
    async with serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None,
                     process_request=process_request, select_subprotocol=select) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().create_future()

asyncio.run(main())
"#;

/// Runs `python3 -c SCRIPT ARGS` with `env`; its stdout (panics with stderr on failure).
/// What a raw tunnel upstream says after reading to the client's EOF: `got N bytes,
/// then EOF`, N counting `already` (bytes past the head read with it); `None` when the
/// read failed before an EOF (no answer then).
pub fn count_to_eof(conn: &mut impl Read, already: usize) -> Option<String> {
    let mut n = already;
    let mut tmp = [0u8; 4096];
    loop {
        match conn.read(&mut tmp) {
            Ok(0) => return Some(format!("got {n} bytes, then EOF")),
            Ok(m) => n += m,
            Err(_) => return None,
        }
    }
}

pub fn python(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd, "python3");
    let mut out = String::new();
    let mut err = String::new();
    child
        .take_stdout()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read stdout");
    child
        .take_stderr()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read stderr");
    let status = child.wait();
    if err.contains("ModuleNotFoundError") {
        panic!("a Python package is missing: {HINT}\n{err}");
    }
    assert!(
        status.success(),
        "python {args:?} failed: {status}\n{out}\n{err}"
    );
    out.trim().to_string()
}

/// The Python echo server, running until dropped.
pub struct EchoServer {
    _child: ChildGuard,
    pub addr: SocketAddr,
}

impl EchoServer {
    pub fn start() -> EchoServer {
        let mut cmd = Command::new("python3");
        cmd.arg("-c")
            .arg(ECHO_SERVER)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = ChildGuard::spawn(&mut cmd, "python3");
        let mut line = String::new();
        BufReader::new(child.take_stdout().expect("stdout"))
            .read_line(&mut line)
            .expect("read the echo server's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the echo server did not start ({line:?}): {HINT}"));
        EchoServer {
            _child: child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }
}
