//! The `fake-entra` binary: serves the stand-in on a TCP port until SIGTERM or SIGINT, for the offline demo.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use fake_entra::{DEFAULT_CLIENT_ID, FakeEntra};

/// A strict local stand-in for the Microsoft identity platform v2.0 endpoints and Graph's /v1.0/me.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Registered public client id (repeatable).
    #[arg(long = "client-id", default_value = DEFAULT_CLIENT_ID)]
    client_ids: Vec<String>,
    /// A user of the fake tenant (repeatable); default alice@contoso.com.
    #[arg(long = "user")]
    users: Vec<String>,
    /// Device-code polling interval in seconds.
    #[arg(long, default_value_t = 5)]
    device_interval: u64,
    /// Extra redirect URI registered for every client (repeatable); http://localhost always is.
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Device-code lifetime, e.g. "15m".
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    device_code_lifetime: Duration,
    /// Access-token lifetime, e.g. "3599s" or "1h".
    #[arg(long, default_value = "3599s", value_parser = humantime::parse_duration)]
    access_token_lifetime: Duration,
    /// Refresh-token inactivity lifetime, e.g. "90days".
    #[arg(long, default_value = "90days", value_parser = humantime::parse_duration)]
    refresh_token_lifetime: Duration,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let mut builder = FakeEntra::builder()
        .listen(args.listen)
        .device_interval(Duration::from_secs(args.device_interval))
        .device_code_lifetime(args.device_code_lifetime)
        .access_token_lifetime(args.access_token_lifetime)
        .refresh_token_lifetime(args.refresh_token_lifetime);
    for client_id in args.client_ids {
        builder = builder.client(client_id);
    }
    for user in args.users {
        builder = builder.user(user);
    }
    for uri in args.redirect_uris {
        builder = builder.redirect_uri(uri);
    }
    let fake = builder.start().with_context(|| format!("failed to listen on {}", args.listen))?;

    // The demo script reads this first line to learn the port, so it must be exact and flushed.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "listening on {}", fake.base_url()).context("failed to write to stdout")?;
    stdout.flush().context("failed to flush stdout")?;
    drop(stdout);

    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("failed to start runtime")?;
    runtime.block_on(wait_for_signal())?;
    tracing::info!("shutting down");
    drop(fake);
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("failed to listen for SIGINT")?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
