//! Process logs (⑨): where `tracing` events and the `log` records of libraries go.
//!
//! Two rules an operator relies on:
//! - **Writing a log line never blocks a worker.** Lines are formatted on the thread that
//!   logs and handed to one writer thread (`ringgate-log`) through a bounded queue
//!   ([`QUEUE_LINES`]); the writer is the only thread that writes stderr. When stderr
//!   stalls (a full pipe nobody reads, a stopped terminal) and the queue fills, new lines
//!   are dropped and counted, and the count is printed at exit. [`Logging`]'s drop (and
//!   [`flush`]) waits for the queue to drain, so the final lines are not lost.
//! - **Clients do not control the log volume.** A peer can make rustls log (an IP
//!   address as SNI, a warning alert, an unexpected message) on every handshake. Those
//!   records come through the `log` facade and are re-emitted at `DEBUG` under the target
//!   `rustls` with their original level as a field, so the default `info` filter keeps
//!   them out while `--log rustls=debug` still shows them. Every handshake failure is
//!   counted by the worker (`handshake_failed`) regardless.
//!
//!
//! Fields print as `key=value` ([`Fields`]): a value with a space, a quote, an `=` or a
//! control character (or an empty one) is quoted and escaped, so a line splits into its
//! fields by spaces; strings stay quoted as they always were.
//!
//! Never: write stderr from a worker, panic on a logging failure.

use std::io::Write as _;
use std::sync::Mutex;

use std::sync::OnceLock;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines the writer thread may fall behind by before new ones are dropped. At ~150 bytes
/// a line that is ~1.5 MB of memory at most, and seconds of a stalled terminal.
pub const QUEUE_LINES: usize = 10_000;

/// `log` targets whose records a peer can trigger at will; demoted to `DEBUG`.
pub const PEER_TRIGGERED_TARGETS: [&str; 1] = ["rustls"];

/// The running log pipeline. Keep it alive for the life of the process; dropping it
/// flushes the queue (bounded wait) and reports dropped lines.
pub struct Logging {
    dropped: ErrorCounter,
}

/// The queue's sending side, for plain lines ([`say`]).
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

/// The writer thread's guard, reachable from [`flush`] for exits that skip destructors.
static GUARD: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber: `filter` (tracing `EnvFilter` syntax), formatted to
/// stderr through the writer thread, plus the `log` bridge. Returns an error message for
/// a bad filter (the caller may retry with a good one). Call once, before any thread
/// logs.
pub fn init(filter: &str, ansi: bool) -> Result<Logging, String> {
    use tracing_subscriber::layer::SubscriberExt as _;
    let filter = tracing_subscriber::EnvFilter::try_new(filter).map_err(|e| e.to_string())?;
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUE_LINES)
        .thread_name("ringgate-log")
        .finish(std::io::stderr());
    let dropped = writer.error_counter();
    let _ = WRITER.set(writer.clone());
    let subscriber = tracing_subscriber::registry().with(filter).with(
        tracing_subscriber::fmt::layer()
            .fmt_fields(Fields)
            .with_ansi(ansi)
            .with_writer(writer),
    );
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| format!("a logger is already installed: {e}"))?;
    // Ignored when a `log` logger exists already (e.g. a test harness installed one).
    let _ = log::set_logger(&LOG_BRIDGE);
    log::set_max_level(log::LevelFilter::Trace);
    *GUARD.lock().unwrap_or_else(|e| e.into_inner()) = Some(guard);
    Ok(Logging { dropped })
}

