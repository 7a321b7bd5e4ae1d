//! Starting the proxy: a TOML config builder, the in-process server, and the real binary.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::pki::CertFiles;

/// How long a launched binary may take to report that it listens.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long an in-process proxy may take to stop (with idle connections still open).
const SHUTDOWN_GUARD: Duration = Duration::from_secs(60);

/// A TOML string literal.
pub fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// One `[[listener.tls.certificates]]` entry.
#[derive(Debug, Clone)]
pub struct CertEntry {
    pub files: CertFiles,
    pub server_names: Option<Vec<String>>,
    pub default: bool,
}

impl From<&CertFiles> for CertEntry {
    fn from(files: &CertFiles) -> CertEntry {
        CertEntry {
            files: files.clone(),
            server_names: None,
            default: false,
        }
    }
}

/// Builds a config file text section by section.
#[derive(Debug, Clone)]
pub struct ConfigBuilder {
    server: Vec<(String, String)>,
    http: Vec<(String, String)>,
    listeners: Vec<String>,
    routes: Vec<String>,
    upstreams: Vec<String>,
    admin: bool,
}

impl Default for ConfigBuilder {
    fn default() -> Self {
        ConfigBuilder::new()
    }
}

impl ConfigBuilder {
    /// `workers = 2` (both exercised) and no core pinning (tests run side by side).
    pub fn new() -> ConfigBuilder {
        ConfigBuilder {
            server: vec![
                ("workers".into(), "2".into()),
                ("pin_workers".into(), "false".into()),
            ],
            http: Vec::new(),
            listeners: Vec::new(),
            routes: Vec::new(),
            upstreams: Vec::new(),
            admin: false,
        }
    }

    /// `[admin] addr = "127.0.0.1:0"`: `/metrics`, `/healthz`, `/readyz`.
    pub fn admin(mut self) -> Self {
        self.admin = true;
        self
    }

    /// Sets `[server] key = value` (`value` is TOML, e.g. `"2"` or `"\"auto\""`).
    pub fn server(mut self, key: &str, value: &str) -> Self {
        self.server.retain(|(k, _)| k != key);
        self.server.push((key.into(), value.into()));
        self
    }

    /// Sets `[http] key = value` (`value` is TOML).
    pub fn http(mut self, key: &str, value: impl ToString) -> Self {
        self.http.retain(|(k, _)| k != key);
        self.http.push((key.into(), value.to_string()));
        self
    }

    /// A TLS listener on `127.0.0.1:0` serving `certs` (the first is the default).
    pub fn tls_listener(self, certs: &[&CertFiles]) -> Self {
        let entries: Vec<CertEntry> = certs.iter().map(|c| CertEntry::from(*c)).collect();
        self.tls_listener_with(&entries, &[("ktls", "\"auto\"")])
    }

    /// A TLS listener with explicit entries and extra `[listener.tls]` settings (TOML values).
    pub fn tls_listener_with(mut self, certs: &[CertEntry], tls: &[(&str, &str)]) -> Self {
        let mut s = String::from("[[listener]]\naddr = \"127.0.0.1:0\"\n[listener.tls]\n");
        for (k, v) in tls {
            let _ = writeln!(s, "{k} = {v}");
        }
        for c in certs {
            s += "[[listener.tls.certificates]]\n";
            let _ = writeln!(s, "cert = {}", toml_str(&c.files.cert.to_string_lossy()));
            let _ = writeln!(s, "key = {}", toml_str(&c.files.key.to_string_lossy()));
            if let Some(names) = &c.server_names {
                let names: Vec<String> = names.iter().map(|n| toml_str(n)).collect();
                let _ = writeln!(s, "server_names = [{}]", names.join(", "));
            }
            if c.default {
                s += "default = true\n";
            }
        }
        self.listeners.push(s);
        self
    }

    /// A plain-HTTP listener on `127.0.0.1:0`.
    pub fn plain_listener(mut self) -> Self {
        self.listeners
            .push("[[listener]]\naddr = \"127.0.0.1:0\"\n".to_string());
        self
    }

