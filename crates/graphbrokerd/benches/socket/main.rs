//! What a cached token costs through the socket, next to a bare Unix-socket round trip measured in the same run.
//!
//! Run it through `scripts/bench`, which builds the release binaries, copies them aside and points this program at
//! the copies (`GRAPHBROKERD_BIN`, `GRAPHBROKER_CLIENT_BIN`); the figures go in `docs/performance.md`. The program
//! starts the stand-in identity platform in-process and the real daemon (memory store, log level warn) on its own
//! socket, signs in once through the device flow, and then measures, all on loopback and Unix sockets:
//!
//! - the floor: a request/response echo over a Unix socket, sized like a token request and its answer, at 1, 8
//!   and 64 persistent connections; twice: bare (a blocking thread per connection on each side, nothing but the
//!   kernel in between) and through Tokio (a two-worker runtime serving, as the daemon's does, and the load
//!   generator's runtime asking), which is the floor plus what async I/O costs before HTTP and JSON; and once more
//!   bare at one connection with both ends pinned to one CPU, which takes the cross-CPU wakeup out (on a VM that
//!   wakeup can cost more than everything else in a round trip);
//! - cached `GET /v1/token?scopes=User.Read` through `graphbroker_client::Client` (one shared, pooled client) at
//!   1, 8 and 64 concurrent requests: p50, p99 and requests/s, with the daemon's CPU use;
//! - the daemon's RSS at start, idle after the sign-in, and under load (sampled, and `VmHWM`);
//! - `graphbroker-client token` as a whole process (and, for scale, `/bin/true` and `graphbroker-client
//!   --version`), each as a ratio to `/bin/true` in the same run, the runs of the commands interleaved so that
//!   they share the machine's moods; and all of them under hyperfine when it is installed.
//!
//! Load generator and daemon share the machine's cores, so requests/s is what the pair achieves together; the CPU
//! columns say how the cores were split. It also checks, through the stand-in's counters, that no request of the
//! run reached the identity platform.
//!
//! Knobs (environment): `GRAPHBROKER_BENCH_SECS` (measured seconds per row, default 3), `GRAPHBROKER_BENCH_CLI_RUNS`
//! (default 200), `GRAPHBROKER_BENCH_HYPERFINE=0` to skip hyperfine, `GRAPHBROKER_BENCH_DAEMON_WORKERS=N` to run the
//! daemon with `TOKIO_WORKER_THREADS=N` (an experiment; it acts only while the daemon leaves its runtime's worker
//! count to Tokio), `GRAPHBROKER_BENCH_CLI_BEFORE=PATH` to time another `graphbroker-client` (an earlier build)
//! side by side with this one.
//!
//! `floor.rs` runs the echo floor, `daemon.rs` starts the daemon and signs in, `measure.rs` is the load generator
//! and its CPU and memory readings, `cli.rs` times the CLI as whole processes, `report.rs` prints the tables.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use graphbroker_client::{Client, TokenQuery};
use tokio::net::UnixListener;

use crate::cli::{HyperfineResult, cli_timings, hyperfine};
use crate::daemon::{CachedToken, Daemon, sign_in, token_exchange_size};
use crate::floor::{EchoRoundTrip, drive_bare, echo_server};
use crate::measure::{Row, Sample, drive, proc_status_kib};

mod cli;
mod daemon;
mod floor;
mod measure;
mod report;

const CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const USER: &str = "alice@contoso.com";
const SCOPES: &str = "User.Read";
/// The concurrency levels the issue asks about: one caller, a busy build, a parallel test run.
const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// Unmeasured time before each row, so that connections exist and caches are warm when measuring starts.
const WARMUP: Duration = Duration::from_millis(500);
/// The Tokio echo server's workers, one per core (here 2). The daemon ran as many until it moved to one worker (issue 23);
/// the floor keeps two, the faster echo on this machine.
const SERVER_WORKERS: usize = 2;
/// `/proc/PID/stat` counts CPU time in USER_HZ ticks, which is 100 on every Linux architecture's userspace ABI.
const USER_HZ: f64 = 100.0;
/// How often daemon RSS is sampled under load.
const RSS_SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Targets from the issue, checked at the end.
const TARGET_P50_RATIO: f64 = 3.0;
const TARGET_REQUESTS_PER_SEC: f64 = 50_000.0;
const TARGET_CLI_MEDIAN_MS: f64 = 5.0;
/// `graphbroker-client token` on a cached token, as a multiple of starting `/bin/true`: the command should cost
/// little more than starting any process.
const TARGET_CLI_SPAWN_RATIO: f64 = 1.5;
/// The cached-token p50 as a multiple of the bare echo floor, the stricter target once answers are shared.
const TARGET_P50_BARE_RATIO: f64 = 2.0;
const TARGET_IDLE_RSS_MIB: f64 = 10.0;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --benches` runs bench targets without it. Measuring is slow and
    // wants release binaries, so a test run only says how to run it.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("socket bench: run it with `scripts/bench` (or `cargo bench -p graphbrokerd --bench socket`)");
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let report = run(&settings)?;
    report.print(&settings);
    Ok(())
}

/// What to run and for how long.
#[derive(Debug)]
struct Settings {
    daemon_bin: PathBuf,
    cli_bin: PathBuf,
    measure: Duration,
    cli_runs: usize,
    hyperfine: bool,
    /// Another `graphbroker-client` to time beside this one (`GRAPHBROKER_BENCH_CLI_BEFORE`).
    cli_before: Option<PathBuf>,
    /// `TOKIO_WORKER_THREADS` for the daemon (an experiment knob: the daemon runs one worker unless it is set).
    daemon_workers: Option<usize>,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let daemon_bin = std::env::var_os("GRAPHBROKERD_BIN")
            .map(PathBuf::from)
            .unwrap_or(env!("CARGO_BIN_EXE_graphbrokerd").into());
        // The CLI belongs to another package, so cargo does not build it for this bench; scripts/bench does.
        let cli_bin = match std::env::var_os("GRAPHBROKER_CLIENT_BIN") {
            Some(path) => PathBuf::from(path),
            None => daemon_bin.with_file_name("graphbroker-client"),
        };
        for bin in [&daemon_bin, &cli_bin] {
            ensure!(bin.is_file(), "{} is missing; build it first (scripts/bench does)", bin.display());
        }
        let measure = Duration::from_secs_f64(env_number("GRAPHBROKER_BENCH_SECS", 3.0)?);
        let cli_runs = env_number("GRAPHBROKER_BENCH_CLI_RUNS", 200.0)? as usize;
        ensure!(cli_runs > 0 && !measure.is_zero(), "GRAPHBROKER_BENCH_SECS and _CLI_RUNS must be positive");
        let hyperfine = std::env::var("GRAPHBROKER_BENCH_HYPERFINE").as_deref() != Ok("0");
        let daemon_workers = match std::env::var("GRAPHBROKER_BENCH_DAEMON_WORKERS") {
            Ok(value) => {
                Some(value.trim().parse().with_context(|| format!("bad GRAPHBROKER_BENCH_DAEMON_WORKERS {value:?}"))?)
            }
            Err(_) => None,
        };
        let cli_before = std::env::var_os("GRAPHBROKER_BENCH_CLI_BEFORE").map(PathBuf::from);
        if let Some(before) = &cli_before {
            ensure!(before.is_file(), "GRAPHBROKER_BENCH_CLI_BEFORE: {} is missing", before.display());
        }
        Ok(Self { daemon_bin, cli_bin, measure, cli_runs, hyperfine, cli_before, daemon_workers })
    }
}

fn env_number(name: &str, default: f64) -> anyhow::Result<f64> {
    match std::env::var(name) {
        Ok(value) => value.trim().parse().with_context(|| format!("{name}={value:?} is not a number")),
        Err(_) => Ok(default),
    }
}

/// Everything measured, printed at the end.
#[derive(Debug)]
struct Report {
    response_bytes: usize,
    request_bytes: usize,
    /// The bare floor at one connection with both ends pinned to one CPU.
    same_cpu: Sample,
    rows: Vec<Row>,
    rss_start_kib: u64,
    rss_idle_kib: u64,
    /// Of the idle RSS: anonymous memory (heap, stacks) and file-backed pages (the binary and libraries).
    rss_idle_anon_kib: u64,
    rss_idle_file_kib: u64,
    rss_load_max_kib: u64,
    rss_after_kib: u64,
    hwm_kib: u64,
    platform_token_requests: u64,
    cache_hits: u64,
    refreshes: u64,
    cli: Vec<(String, Vec<Duration>)>,
    hyperfine: Option<Result<Vec<HyperfineResult>, String>>,
}

fn run(settings: &Settings) -> anyhow::Result<Report> {
    let fake = fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(USER)
        .device_interval(Duration::from_secs(1))
        .start()
        .context("failed to start the stand-in identity platform")?;
    let daemon = Daemon::start(&settings.daemon_bin, &fake, settings.daemon_workers)?;
    let rss_start_kib = proc_status_kib(daemon.pid(), "VmRSS")?;

    // The load generator's worker count is fixed here so that TOKIO_WORKER_THREADS cannot change it.
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(SERVER_WORKERS);
    let load = tokio::runtime::Builder::new_multi_thread().worker_threads(cores).enable_all().build()?;
    let echo = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(SERVER_WORKERS)
        .thread_name("echo-server")
        .enable_all()
        .build()?;

    let client = Client::new(&daemon.socket);
    load.block_on(sign_in(&client, &fake)).with_context(|| format!("sign-in failed; daemon log:\n{}", daemon.log()))?;
    let rss_idle_kib = proc_status_kib(daemon.pid(), "VmRSS")?;
    let rss_idle_anon_kib = proc_status_kib(daemon.pid(), "RssAnon")?;
    let rss_idle_file_kib = proc_status_kib(daemon.pid(), "RssFile")?;
    let (request_bytes, response_bytes) = token_exchange_size(&daemon.socket)?;

    // The transport with no cross-CPU wakeup at all: both ends on CPU 0, one connection.
    let same_cpu = drive_bare(1, request_bytes, response_bytes, settings.measure, Some(0))?;
    if let Some(error) = &same_cpu.first_error {
        bail!("the pinned echo failed: {error}");
    }
    let echo_socket = daemon.dir.path().join("tokio-echo.sock");
    let listener = echo.block_on(async { UnixListener::bind(&echo_socket) })?;
    echo.spawn(echo_server(listener, request_bytes, response_bytes));

    let platform_before = fake.stats().token.requests;
    let counters_before = load.block_on(client.status())?.counters;
    let mut rows = Vec::new();
    let mut rss_load_max_kib = 0;
    for concurrency in CONCURRENCY {
        let bare = drive_bare(concurrency, request_bytes, response_bytes, settings.measure, None)?;
        let tokio_echo = load.block_on(async {
            let mut workers = Vec::with_capacity(concurrency);
            for _ in 0..concurrency {
                workers.push(EchoRoundTrip::connect(&echo_socket, request_bytes, response_bytes).await?);
            }
            anyhow::Ok(drive(workers, settings.measure, None).await)
        })?;
        let query = TokenQuery { scopes: Some(SCOPES.into()), ..TokenQuery::default() };
        let workers = (0..concurrency).map(|_| CachedToken { client: client.clone(), query: query.clone() }).collect();
        let token = load.block_on(drive(workers, settings.measure, Some(daemon.pid())));
        for (what, sample) in [("bare echo", &bare), ("tokio echo", &tokio_echo), ("token", &token)] {
            if let Some(error) = &sample.first_error {
                bail!("{what} failed ({} errors), first: {error}; daemon log:\n{}", sample.errors, daemon.log());
            }
        }
        rss_load_max_kib = rss_load_max_kib.max(token.rss_max_kib);
        rows.push(Row { concurrency, bare, tokio_echo, token });
    }
    let rss_after_kib = proc_status_kib(daemon.pid(), "VmRSS")?;
    let hwm_kib = proc_status_kib(daemon.pid(), "VmHWM")?;

    let cli = cli_timings(settings, &daemon.socket)?;
    let hyperfine = settings.hyperfine.then(|| hyperfine(settings, &daemon.socket)).flatten();

    let counters_after = load.block_on(client.status())?.counters;
    let platform_token_requests = fake.stats().token.requests - platform_before;
    drop(client);
    drop(load);
    drop(echo);
    Ok(Report {
        response_bytes,
        request_bytes,
        same_cpu,
        rows,
        rss_start_kib,
        rss_idle_kib,
        rss_idle_anon_kib,
        rss_idle_file_kib,
        rss_load_max_kib,
        rss_after_kib,
        hwm_kib,
        platform_token_requests,
        cache_hits: counters_after.cache_hits - counters_before.cache_hits,
        refreshes: counters_after.refreshes - counters_before.refreshes,
        cli,
        hyperfine,
    })
}