/// Writes one plain line (`ringgate: listening on ...`) to stderr through the same queue
/// as the log events, so it stays in order with them; straight to stderr before [`init`].
pub fn say(line: std::fmt::Arguments<'_>) {
    match WRITER.get() {
        Some(w) => {
            let _ = w.clone().write_all(format!("{line}\n").as_bytes());
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// Writes out every queued line (waits a bounded time for a stalled stderr). For paths
/// that end the process without running destructors (`std::process::exit`).
pub fn flush() {
    let guard = GUARD.lock().unwrap_or_else(|e| e.into_inner()).take();
    drop(guard);
}

impl Logging {
    /// Lines dropped so far because the writer thread fell behind.
    pub fn dropped_lines(&self) -> usize {
        self.dropped.dropped_lines()
    }
}

impl Drop for Logging {
    fn drop(&mut self) {
        flush();
        let n = self.dropped_lines();
        if n > 0 {
            // The writer thread has stopped; the main thread may block here, a worker never.
            let _ = writeln!(
                std::io::stderr(),
                "ringgate: {n} log line(s) dropped because stderr could not keep up"
            );
        }
    }
}

/// Whether records of this `log` target are demoted to `DEBUG`.
pub fn is_peer_triggered(target: &str) -> bool {
    PEER_TRIGGERED_TARGETS.iter().any(|t| {
        target
            .strip_prefix(t)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The level a `log` record is emitted at.
pub fn effective_level(target: &str, level: log::Level) -> tracing::Level {
    if is_peer_triggered(target) && level < log::Level::Debug {
        return tracing::Level::DEBUG;
    }
    match level {
        log::Level::Error => tracing::Level::ERROR,
        log::Level::Warn => tracing::Level::WARN,
        log::Level::Info => tracing::Level::INFO,
        log::Level::Debug => tracing::Level::DEBUG,
        log::Level::Trace => tracing::Level::TRACE,
    }
}

/// `log` → `tracing` (tracing-log's own dispatch, so a record keeps its target and
/// `--log` directives such as `rustls=debug` match it), demoting
/// [`PEER_TRIGGERED_TARGETS`] to `DEBUG`.
struct LogBridge;

static LOG_BRIDGE: LogBridge = LogBridge;

fn as_log_level(level: tracing::Level) -> log::Level {
    match level {
        tracing::Level::ERROR => log::Level::Error,
        tracing::Level::WARN => log::Level::Warn,
        tracing::Level::INFO => log::Level::Info,
        tracing::Level::DEBUG => log::Level::Debug,
        _ => log::Level::Trace,
    }
}

impl log::Log for LogBridge {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        // The cheap global bound; the subscriber's filter decides per target in `log`.
        effective_level(metadata.target(), metadata.level())
            <= tracing::level_filters::LevelFilter::current()
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = as_log_level(effective_level(record.target(), record.level()));
        if level == record.level() {
            let _ = tracing_log::format_trace(record);
            return;
        }
        let demoted = log::Record::builder()
            .args(*record.args())
            .level(level)
            .target(record.target())
            .module_path(record.module_path())
            .file(record.file())
            .line(record.line())
            .build();
        let _ = tracing_log::format_trace(&demoted);
    }

    fn flush(&self) {}
}

/// The field format of every line: `message key=value key="a value with spaces"`.
/// Strings are quoted (as tracing's default does), other values only when they need it
/// ([`needs_quotes`]); `Debug` values never print as bare Rust syntax with spaces.
pub struct Fields;

impl<'w> tracing_subscriber::field::MakeVisitor<tracing_subscriber::fmt::format::Writer<'w>>
    for Fields
{
    type Visitor = FieldVisitor<'w>;

    fn make_visitor(&self, writer: tracing_subscriber::fmt::format::Writer<'w>) -> Self::Visitor {
        FieldVisitor {
            writer,
            empty: true,
            result: Ok(()),
        }
    }
}

/// Writes one event's fields ([`Fields`]).
pub struct FieldVisitor<'w> {
    writer: tracing_subscriber::fmt::format::Writer<'w>,
    empty: bool,
    result: std::fmt::Result,
}

/// A value that would not read back as one `key=value` token unquoted.
pub fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control())
}

impl FieldVisitor<'_> {
    fn put(&mut self, name: &str, value: &str, quote: bool) {
        if self.result.is_err() {
            return;
        }
        let sep = if self.empty { "" } else { " " };
        self.empty = false;
        self.result = if name == "message" {
            write!(self.writer, "{sep}{value}")
        } else if quote {
            write!(self.writer, "{sep}{name}={value:?}")
        } else {
            write!(self.writer, "{sep}{name}={value}")
        };
    }
}

impl tracing::field::Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.put(field.name(), value, true);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        // Formatted once into a string to see whether it needs quotes: log lines only.
        let text = format!("{value:?}");
        let quote = needs_quotes(&text);
        self.put(field.name(), &text, quote);
    }
}

impl tracing_subscriber::field::VisitOutput<std::fmt::Result> for FieldVisitor<'_> {
    fn finish(self) -> std::fmt::Result {
        self.result
    }
}

impl tracing_subscriber::field::VisitFmt for FieldVisitor<'_> {
    fn writer(&mut self) -> &mut dyn std::fmt::Write {
        &mut self.writer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields of one event as [`Fields`] formats them.
    fn fields(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let out = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(Fields)
            .without_time()
            .with_level(false)
            .with_target(false)
            .with_ansi(false)
            .with_writer(move || out.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        let bytes = buf.0.lock().unwrap_or_else(|e| e.into_inner()).clone();
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }

    #[test]
    fn values_with_spaces_are_quoted_and_plain_ones_are_not() {
        let files = "a.pem, b.pem";
        let line = fields(|| {
            tracing::info!(
                n = 2,
                driver = "io_uring",
                files = %files,
                fallback = %"kernel_tls_unavailable:2",
                list = ?vec![("x", 1)],
                empty = %"",
                "worker stopped"
            )
        });
        assert_eq!(
            line,
            "worker stopped n=2 driver=\"io_uring\" files=\"a.pem, b.pem\" \
             fallback=kernel_tls_unavailable:2 list=\"[(\\\"x\\\", 1)]\" empty=\"\""
        );
    }

    #[test]
    fn rustls_warnings_become_debug_and_others_keep_their_level() {
        assert_eq!(
            effective_level("rustls::msgs::handshake", log::Level::Warn),
            tracing::Level::DEBUG
        );
        assert_eq!(
            effective_level("rustls", log::Level::Error),
            tracing::Level::DEBUG
        );
        assert_eq!(
            effective_level("rustls::common_state", log::Level::Trace),
            tracing::Level::TRACE
        );
        assert_eq!(
            effective_level("rustls_pki_types", log::Level::Warn),
            tracing::Level::WARN,
            "only the rustls crate itself"
        );
        assert_eq!(
            effective_level("ktls_core::probe", log::Level::Error),
            tracing::Level::ERROR
        );
    }
}
