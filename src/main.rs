//! The `ringgate` command: `run`, `check`, `reload`, `doctor`, `demo`, `origin`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ringgate::config::Config;
use ringgate::logging::say;
use ringgate::server::{Server, ServerHandle};

/// mimalloc, except in a heap-profiling build (`--features system-allocator`), where
/// glibc's malloc lets heaptrack / valgrind see every allocation
/// (loadtest/heap_profile.sh).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The configuration file `run`, `check` and `reload` read when `-c` is not given
/// (nginx: /etc/nginx/nginx.conf).
const DEFAULT_CONFIG: &str = "/etc/ringgate/ringgate.toml";

#[derive(Parser)]
#[command(
    name = "ringgate",
    about = "Edge HTTPS reverse proxy and API gateway",
    // `-V, --version` is ours: it prints build and kernel facts like `nginx -V`.
    disable_version_flag = true,
    subcommand_required = false,
    arg_required_else_help = true
)]
struct Cli {
    /// Log filter (tracing syntax), e.g. "info" or "ringgate=debug".
    #[arg(
        long,
        global = true,
        env = "RINGGATE_LOG",
        hide_env_values = true,
        default_value = "info"
    )]
    log: String,
    /// Print the version, git commit, rustls version and this kernel's TLS support.
    #[arg(short = 'V', long)]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy with a configuration file.
    Run {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file and print a summary (like `nginx -t`).
    Check {
        /// Configuration file (TOML).
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Check a configuration file, then ask the running proxy to load it: sends SIGHUP
    /// to the process in its `[server] pid_file` (only when it runs this very file) and
    /// waits for the outcome. Exit 0: reloaded; 1: the file has errors (found here, or by
    /// the process: nothing changed); 2: no running process found, it runs another file,
    /// or it could not be signalled; 3: no outcome within --wait-ms.
    Reload {
        /// Configuration file (TOML) of the running process.
        #[arg(short, long, default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// How long to wait for the process to report the outcome (0: do not wait).
        #[arg(long, default_value_t = 10_000)]
        wait_ms: u64,
    },
    /// Report what this host offers: kernel, io_uring, kernel TLS, limits, CPUs.
    Doctor {
        /// Check against this configuration (default: the built-in defaults).
        #[arg(short, long)]
        config: Option<PathBuf>,
        /// Also compare the running sysctls with a tuning profile
        /// (edge-throughput, edge-latency; see tuning/README.md).
        #[arg(long)]
        profile: Option<String>,
    },
    /// Run only the built-in upstream (the demo's origin; also the load-test backend).
    Origin {
        /// Address to listen on.
        #[arg(long, default_value = ringgate::demo::ORIGIN_ADDR)]
        listen: SocketAddr,
    },
    /// Run with an embedded default: self-signed certificate and a built-in upstream.
    Demo {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: SocketAddr,
        /// Address of the admin listener (/metrics, /healthz, /readyz); port 0: any free one.
        #[arg(long, default_value = "127.0.0.1:0")]
        admin: SocketAddr,
        /// Number of workers (default: one per core).
        #[arg(long)]
        workers: Option<usize>,
        /// Keep the self-signed certificate in this folder (default: a temporary folder
        /// removed at exit; with --print-config: the current folder).
        #[arg(long)]
        cert_dir: Option<PathBuf>,
        /// Print a configuration that works as written with `ringgate run` (it names the
        /// certificate it keeps and the upstream `ringgate origin` serves) and exit.
        #[arg(long)]
        print_config: bool,
        /// With --print-config: the upstream the configuration names; start it with
        /// `ringgate origin --listen ADDR`.
        #[arg(long, default_value = ringgate::demo::ORIGIN_ADDR, requires = "print_config")]
        upstream: SocketAddr,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.version {
        print!("{}", ringgate::version::long());
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        use clap::CommandFactory;
        let _ = Cli::command().print_help();
        return ExitCode::from(2);
    };
    use std::io::IsTerminal;
    let ansi = std::io::stderr().is_terminal();
    // Lives until main returns: dropping it writes out every queued line.
    let _logging = match ringgate::logging::init(&cli.log, ansi) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "ringgate: bad --log filter {:?} ({e}); using \"info\"",
                cli.log
            );
            match ringgate::logging::init("info", ansi) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("ringgate: cannot set up logging: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match command {
        Command::Check { config } => match Config::from_file(&config) {
            Ok(c) => {
                print!("{}", c.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "ringgate: {}: configuration check failed ({} error(s))",
                    config.display(),
                    errors.0.len()
                );
                ExitCode::FAILURE
            }
        },
        Command::Run { config } => match Config::from_file(&config) {
            Ok(c) => serve(c),
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "ringgate: {}: not started, the configuration has errors",
                    config.display()
                );
                ExitCode::FAILURE
            }
        },
        Command::Demo {
            listen,
            admin,
            workers,
            cert_dir,
            print_config,
            upstream,
        } => {
            let print = print_config.then_some(upstream);
            demo(listen, admin, workers, cert_dir, print)
        }
        Command::Reload { config, wait_ms } => ExitCode::from(ringgate::control::reload(
            &config,
            std::time::Duration::from_millis(wait_ms),
        )),
        Command::Doctor { config, profile } => doctor(config, profile),
        Command::Origin { listen } => origin(listen),
    }
}