    /// A plain listener on `127.0.0.1:0` that also takes HTTP/2 with prior knowledge
    /// (`h2c = true`).
    pub fn h2c_listener(mut self) -> Self {
        self.listeners
            .push("[[listener]]\naddr = \"127.0.0.1:0\"\nh2c = true\n".to_string());
        self
    }

    pub fn route(mut self, host: Option<&str>, prefix: &str, strip: bool, upstream: &str) -> Self {
        let mut s = String::from("[[route]]\n");
        if let Some(h) = host {
            let _ = writeln!(s, "host = {}", toml_str(h));
        }
        let _ = writeln!(s, "path_prefix = {}", toml_str(prefix));
        let _ = writeln!(s, "strip_prefix = {strip}");
        let _ = writeln!(s, "upstream = {}", toml_str(upstream));
        self.routes.push(s);
        self
    }

    /// `[upstream.NAME]` with `servers` and extra settings (TOML values).
    pub fn upstream(mut self, name: &str, servers: &[SocketAddr], extra: &[(&str, &str)]) -> Self {
        let servers: Vec<String> = servers.iter().map(|a| toml_str(&a.to_string())).collect();
        let mut s = format!("[upstream.{name}]\nservers = [{}]\n", servers.join(", "));
        for (k, v) in extra {
            let _ = writeln!(s, "{k} = {v}");
        }
        self.upstreams.push(s);
        self
    }

    pub fn build(&self) -> String {
        let mut s = String::from("[server]\n");
        for (k, v) in &self.server {
            let _ = writeln!(s, "{k} = {v}");
        }
        s += "\n[http]\n";
        for (k, v) in &self.http {
            let _ = writeln!(s, "{k} = {v}");
        }
        for part in self
            .listeners
            .iter()
            .chain(&self.routes)
            .chain(&self.upstreams)
        {
            s += "\n";
            s += part;
        }
        if self.admin {
            s += "\n[admin]\naddr = \"127.0.0.1:0\"\n";
        }
        s
    }
}

/// The proxy running inside the test process.
pub struct Proxy {
    handle: Option<ringgate::server::ServerHandle>,
    addrs: Vec<SocketAddr>,
}

impl Proxy {
    /// Parses `toml` (relative paths from `base`) and starts it; panics with the config
    /// errors or the start error.
    pub fn start(toml: &str, base: &Path) -> Proxy {
        let config = ringgate::config::from_toml_str(toml, "test.toml", base)
            .unwrap_or_else(|e| panic!("test config rejected:\n{e}\n--- config ---\n{toml}"));
        let handle = ringgate::server::Server::start(config)
            .unwrap_or_else(|e| panic!("proxy failed to start: {e}\n--- config ---\n{toml}"));
        Proxy::from_handle(handle)
    }

    /// Wraps a server started by the test itself (e.g. through `Server::prepare`).
    pub fn from_handle(handle: ringgate::server::ServerHandle) -> Proxy {
        let addrs = handle.listen_addrs().to_vec();
        for a in &addrs {
            assert_ne!(
                a.port(),
                0,
                "listen_addrs must report the bound port: {addrs:?}"
            );
        }
        Proxy {
            handle: Some(handle),
            addrs,
        }
    }

    /// Address of the first listener.
    pub fn addr(&self) -> SocketAddr {
        self.addrs[0]
    }

