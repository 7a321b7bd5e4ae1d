//! `ringgate reload -c FILE`: checks FILE like `ringgate check`, finds the running process
//! through `[server] pid_file`, makes sure FILE is the configuration file that process
//! runs (a SIGHUP makes it read *its* file again, whatever FILE says), signals it, and
//! waits (bounded) for the outcome the process writes to its status file
//! ([`crate::instance::Status`]). It prints what happened and returns the exit code; it
//! never runs inside the proxy.
//!
//! Exit codes: 0 reloaded (or only signalled, with a zero wait); 1 the file has errors,
//! found here or by the process's reload (nothing changed); 2 no running process found,
//! it runs another file, or it could not be signalled; 3 no outcome within the wait.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::instance::{FileReload, Status, status_path};

/// Reloaded, or signalled without waiting.
const OK: u8 = 0;
/// The configuration has errors; nothing changed.
const FAILED: u8 = 1;
/// No process to reload, or not this file's.
const NOT_SIGNALLED: u8 = 2;
/// Signalled, but no outcome within the wait.
const NO_OUTCOME: u8 = 3;

/// How often the status file is read while waiting (a CLI poll, not a proxy thread).
const POLL: Duration = Duration::from_millis(50);

/// Runs `ringgate reload -c path`, waiting up to `wait` for the outcome; returns the
/// exit code.
pub fn reload(path: &Path, wait: Duration) -> u8 {
    let config = match Config::from_file(path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "ringgate: {}: configuration check failed ({} error(s)); the running process was not signalled",
                path.display(),
                errors.0.len()
            );
            return FAILED;
        }
    };
    let Some(pid_file) = config.server.pid_file else {
        eprintln!(
            "ringgate: {}: no [server] pid_file, so the running process cannot be found (send it SIGHUP yourself)",
            path.display()
        );
        return NOT_SIGNALLED;
    };
    let pid = match read_pid(&pid_file) {
        Ok(pid) => pid,
        Err(msg) => {
            eprintln!("ringgate: {msg}");
            return NOT_SIGNALLED;
        }
    };
    // A stale pid file may name an unrelated process that reused the number.
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm"))
        && !comm.trim().starts_with("ringgate")
    {
        eprintln!(
            "ringgate: {}: pid {pid} is {:?}, not ringgate (a stale pid file?); not signalled",
            pid_file.display(),
            comm.trim()
        );
        return NOT_SIGNALLED;
    }
    let status_file = status_path(&pid_file);
    let before = match Status::read(&status_file) {
        Some(s) if s.pid == pid as u32 => s,
        _ => {
            eprintln!(
                "ringgate: {}: no status of pid {pid} (it is still starting, or an older \
                 ringgate that does not write one); not signalled",
                status_file.display()
            );
            return NOT_SIGNALLED;
        }
    };
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    if wanted != before.config {
        eprintln!(
            "ringgate: {}: pid {pid} does not run this file: it runs {} (a reload reads that \
             file again; edit it and reload, or restart with -c {}); not signalled",
            path.display(),
            before.config.display(),
            path.display()
        );
        return NOT_SIGNALLED;
    }
    if let Err(e) = crate::signals::send_hup(pid) {
        eprintln!(
            "ringgate: cannot signal pid {pid} (from {}): {e}",
            pid_file.display()
        );
        return NOT_SIGNALLED;
    }
    println!(
        "ringgate: {}: ok; sent SIGHUP to pid {pid} (from {})",
        path.display(),
        pid_file.display()
    );
    if wait.is_zero() {
        println!("ringgate: not waiting for the outcome (--wait-ms 0); it is in the process's log");
        return OK;
    }
    let deadline = Instant::now() + wait;
    loop {
        if let Some(now) = Status::read(&status_file)
            && now.pid == before.pid
            && now.file_reloads > before.file_reloads
        {
            return report(path, pid, before.generation, now);
        }
        if !Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("ringgate: pid {pid} exited before reporting the reload's outcome");
            return NOT_SIGNALLED;
        }
        if Instant::now() >= deadline {
            eprintln!(
                "ringgate: pid {pid} reported no outcome within {} ms (still reloading? its \
                 log says; wait longer with --wait-ms)",
                wait.as_millis()
            );
            return NO_OUTCOME;
        }
        std::thread::sleep(POLL);
    }
}

/// The pid in `pid_file`, or why there is none.
fn read_pid(pid_file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(pid_file).map_err(|e| {
        format!(
            "cannot read pid file {}: {e} (is ringgate running with this configuration?)",
            pid_file.display()
        )
    })?;
    match text.trim().parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ if text.trim().is_empty() => Err(format!(
            "{}: empty (ringgate is still starting?)",
            pid_file.display()
        )),
        _ => Err(format!(
            "{}: not a process id: {:?}",
            pid_file.display(),
            text.trim()
        )),
    }
}

fn report(path: &Path, pid: i32, was: u64, status: Status) -> u8 {
    match status.last {
        Some(FileReload::Ok {
            generation,
            needs_restart,
        }) => {
            for n in &needs_restart {
                println!("ringgate: needs a restart: {n} (not applied)");
            }
            println!(
                "ringgate: {}: reloaded: pid {pid} serves generation {generation} (was {was})",
                path.display()
            );
            OK
        }
        Some(FileReload::Failed { error }) => {
            eprintln!("{error}");
            eprintln!(
                "ringgate: {}: reload failed in pid {pid}: nothing changed, still serving generation {}",
                path.display(),
                status.generation
            );
            FAILED
        }
        None => {
            eprintln!("ringgate: pid {pid} wrote no outcome for the reload");
            NO_OUTCOME
        }
    }
}