fn doctor(config: Option<PathBuf>, profile: Option<String>) -> ExitCode {
    let intent = match &config {
        None => ringgate::doctor::Intent::defaults(),
        Some(path) => match Config::from_file(path) {
            Ok(c) => ringgate::doctor::Intent::from_config(&c),
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut checks = ringgate::doctor::run(&intent);
    let mut table = String::new();
    if let Some(name) = profile {
        let (check, t) = ringgate::doctor::profile(&name);
        checks.push(check);
        table = t;
    }
    let (text, code) = ringgate::doctor::render(&checks);
    print!("{text}");
    if !table.is_empty() {
        print!("\n{table}");
    }
    if code == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn origin(listen: SocketAddr) -> ExitCode {
    match ringgate::demo::start_backend(listen) {
        Ok(addr) => {
            say(format_args!("ringgate origin: listening on http://{addr}"));
            let signals = match signal_hook::iterator::Signals::new(ringgate::signals::HANDLED) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("ringgate origin: cannot install signal handlers: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let _ = stop_signals(signals, None).recv();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ringgate origin: cannot listen on {listen}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(
    listen: SocketAddr,
    admin: SocketAddr,
    workers: Option<usize>,
    cert_dir: Option<PathBuf>,
    print_config: Option<SocketAddr>,
) -> ExitCode {
    use ringgate::demo::DemoSetup;
    let cert_dir = match (cert_dir, print_config) {
        (None, Some(_)) => Some(PathBuf::from(".")),
        (dir, _) => dir,
    };
    let files = match ringgate::demo::write_certificate(cert_dir.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("ringgate demo: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(backend) = print_config {
        let setup = DemoSetup {
            listen,
            backend,
            admin,
            files: &files,
            workers,
        };
        print!("{}", ringgate::demo::printed_config(&setup));
        return ExitCode::SUCCESS;
    }
    let remove = |files: &ringgate::demo::DemoFiles| {
        if files.temporary {
            let _ = std::fs::remove_dir_all(&files.dir);
        }
    };
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    let backend = match ringgate::demo::start_backend(any_port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ringgate demo: cannot start the built-in upstream: {e}");
            remove(&files);
            return ExitCode::FAILURE;
        }
    };
    let setup = DemoSetup {
        listen,
        backend,
        admin,
        files: &files,
        workers,
    };
    let config = match ringgate::demo::config(&setup) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ringgate demo: {e}");
            remove(&files);
            return ExitCode::FAILURE;
        }
    };
    let on_ready = |h: &ServerHandle| {
        let addr = h.listen_addrs()[0];
        let kept = if files.temporary {
            "removed at exit"
        } else {
            "kept"
        };
        say(format_args!(
            "ringgate demo: built-in upstream on http://{backend}, certificate in {} ({kept})",
            files.dir.display()
        ));
        say(format_args!("ringgate demo: try:"));
        say(format_args!(
            "  curl --cacert {} https://localhost:{}/",
            files.cert.display(),
            addr.port()
        ));
        say(format_args!("  curl -k https://{addr}/bytes/1024 | wc -c"));
        say(format_args!(
            "  curl --http2 -sI --cacert {} https://localhost:{}/   (HTTP/2: its status line says so)",
            files.cert.display(),
            addr.port()
        ));
        say(format_args!(
            "  SSL_CERT_FILE={} python3 -m websockets wss://localhost:{}/ws   (echo WebSocket; \
             pip install websockets)",
            files.cert.display(),
            addr.port()
        ));
        if let Some(admin) = h.admin_addr() {
            say(format_args!("  curl http://{admin}/metrics"));
        }
    };
    let code = serve_with(config, on_ready);
    remove(&files);
    code
}

fn serve(config: Config) -> ExitCode {
    serve_with(config, |_| {})
}

/// Receives signals on their own thread: `HUP` queues a reload on `reload` (the
/// reload itself runs on the reload thread), the others that do not stop the process are
/// logged (see [`ringgate::signals`]), and `TERM`/`INT` go to the returned channel.
fn stop_signals(
    mut signals: signal_hook::iterator::Signals,
    reload: Option<ringgate::generation::ReloadTrigger>,
) -> std::sync::mpsc::Receiver<i32> {
    use ringgate::signals::{self, Action};
    let (tx, rx) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ringgate-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if let (Action::Reload, Some(r)) = (signals::action(sig), &reload) {
                    tracing::info!(signal = signals::name(sig), "reloading the configuration");
                    r.reload(signals::name(sig));
                } else if signals::action(sig) != Action::Stop {
                    signals::log_non_fatal(sig);
                } else if tx.send(sig).is_err() {
                    break;
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread no signal is acted on; TERM still ends the process (the
        // handlers only set flags), so say why it will not drain.
        tracing::error!(error = %e, "cannot start the signal thread");
    }
    rx
}

/// Starts the server, prints where it listens, and waits for SIGTERM/SIGINT; every other
/// signal an operator may send has a non-fatal meaning (src/signals.rs).
fn serve_with(config: Config, on_ready: impl FnOnce(&ServerHandle)) -> ExitCode {
    // Register before starting so an early signal is not lost.
    let signals = match signal_hook::iterator::Signals::new(ringgate::signals::HANDLED) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("ringgate: cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let workers = config.server.workers;
    // Locked before anything is bound: a second instance with this pid_file stops here,
    // naming the running one, and never touches the file.
    let mut pid_file = match config
        .server
        .pid_file
        .as_deref()
        .map(ringgate::instance::PidFile::acquire)
        .transpose()
    {
        Ok(p) => p,
        Err(e) => {
            say(format_args!("ringgate: cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let handle = match Server::start(config) {
        Ok(h) => h,
        Err(e) => {
            say(format_args!("ringgate: cannot start: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Before "listening on": whoever waits for that line may run `ringgate reload`.
    if let Some(p) = &mut pid_file {
        if let Err(e) = p.write_pid(std::process::id()) {
            say(format_args!("ringgate: cannot write {e}; stopping"));
            drop(handle);
            return ExitCode::FAILURE;
        }
        // Which file this process runs and how its reloads went, for `ringgate reload`.
        if let Some(file) = handle.live().load().config.file.clone() {
            let file = std::fs::canonicalize(&file).unwrap_or(file);
            handle
                .live()
                .report_status(ringgate::instance::status_path(p.path()), file);
        }
    }
    for url in handle.urls() {
        let noun = if workers == 1 { "worker" } else { "workers" };
        say(format_args!(
            "ringgate: listening on {url} ({workers} {noun})"
        ));
    }
    if let Some(admin) = handle.admin_addr() {
        say(format_args!(
            "ringgate: admin on http://{admin} (/metrics, /healthz, /readyz)"
        ));
    }
    on_ready(&handle);
    let rx = stop_signals(signals, Some(handle.reload_trigger()));
    if let Ok(sig) = rx.recv() {
        tracing::info!(
            signal = ringgate::signals::name(sig),
            "stopping: draining in-flight requests"
        );
    }
    // A second TERM/INT while draining stops at once.
    let pid_file = std::sync::Arc::new(pid_file);
    let pid_file_now = pid_file.clone();
    std::thread::spawn(move || {
        if rx.recv().is_ok() {
            if let Some(p) = pid_file_now.as_ref() {
                p.remove();
            }
            say(format_args!("ringgate: second signal, exiting now"));
            ringgate::logging::flush();
            std::process::exit(1);
        }
    });
    let reports = handle.shutdown();
    // Removed while still locked (the signal thread's clone keeps the value alive).
    if let Some(p) = pid_file.as_ref() {
        p.remove();
    }
    let abandoned: usize = reports.iter().map(|r| r.abandoned).sum();
    if abandoned > 0 {
        tracing::warn!(
            abandoned,
            "drain deadline passed with connections still open"
        );
    }
    say(format_args!("ringgate: stopped"));
    ExitCode::SUCCESS
}