    /// The live configuration: reload with a new config, read the reload counters.
    pub fn live(&self) -> &std::sync::Arc<ringgate::generation::Live> {
        self.handle.as_ref().expect("running").live()
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The admin listener's address (the config must have `[admin]`).
    pub fn admin_addr(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .and_then(|h| h.admin_addr())
            .expect("the proxy has an admin listener")
    }

    /// Graceful stop; returns once the workers have exited.
    pub fn shutdown(mut self) {
        self.stop();
    }

    /// Graceful stop, returning each worker's totals (counters checked by tests).
    #[allow(dead_code, reason = "used by some test binaries only")]
    pub fn shutdown_reports(mut self) -> Vec<ringgate::runtime::WorkerReport> {
        self.stop()
    }

    /// Shuts down on another thread so a stuck worker fails the test instead of hanging it.
    fn stop(&mut self) -> Vec<ringgate::runtime::WorkerReport> {
        let Some(handle) = self.handle.take() else {
            return Vec::new();
        };
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let _ = tx.send(handle.shutdown());
        });
        let reports = rx.recv_timeout(SHUTDOWN_GUARD);
        if let Ok(r) = reports {
            // A panic caught in a connection task is a bug even when the test's own
            // assertions held: every test that stops a proxy checks for one.
            let panics: u64 = r.iter().map(|w| w.panics).sum();
            if panics > 0 && !thread::panicking() {
                panic!("{panics} connection task(s) panicked in the proxy (see stderr)");
            }
            return r;
        }
        {
            let msg = format!(
                "the proxy's workers did not exit within {SHUTDOWN_GUARD:?} of shutdown() \
                 (a worker is stuck); leaking it"
            );
            if thread::panicking() {
                eprintln!("{msg}");
            } else {
                panic!("{msg}");
            }
        }
        Vec::new()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The real `ringgate` binary running `run -c FILE`.
pub struct ProxyProcess {
    pid: u32,
    addrs: Vec<SocketAddr>,
    exit: Receiver<ExitStatus>,
    exited: Option<ExitStatus>,
    output: Arc<(Mutex<String>, Condvar)>,
}

/// Path of the built binary.
pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ringgate"))
}

/// The address in a line like `... listening on https://127.0.0.1:4433 ...`.
pub fn listening_addr(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let rest = rest
        .strip_prefix("https://")
        .or_else(|| rest.strip_prefix("http://"))?;
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ',' || c == ')')
        .unwrap_or(rest.len());
    rest[..end].trim_end_matches('/').parse().ok()
}

impl ProxyProcess {
    /// Starts the binary and waits until it reported `listeners` distinct listening addresses.
    pub fn spawn(config: &Path, listeners: usize) -> ProxyProcess {
        ProxyProcess::spawn_with(config, listeners, &[])
    }

    /// Like [`ProxyProcess::spawn`], with global options before `run` (e.g. `--log debug`).
    pub fn spawn_with(config: &Path, listeners: usize, options: &[&str]) -> ProxyProcess {
        let mut args: Vec<&std::ffi::OsStr> = options.iter().map(|o| o.as_ref()).collect();
        args.extend(["run".as_ref(), "-c".as_ref(), config.as_os_str()]);
        ProxyProcess::spawn_args(&args, listeners)
    }

