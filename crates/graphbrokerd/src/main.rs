//! `graphbrokerd`: parses flags, loads the config, binds the socket, serves until SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use graphbroker_protocol::{SOCKET_ENV, resolve_socket_path};
use graphbrokerd::broker::Broker;
use graphbrokerd::config::{CONFIG_ENV, Config};
use graphbrokerd::idp::IdentityPlatform;
use graphbrokerd::server::{self, PeerPolicy};
use tokio::signal::unix::{SignalKind, signal};

/// How long in-flight requests get to finish after SIGTERM before the daemon exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Brokers Microsoft Entra ID delegated tokens for local programs over a Unix socket.
#[derive(Debug, Parser)]
#[command(version, about, long_about = None)]
struct Args {
    /// Config file (default: $GRAPHBROKER_CONFIG, else the platform config dir's graphbroker/config.toml).
    #[arg(long, env = CONFIG_ENV)]
    config: Option<PathBuf>,
    /// Socket path (default: $XDG_RUNTIME_DIR/graphbroker/graphbroker.sock).
    #[arg(long, env = SOCKET_ENV)]
    socket: Option<PathBuf>,
    /// Log level when RUST_LOG is unset: error, warn, info, debug or trace. Token values are never logged.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();

    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("graphbrokerd: failed to start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("graphbrokerd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref()).context("failed to load the configuration")?;
    let socket_path = args
        .socket
        .unwrap_or_else(|| resolve_socket_path(|name| std::env::var_os(name), nix::unistd::getuid().as_raw()));
    // Signal handlers first: a SIGTERM that arrives once the socket answers must stop us cleanly.
    let mut terminate = signal(SignalKind::terminate()).context("failed to install the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to install the SIGINT handler")?;

    let listener = graphbrokerd::socket::bind(&socket_path)?;
    let idp = IdentityPlatform::new(config.http_timeout).context("failed to build the HTTP client")?;
    let broker = Broker::new(&config, idp);
    broker.load_accounts().await;
    tracing::info!(
        socket = %socket_path.display(),
        config = %config.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(defaults)".into()),
        profiles = config.profiles.len(),
        "graphbrokerd {} ready",
        env!("CARGO_PKG_VERSION")
    );

    let stopping = Arc::new(tokio::sync::Notify::new());
    let shutdown = {
        let broker = broker.clone();
        let stopping = stopping.clone();
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: finishing in-flight requests"),
                _ = interrupt.recv() => tracing::info!("SIGINT: finishing in-flight requests"),
            }
            broker.begin_shutdown();
            stopping.notify_one();
        }
    };
    let serving = server::serve(listener, broker, PeerPolicy::current_user(), shutdown);
    tokio::pin!(serving);
    let result = tokio::select! {
        result = &mut serving => result.context("the server failed"),
        _ = async { stopping.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!("in-flight requests did not finish within {SHUTDOWN_GRACE:?}; exiting anyway");
            Ok(())
        }
    };
    if let Err(e) = std::fs::remove_file(&socket_path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(socket = %socket_path.display(), "could not remove the socket: {e}");
    }
    tracing::info!("stopped");
    result
}
