//! `graphbrokerd`: parses flags, loads the config, takes or binds the socket, serves until SIGTERM or SIGINT,
//! reloads on SIGHUP.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use graphbroker_protocol::{SOCKET_ENV, resolve_socket_path};
use graphbrokerd::activation::{self, Activation};
use graphbrokerd::broker::{Broker, SystemStores};
use graphbrokerd::config::{CONFIG_ENV, Config};
use graphbrokerd::idp::EntraPlatform;
use graphbrokerd::metrics::Metrics;
use graphbrokerd::server::{self, Activity, ConnectionLimits, PeerPolicy};
use sd_notify::NotifyState;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// How long in-flight requests get to finish after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Brokers Microsoft Entra ID delegated tokens for local programs over a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Config file (default: $GRAPHBROKER_CONFIG, else the platform config dir's graphbroker/config.toml).
    #[arg(long, env = CONFIG_ENV)]
    config: Option<PathBuf>,
    /// Socket path (default: $XDG_RUNTIME_DIR/graphbroker/graphbroker.sock). Ignored when the service manager
    /// passes the socket (socket activation).
    #[arg(long, env = SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// Log level when RUST_LOG is unset: error, warn, info, debug or trace. Token values are never logged.
    #[arg(long, default_value = "info")]
    log_level: String,
    /// Write the log to this file (0600, rotated to FILE.1 past 8 MiB) instead of standard error.
    /// `graphbroker-client` passes it when it starts the daemon; service units leave it out, so the log goes to
    /// the journal.
    #[arg(long, value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// Under socket activation, exit after this many seconds without a request when nothing would be lost
    /// (no sign-in pending, no memory-only account); the service manager starts the daemon again on the next
    /// connection. 0 (the default) never exits.
    #[arg(long, env = "GRAPHBROKER_IDLE_EXIT", default_value_t = 0, value_name = "SECONDS")]
    idle_exit: u64,
    /// How long a connection may take to send a request head, in milliseconds (tests shorten it).
    #[arg(long, hide = true, value_name = "MILLISECONDS")]
    header_read_timeout_ms: Option<u64>,
    /// How long one write of an answer may wait for the caller to read, in milliseconds (tests shorten it).
    #[arg(long, hide = true, value_name = "MILLISECONDS")]
    write_idle_timeout_ms: Option<u64>,
    /// How many connections are served at once; more wait until one closes (tests lower it).
    #[arg(long, hide = true, value_name = "COUNT")]
    max_connections: Option<usize>,
    /// How many connections waiting on a sign-in are held besides those served (tests lower it).
    #[arg(long, hide = true, value_name = "COUNT")]
    max_waiting: Option<usize>,
    /// Keep no audit log (benchmarks compare the request path with and without it: scripts/bench-audit).
    #[arg(long, hide = true)]
    no_audit: bool,
    /// Write the man page graphbrokerd.1, generated from these flags, into DIR and exit (for packaging).
    #[arg(long, hide = true, value_name = "DIR")]
    generate_man: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(dir) = &args.generate_man {
        return generate_man(dir);
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Some(problem) = graphbrokerd::logging::init(filter, args.log_file.as_deref()) {
        tracing::warn!("{problem}");
    }
    // Before any secret is in memory: no core dumps, no debugger (see hardening.rs).
    for gap in graphbrokerd::hardening::protect_process() {
        tracing::warn!("could not set {}: {}; the daemon's memory is less protected", gap.what, gap.why);
    }
    match graphbrokerd::hardening::raise_open_files_limit() {
        Ok((soft, hard)) => tracing::debug!(soft, hard, "open files limit"),
        Err(e) => tracing::warn!("could not raise the open files limit to its hard limit: {e}"),
    }

    // Before the runtime starts its threads: taking the inherited socket also clears LISTEN_* from the
    // environment, which is only sound while the process is single-threaded.
    let inherited = match activation::inherited_listener() {
        Ok(inherited) => inherited,
        Err(e) => {
            eprintln!("graphbrokerd: failed to take the socket passed by the service manager: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One thread runs everything async: the accept loop, every connection, the broker (tokio's blocking pool beside
    // it takes the keychain and the file system). Requests are short and the callers run on the same few cores:
    // with a worker per core, the two workers woke and stole each other's connections, which cost about a quarter
    // of a cached request's CPU (docs/performance.md, "One worker thread"); a multi-threaded runtime with one
    // worker still handed each new connection from the accept loop (on this thread) to the worker.
    // `TOKIO_WORKER_THREADS=N` runs N workers instead, for comparing.
    let mut builder = match std::env::var_os("TOKIO_WORKER_THREADS") {
        Some(_) => tokio::runtime::Builder::new_multi_thread(),
        None => tokio::runtime::Builder::new_current_thread(),
    };
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("graphbrokerd: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // A daemon that logs to a file has no one reading its stderr: why it stopped goes to the file too.
    let logs_to_file = args.log_file.is_some();
    match runtime.block_on(run(args, inherited)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graphbrokerd: {e:#}");
            if logs_to_file {
                tracing::error!("{e:#}");
            }
            activation::notify(&[NotifyState::Status(&format!("failed: {e:#}"))]);
            ExitCode::FAILURE
        }
    }
}

/// `--generate-man DIR`: the page comes from the clap definition, so it lists the flags as they are.
fn generate_man(dir: &Path) -> ExitCode {
    use clap::CommandFactory;
    let written = std::fs::create_dir_all(dir).and_then(|()| clap_mangen::Man::new(Args::command()).generate_to(dir));
    match written {
        Ok(page) => {
            println!("{}", page.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("graphbrokerd: could not write the man page into {}: {e}", dir.display());
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args, inherited: Option<(std::os::unix::net::UnixListener, Activation)>) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref()).context("failed to load the configuration")?;
    // Signal handlers first: a signal that arrives once the socket answers must be handled, not kill us.
    let terminate = signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let interrupt = signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;
    let hangup = signal(SignalKind::hangup()).context("failed to install the SIGHUP handler")?;

    let (listener, activation, socket_path) = match inherited {
        Some((listener, activation)) => {
            listener.set_nonblocking(true).context("failed to prepare the inherited socket")?;
            let path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
            (tokio::net::UnixListener::from_std(listener)?, Some(activation), path)
        }
        None => {
            let path = match args.socket.clone() {
                Some(path) => path,
                None => resolve_socket_path(|name| std::env::var_os(name), nix::unistd::getuid().as_raw())?,
            };
            (graphbrokerd::socket::bind(&path)?, None, Some(path))
        }
    };
    let metrics = Arc::new(Metrics::new());
    let platform = EntraPlatform::new(config.http_timeout)
        .context("failed to build the HTTP client")?
        .with_latency(metrics.idp_latency());
    let broker = Broker::with_metrics(&config, Arc::new(platform), Arc::new(SystemStores::default()), metrics);
    match graphbroker_protocol::default_audit_path().filter(|_| !args.no_audit) {
        Some(path) => match graphbrokerd::audit::AuditLog::start(path.clone(), graphbrokerd::audit::MAX_BYTES) {
            Ok(log) => broker.guard().start_audit(log),
            Err(e) => {
                tracing::warn!("the audit log {} could not be opened ({e}); decisions are not recorded", path.display())
            }
        },
        None if args.no_audit => {}
        None => tracing::warn!("no home directory for the audit log; decisions are not recorded"),
    }
    broker.load_accounts().await;
    // The rolling refresh at every start (a service manager's daily start or timer, a first request) and once a
    // day of boot clock while the daemon keeps running (a check that finds nothing idle asks the platform
    // nothing); after a suspend, the refresh of what came due meanwhile (`broker/wake.rs`).
    tokio::spawn(broker.clone().watch_clocks());
    let shown_path = socket_path.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(unnamed)".into());
    tracing::info!(
        socket = %shown_path,
        activation = ?activation,
        config = %config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into()),
        profiles = config.profiles.len(),
        "graphbrokerd {} ready",
        env!("CARGO_PKG_VERSION")
    );

    let stopping = Arc::new(tokio::sync::Notify::new());
    let activity = Arc::new(Activity::default());
    let idle_exit = (activation.is_some() && args.idle_exit > 0).then(|| Duration::from_secs(args.idle_exit));
    if args.idle_exit > 0 && activation.is_none() {
        tracing::warn!("--idle-exit applies only under socket activation; ignoring it");
    }
    let supervisor = Supervisor {
        broker: broker.clone(),
        signals: Signals { terminate, interrupt, hangup },
        config_path: args.config.clone(),
        activity: activity.clone(),
        idle_exit,
        stopping: stopping.clone(),
    };
    // Ready only now: the listener accepts, the accounts are loaded, the signal handlers are in place.
    activation::notify(&[NotifyState::Ready, NotifyState::Status(&broker.status_line())]);

    let defaults = ConnectionLimits::default();
    let limits = ConnectionLimits {
        header_read_timeout: args.header_read_timeout_ms.map_or(defaults.header_read_timeout, Duration::from_millis),
        write_idle_timeout: args.write_idle_timeout_ms.map_or(defaults.write_idle_timeout, Duration::from_millis),
        max_connections: args.max_connections.unwrap_or(defaults.max_connections).max(1),
        max_waiting: args.max_waiting.unwrap_or(defaults.max_waiting),
    };
    let policy = PeerPolicy::current_user();
    let serving = server::serve_with_limits(listener, broker, policy, activity, limits, supervisor.run());
    tokio::pin!(serving);
    let result = tokio::select! {
        result = &mut serving => result.context("the server failed"),
        _ = async { stopping.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting anyway");
            Ok(())
        }
    };
    // A socket the service manager passed is the manager's to remove; our own is ours.
    if activation.is_none()
        && let Some(path) = &socket_path
        && let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %path.display(), "could not remove the socket: {e}");
    }
    tracing::info!("stopped");
    result
}

/// The signals the daemon answers, installed before it is ready.
struct Signals {
    terminate: Signal,
    interrupt: Signal,
    hangup: Signal,
}

/// The daemon's control loop while it serves: SIGTERM and SIGINT stop it, SIGHUP reloads the config, account
/// and sign-in changes go to the service manager's status line, and under socket activation it exits when idle
/// with nothing to lose. [`Supervisor::run`] completes when the daemon should stop: it is the server's shutdown
/// future.
struct Supervisor {
    broker: Arc<Broker>,
    signals: Signals,
    config_path: Option<PathBuf>,
    activity: Arc<Activity>,
    idle_exit: Option<Duration>,
    /// Told once the server has been asked to stop, to start the grace period.
    stopping: Arc<tokio::sync::Notify>,
}

impl Supervisor {
    async fn run(mut self) {
        let broker = &self.broker;
        let mut changes = broker.subscribe_changes();
        let mut idle_check = tokio::time::interval(
            self.idle_exit.map(|d| (d / 4).max(Duration::from_millis(250))).unwrap_or(Duration::from_secs(3600)),
        );
        loop {
            tokio::select! {
                _ = self.signals.terminate.recv() => { tracing::info!("SIGTERM: finishing in-flight requests"); break; }
                _ = self.signals.interrupt.recv() => { tracing::info!("SIGINT: finishing in-flight requests"); break; }
                _ = self.signals.hangup.recv() => reload(broker, self.config_path.as_deref()),
                Ok(()) = changes.changed() => {
                    activation::notify(&[NotifyState::Status(&broker.status_line())]);
                }
                _ = idle_check.tick() => {
                    if let Some(limit) = self.idle_exit
                        && self.activity.idle_for() >= limit
                        && !broker.has_state_to_lose()
                    {
                        tracing::info!("idle for {limit:?} with nothing to lose: exiting until the next connection");
                        break;
                    }
                }
            }
        }
        activation::notify(&[NotifyState::Stopping]);
        broker.begin_shutdown();
        self.stopping.notify_one();
    }
}

/// SIGHUP: reads the config again and applies it. A config that does not load leaves everything as it was.
fn reload(broker: &Broker, config_path: Option<&Path>) {
    // systemd 253+ wants the monotonic time with RELOADING=1 to match it with the READY=1 that ends the reload.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => activation::notify(&[NotifyState::Reloading, now]),
        Err(_) => activation::notify(&[NotifyState::Reloading]),
    }
    let outcome = Config::load(config_path).map_err(anyhow::Error::from).and_then(|config| {
        Ok((EntraPlatform::new(config.http_timeout)?.with_latency(broker.metrics().idp_latency()), config))
    });
    match outcome {
        Ok((platform, config)) => {
            let summary = broker.reload(&config, Arc::new(platform));
            tracing::info!(
                added = ?summary.added,
                removed = ?summary.removed,
                changed = ?summary.changed,
                replaced = ?summary.replaced,
                "configuration reloaded"
            );
        }
        Err(e) => tracing::error!("SIGHUP: the configuration was not reloaded, the old one stays: {e:#}"),
    }
    activation::notify(&[NotifyState::Ready, NotifyState::Status(&broker.status_line())]);
}
