//! The signals an operator (or a habit carried over from nginx, a logrotate script,
//! `systemctl reload`, a terminal) may send a running `ringgate`, and what each means.
//! Every one has a defined, non-fatal meaning except the two that ask it to stop:
//!
//! | signal | meaning |
//! | --- | --- |
//! | `TERM`, `INT` | graceful stop: stop accepting, drain in-flight requests for up to `shutdown_timeout_ms`, exit 0; a second one exits 1 at once |
//! | `HUP` | reload the configuration on the `ringgate-reload` helper thread ([`crate::generation`]): a valid file applies, an invalid one changes nothing and is logged |
//! | `USR1` | nginx: reopen log files. ringgate writes only to stderr, which the service manager or the shell owns: nothing to reopen; logged |
//! | `USR2` | nginx: start a new binary (binary upgrade). Not supported; logged |
//! | `WINCH` | nginx: gracefully stop worker processes. ringgate's workers are threads of this process; terminals send it on resize; logged, ignored |
//! | `PIPE` | ignored (the Rust runtime sets `SIG_IGN` before `main`): a write to a closed socket returns `EPIPE` to the connection that made it |
//!
//! Signals are received on their own thread (signal-hook's self-pipe), never on a
//! worker; this module only decides and logs.

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};

/// Every signal `ringgate run` installs a handler for.
pub const HANDLED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGWINCH];

/// What a received signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Drain and exit (`TERM`, `INT`).
    Stop,
    /// Reload the configuration (`HUP`).
    Reload,
    /// A defined no-op, with the reason logged.
    Ignore(&'static str),
}

/// The meaning of `signal` (a number from [`HANDLED`]; any other is ignored).
pub fn action(signal: i32) -> Action {
    match signal {
        SIGTERM | SIGINT => Action::Stop,
        SIGHUP => Action::Reload,
        SIGUSR1 => Action::Ignore(
            "logs go to stderr, there is no log file to reopen (nginx reopens its logs on USR1)",
        ),
        SIGUSR2 => Action::Ignore(
            "binary upgrade is not supported (nginx starts a new binary on USR2); restart the service instead",
        ),
        SIGWINCH => Action::Ignore(
            "workers are threads of this process, there are no worker processes to stop (nginx stops its workers on WINCH)",
        ),
        _ => Action::Ignore("not a signal ringgate acts on"),
    }
}

/// The conventional name, for log lines (`SIGHUP`).
pub fn name(signal: i32) -> &'static str {
    match signal {
        SIGTERM => "SIGTERM",
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        SIGWINCH => "SIGWINCH",
        _ => "signal",
    }
}

/// Logs what a signal that does not stop the process did.
pub fn log_non_fatal(signal: i32) {
    match action(signal) {
        Action::Stop => {}
        Action::Reload => tracing::warn!(
            signal = name(signal),
            "this process has no configuration to reload; ignored"
        ),
        Action::Ignore(why) => tracing::info!(signal = name(signal), "ignored: {why}"),
    }
}

/// Sends `SIGHUP` to process `pid` (`ringgate reload`).
pub fn send_hup(pid: i32) -> std::io::Result<()> {
    if pid <= 0 {
        // kill(2) with 0 or a negative pid signals process groups: never that.
        return Err(std::io::Error::other(format!("{pid} is not a process id")));
    }
    #[allow(
        unsafe_code,
        reason = "kill(2): the kernel interface that sends a signal"
    )]
    // SAFETY: kill takes two integers and touches no memory of ours.
    let rc = unsafe { libc::kill(pid, SIGHUP) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_term_and_int_stop() {
        for sig in HANDLED {
            let stops = matches!(action(sig), Action::Stop);
            assert_eq!(stops, sig == SIGTERM || sig == SIGINT, "{}", name(sig));
            assert_ne!(name(sig), "signal");
        }
        assert_eq!(action(SIGHUP), Action::Reload);
        assert!(!HANDLED.contains(&signal_hook::consts::SIGPIPE));
    }
}
