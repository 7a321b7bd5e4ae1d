//! Child processes of a test (the ringgate binary, prlimit, ...): started only through
//! [`ChildGuard`], which kills (SIGKILL) and reaps the process when dropped, so a test that
//! fails or panics halfway leaves nothing running. [`ProxyProcess`](super::proxy::ProxyProcess)
//! is the other guard (it waits on its child from a thread and kills it in its `Drop`);
//! `tests/harness_hygiene.rs` checks that no test spawns a process any other way.
//!
//! A program that is not installed fails the test with the package that provides it and
//! `./test.sh`, which installs it — never a silent pass.

use std::io;
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus};

/// A running child process that is killed and reaped when this guard is dropped, on every
/// path: a normal return, an early return and a panic's unwinding alike.
pub struct ChildGuard {
    child: Child,
    what: String,
}

impl ChildGuard {
    /// Starts `cmd`; `package` is the Debian package that provides its program (named in
    /// the failure when the program is missing).
    pub fn spawn(cmd: &mut Command, package: &str) -> ChildGuard {
        let what = format!("{:?}", cmd.get_program());
        match cmd.spawn() {
            Ok(child) => ChildGuard { child, what },
            Err(e) if e.kind() == io::ErrorKind::NotFound => panic!(
                "{what} is not installed: apt-get install {package} (./test.sh installs every \
                 package the tests use)"
            ),
            Err(e) => panic!("cannot start {what}: {e}"),
        }
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.child.stdin.take()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`); panics when the process is already reaped.
    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) on our own child, which is not reaped before `wait`/`Drop` (both
        // take `&mut self`), so the pid cannot have been reused.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill({signal}) {}: {}",
            self.what,
            io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> ExitStatus {
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("wait for {}: {e}", self.what))
    }

    /// The exit status if the process has exited, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("try_wait {}: {e}", self.what))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // Never panics: this runs while a failed test unwinds.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