    /// The binary with `args` (e.g. `demo --listen ...`), waited on like
    /// [`ProxyProcess::spawn`].
    pub fn spawn_args(args: &[&std::ffi::OsStr], listeners: usize) -> ProxyProcess {
        let mut child: Child = Command::new(binary())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary().display()));
        let pid = child.id();
        let output = Arc::new((Mutex::new(String::new()), Condvar::new()));
        let (line_tx, line_rx) = mpsc::channel::<String>();
        let readers: [Box<dyn Read + Send>; 2] = [
            Box::new(child.stderr.take().expect("piped stderr")),
            Box::new(child.stdout.take().expect("piped stdout")),
        ];
        for r in readers {
            let (tx, out) = (line_tx.clone(), output.clone());
            thread::spawn(move || {
                for line in BufReader::new(r).lines() {
                    let Ok(line) = line else { break };
                    out.0
                        .lock()
                        .expect("output lock")
                        .push_str(&format!("{line}\n"));
                    out.1.notify_all();
                    let _ = tx.send(line);
                }
            });
        }
        drop(line_tx);
        let (exit_tx, exit) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let mut p = ProxyProcess {
            pid,
            addrs: Vec::new(),
            exit,
            exited: None,
            output,
        };
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        while p.addrs.len() < listeners {
            let left = deadline.saturating_duration_since(Instant::now());
            match line_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(a) = listening_addr(&line)
                        && !p.addrs.contains(&a)
                    {
                        p.addrs.push(a);
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "ringgate did not print {listeners} 'listening on' line(s) within \
                     {STARTUP_TIMEOUT:?}; output so far:\n{}",
                    p.output()
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "ringgate exited ({:?}) before listening; output:\n{}",
                    p.wait_exit(Duration::from_secs(5)),
                    p.output()
                ),
            }
        }
        p
    }

    pub fn addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Everything the process printed so far (stderr and stdout).
    pub fn output(&self) -> String {
        self.output.0.lock().expect("output lock").clone()
    }

    /// Waits until the output holds `count` occurrences of `needle` (`false` after `limit`).
    pub fn wait_for_output(&self, needle: &str, count: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut text = self.output.0.lock().expect("output lock");
        loop {
            if text.matches(needle).count() >= count {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            text = self
                .output
                .1
                .wait_timeout(text, left)
                .expect("output lock")
                .0;
        }
    }

    /// Sends the signal named `sig` ("TERM", "HUP", "INT", "KILL", ...); panics when the
    /// process is gone. Through kill(2), not the `kill` program (procps may be missing).
    pub fn signal(&self, sig: &str) {
        let rc = self.send_signal(sig);
        assert_eq!(
            rc,
            0,
            "kill -{sig} {} failed: {}",
            self.pid,
            std::io::Error::last_os_error()
        );
    }

    fn send_signal(&self, sig: &str) -> libc::c_int {
        let signal = match sig {
            "TERM" => libc::SIGTERM,
            "HUP" => libc::SIGHUP,
            "INT" => libc::SIGINT,
            "KILL" => libc::SIGKILL,
            "QUIT" => libc::SIGQUIT,
            "USR1" => libc::SIGUSR1,
            "USR2" => libc::SIGUSR2,
            "WINCH" => libc::SIGWINCH,
            "PIPE" => libc::SIGPIPE,
            "ALRM" => libc::SIGALRM,
            "CONT" => libc::SIGCONT,
            other => panic!("unknown signal name {other:?}"),
        };
        // SAFETY: kill(2) on our child's pid; no memory is passed. The waiting thread reaps
        // the child, so a pid could only name another process after the child exited and
        // the kernel cycled through pid_max; Drop sends nothing once an exit was seen.
        unsafe { libc::kill(self.pid as libc::pid_t, signal) }
    }

    /// The exit status, or `None` if still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.exit.recv_timeout(timeout).ok();
        }
        self.exited
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        // The guard of this child (see tests/common/child.rs): never panics while a failed
        // test unwinds.
        if self.wait_exit(Duration::ZERO).is_none() {
            let _ = self.send_signal("KILL");
            let _ = self.wait_exit(Duration::from_secs(10));
        }
        // A caught panic in a connection task is a bug even when the test passed.
        let output = self.output();
        if output.contains("panicked") && !thread::panicking() {
            panic!("the ringgate process logged a panic; output:\n{output}");
        }
    }
}

/// Output of `ringgate ARGS...` run to completion.
pub struct CliOutput {
    pub status: ExitStatus,
    /// stdout and stderr together.
    pub text: String,
}

pub fn run_cli(args: &[&str], cwd: &Path) -> CliOutput {
    let out = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run {} {args:?}: {e}", binary().display()));
    CliOutput {
        status: out.status,
        text: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

/// Like [`run_cli`], but gives up after `limit`: the process is killed and the test
/// fails with what it printed (a command that should exit but keeps running).
#[allow(dead_code, reason = "used by some test binaries only")]
pub fn run_cli_bounded(args: &[&str], cwd: &Path, limit: Duration) -> CliOutput {
    let child = Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", binary().display()));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(Ok(out)) => CliOutput {
            status: out.status,
            text: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        },
        Ok(Err(e)) => panic!("wait for {args:?}: {e}"),
        Err(_) => {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
            let out = rx
                .recv_timeout(Duration::from_secs(10))
                .ok()
                .and_then(Result::ok)
                .map(|o| {
                    format!(
                        "{}{}",
                        String::from_utf8_lossy(&o.stdout),
                        String::from_utf8_lossy(&o.stderr)
                    )
                })
                .unwrap_or_default();
            panic!("`ringgate {args:?}` still running after {limit:?} (killed); output:\n{out}")
        }
    }
}
