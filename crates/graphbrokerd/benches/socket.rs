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

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream as BlockingUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use graphbroker_client::{Client, ErrorCode, SignInPrompt, TokenQuery};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";
const USER: &str = "alice@contoso.com";
const SCOPES: &str = "User.Read";
/// The concurrency levels the issue asks about: one caller, a busy build, a parallel test run.
const CONCURRENCY: [usize; 3] = [1, 8, 64];
/// Unmeasured time before each row, so that connections exist and caches are warm when measuring starts.
const WARMUP: Duration = Duration::from_millis(500);
/// The daemon's runtime has one worker per core (here 2); the Tokio echo server gets the same.
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
    /// `TOKIO_WORKER_THREADS` for the daemon (an experiment knob: Tokio's default is one worker per core).
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

/// Signs the user in through the device flow: ask, approve at the stand-in, ask again and wait.
async fn sign_in(client: &Client, fake: &fake_entra::FakeEntra) -> anyhow::Result<()> {
    let query = TokenQuery { scopes: Some(SCOPES.into()), ..TokenQuery::default() };
    // Through the library's waiting logic with no time to wait: it asks again while the daemon is still getting
    // the device code (`signin_required` without a prompt yet), then hands over the prompt.
    let mut shown = None;
    let error = match client.token_with_signin(&query, Duration::ZERO, |prompt, _| shown = Some(prompt.clone())).await {
        Ok(_) => bail!("the daemon served a token before anyone signed in"),
        Err(error) => error,
    };
    ensure!(error.code() == Some(ErrorCode::SigninRequired), "expected signin_required, got {error}");
    let Some(SignInPrompt::Device { user_code, .. }) = shown else {
        bail!("expected a device-code prompt, got {error}");
    };
    fake.approve_device(&user_code, USER)?;
    client.token(&TokenQuery { wait: Some(30), ..query }).await?;
    Ok(())
}

/// The sizes of a token request as the library sends it and of the daemon's whole answer (headers and body).
fn token_exchange_size(socket: &Path) -> anyhow::Result<(usize, usize)> {
    let request =
        format!("GET /v1/token?scopes={SCOPES} HTTP/1.1\r\naccept: application/json\r\nhost: localhost\r\n\r\n");
    let mut stream = BlockingUnixStream::connect(socket)?;
    stream.write_all(request.replace("\r\n\r\n", "\r\nconnection: close\r\n\r\n").as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    ensure!(response.starts_with(b"HTTP/1.1 200"), "token request failed: {}", String::from_utf8_lossy(&response));
    Ok((request.len(), response.len()))
}

/// Answers every `request_bytes` read with `response_bytes`, per connection, until the runtime is dropped.
async fn echo_server(listener: UnixListener, request_bytes: usize, response_bytes: usize) {
    while let Ok((mut stream, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut request = vec![0u8; request_bytes];
            let response = vec![b'x'; response_bytes];
            while stream.read_exact(&mut request).await.is_ok() {
                if stream.write_all(&response).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// The bare floor: per connection a socket pair, a blocking thread answering on one end and a blocking thread
/// asking on the other, timed like [`drive`]. With `pin`, every thread runs on that one CPU.
fn drive_bare(
    concurrency: usize,
    request_bytes: usize,
    response_bytes: usize,
    measure: Duration,
    pin: Option<usize>,
) -> anyhow::Result<Sample> {
    let pairs = (0..concurrency).map(|_| BlockingUnixStream::pair()).collect::<Result<Vec<_>, _>>()?;
    let window = Window::after_warmup(measure);
    let pin_here = move || -> Result<(), String> {
        let Some(cpu) = pin else { return Ok(()) };
        let mut set = CpuSet::new();
        set.set(cpu).map_err(|e| e.to_string())?;
        sched_setaffinity(Pid::from_raw(0), &set).map_err(|e| format!("cannot pin to CPU {cpu}: {e}"))
    };
    std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .into_iter()
            .map(|(mut client, mut server)| {
                scope.spawn(move || {
                    let mut request = vec![0u8; request_bytes];
                    let response = vec![b'x'; response_bytes];
                    if pin_here().is_ok() {
                        while server.read_exact(&mut request).is_ok() && server.write_all(&response).is_ok() {}
                    }
                });
                scope.spawn(move || {
                    let mut recorder = Recorder::new(window);
                    if let Err(error) = pin_here() {
                        recorder.record(Instant::now(), Err(error));
                    }
                    let (request, mut response) = (vec![b'g'; request_bytes], vec![0u8; response_bytes]);
                    while let Some(started) = recorder.next() {
                        let outcome = client
                            .write_all(&request)
                            .and_then(|()| client.read_exact(&mut response))
                            .map_err(|e| e.to_string());
                        recorder.record(started, outcome);
                    }
                    // Dropping `client` ends the answering thread.
                    recorder
                })
            })
            .collect();
        std::thread::sleep(window.start.saturating_duration_since(Instant::now()));
        let before = CpuClock::now(None);
        std::thread::sleep(window.end.saturating_duration_since(Instant::now()));
        let cpu = CpuClock::now(None).since(&before, measure);
        let recorders = workers.into_iter().map(|w| w.join().expect("bare echo worker panicked"));
        Ok(Sample::collect(recorders, measure, cpu, 0))
    })
}

/// One request/response exchange, repeated by a load worker.
trait RoundTrip: Send + 'static {
    fn round_trip(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// A persistent connection to the echo server.
struct EchoRoundTrip {
    stream: UnixStream,
    request: Vec<u8>,
    response: Vec<u8>,
}

impl EchoRoundTrip {
    async fn connect(path: &Path, request_bytes: usize, response_bytes: usize) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        Ok(Self { stream, request: vec![b'g'; request_bytes], response: vec![0; response_bytes] })
    }
}

impl RoundTrip for EchoRoundTrip {
    async fn round_trip(&mut self) -> Result<(), String> {
        self.stream.write_all(&self.request).await.map_err(|e| e.to_string())?;
        self.stream.read_exact(&mut self.response).await.map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A cached token through the library client (clones share its connection pool).
struct CachedToken {
    client: Client,
    query: TokenQuery,
}

impl RoundTrip for CachedToken {
    async fn round_trip(&mut self) -> Result<(), String> {
        self.client.token(&self.query).await.map(drop).map_err(|e| e.to_string())
    }
}

/// One row's measurements.
#[derive(Debug)]
struct Sample {
    /// Latency of each exchange started inside the measured window, sorted.
    latencies: Vec<Duration>,
    measured: Duration,
    errors: u64,
    first_error: Option<String>,
    /// CPU used inside the window, in cores: by the observed process (the daemon), by this program (load
    /// generator and echo server), and by everything else on the machine (noise; near zero on a quiet machine).
    cpu: CpuUse,
    rss_max_kib: u64,
}

/// Cores busy over a window, by whom.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    observed: Option<f64>,
    own: Option<f64>,
    others: Option<f64>,
}

/// CPU seconds consumed so far: by the observed process, this one, and the whole machine.
#[derive(Debug, Clone, Copy)]
struct CpuClock {
    observed: Option<f64>,
    own: Option<f64>,
    machine: Option<f64>,
}

impl CpuClock {
    fn now(observe: Option<u32>) -> Self {
        Self { observed: observe.and_then(cpu_seconds), own: cpu_seconds_self(), machine: machine_busy_seconds() }
    }

    fn since(&self, earlier: &Self, window: Duration) -> CpuUse {
        let rate = |now: Option<f64>, then: Option<f64>| Some((now? - then?) / window.as_secs_f64());
        let observed = rate(self.observed, earlier.observed);
        let own = rate(self.own, earlier.own);
        let machine = rate(self.machine, earlier.machine);
        let others = machine.map(|m| (m - observed.unwrap_or(0.0) - own.unwrap_or(0.0)).max(0.0));
        CpuUse { observed, own, others }
    }
}

impl Sample {
    fn collect(recorders: impl Iterator<Item = Recorder>, measured: Duration, cpu: CpuUse, rss_max_kib: u64) -> Self {
        let mut sample = Sample { latencies: Vec::new(), measured, errors: 0, first_error: None, cpu, rss_max_kib };
        for recorder in recorders {
            sample.latencies.extend(recorder.latencies);
            sample.errors += recorder.errors;
            if sample.first_error.is_none() {
                sample.first_error = recorder.first_error;
            }
        }
        sample.latencies.sort_unstable();
        sample
    }

    fn percentile(&self, p: f64) -> Duration {
        let rank = ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len().max(1));
        self.latencies.get(rank - 1).copied().unwrap_or_default()
    }

    fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }
}

/// One concurrency level: the two floors and the daemon.
#[derive(Debug)]
struct Row {
    concurrency: usize,
    bare: Sample,
    tokio_echo: Sample,
    token: Sample,
}

impl Row {
    fn ratio(&self, floor: &Sample) -> f64 {
        self.token.percentile(0.5).as_secs_f64() / floor.percentile(0.5).as_secs_f64()
    }
}

/// The measured window of a row: it opens after [`WARMUP`] and lasts the measured time.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

impl Window {
    fn after_warmup(measure: Duration) -> Self {
        let start = Instant::now() + WARMUP;
        Self { start, end: start + measure }
    }
}

/// One load worker's results: latencies of exchanges started inside the window; it stops at the first error.
#[derive(Debug)]
struct Recorder {
    window: Window,
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Recorder {
    fn new(window: Window) -> Self {
        Self { window, latencies: Vec::new(), errors: 0, first_error: None }
    }

    /// The start time of the next exchange, or `None` once the window has closed or an exchange failed.
    fn next(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.window.end && self.errors == 0).then_some(now)
    }

    fn record(&mut self, started: Instant, outcome: Result<(), String>) {
        let took = started.elapsed();
        match outcome {
            Ok(()) if started >= self.window.start => self.latencies.push(took),
            Ok(()) => {}
            Err(error) => {
                self.errors += 1;
                self.first_error.get_or_insert(error);
            }
        }
    }
}

/// Runs every worker in a loop for [`WARMUP`] and then `measure`; records exchanges started inside the window.
/// With `observe`, also measures that process's CPU use over the window and samples its RSS.
async fn drive<W: RoundTrip>(workers: Vec<W>, measure: Duration, observe: Option<u32>) -> Sample {
    let window = Window::after_warmup(measure);
    let (window_start, window_end) = (window.start, window.end);
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            tokio::spawn(async move {
                let mut recorder = Recorder::new(window);
                while let Some(started) = recorder.next() {
                    let outcome = worker.round_trip().await;
                    recorder.record(started, outcome);
                }
                recorder
            })
        })
        .collect();
    let observer = tokio::spawn(async move {
        tokio::time::sleep_until(window_start.into()).await;
        let before = CpuClock::now(observe);
        let mut rss_max_kib = 0;
        if let Some(pid) = observe {
            while Instant::now() < window_end {
                rss_max_kib = rss_max_kib.max(proc_status_kib(pid, "VmRSS").unwrap_or(0));
                tokio::time::sleep(RSS_SAMPLE_EVERY.min(window_end.saturating_duration_since(Instant::now()))).await;
            }
        } else {
            tokio::time::sleep_until(window_end.into()).await;
        }
        (CpuClock::now(observe).since(&before, measure), rss_max_kib)
    });
    let mut recorders = Vec::with_capacity(tasks.len());
    for task in tasks {
        recorders.push(task.await.expect("load worker panicked"));
    }
    let (cpu, rss_max_kib) = observer.await.expect("observer panicked");
    Sample::collect(recorders.into_iter(), measure, cpu, rss_max_kib)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// User plus system CPU time of a whole process (all threads), from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn cpu_seconds_self() -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Busy CPU time of the whole machine, all cores: everything in `/proc/stat`'s `cpu` line but idle and iowait.
fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy as f64 / USER_HZ)
}

fn cpu_seconds_of(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// The whole processes timed: a label and the argv. `/bin/true` (what starting any process costs here) first, then
/// the CLI's `--version` (loading it and its argument parser) and `token` (the real thing); the same two for
/// `GRAPHBROKER_BENCH_CLI_BEFORE` when set.
fn cli_commands(settings: &Settings, socket: &Path) -> Vec<(String, Vec<std::ffi::OsString>)> {
    let token = |cli: &Path| {
        let mut argv: Vec<std::ffi::OsString> = vec![cli.into(), "--no-autostart".into(), "--socket".into()];
        argv.extend([socket.as_os_str().to_owned(), "token".into(), "--scopes".into(), SCOPES.into()]);
        argv
    };
    let mut commands = vec![
        ("/bin/true".to_owned(), vec!["/bin/true".into()]),
        ("graphbroker-client --version".to_owned(), vec![settings.cli_bin.clone().into(), "--version".into()]),
        ("graphbroker-client token".to_owned(), token(&settings.cli_bin)),
    ];
    if let Some(before) = &settings.cli_before {
        commands.push(("before: --version".to_owned(), vec![before.clone().into(), "--version".into()]));
        commands.push(("before: token".to_owned(), token(before)));
    }
    commands
}

/// Whole-process timings of [`cli_commands`], sorted. The commands take turns run by run, so that a change in the
/// machine's load during the measurement falls on all of them alike. Each gets 10 unmeasured runs first.
fn cli_timings(settings: &Settings, socket: &Path) -> anyhow::Result<Vec<(String, Vec<Duration>)>> {
    let commands = cli_commands(settings, socket);
    let mut timings: Vec<(String, Vec<Duration>)> =
        commands.iter().map(|(label, _)| (label.clone(), Vec::with_capacity(settings.cli_runs))).collect();
    for run in 0..settings.cli_runs + 10 {
        for ((label, argv), (_, runs)) in commands.iter().zip(timings.iter_mut()) {
            let started = Instant::now();
            let output = Command::new(&argv[0]).args(&argv[1..]).stdin(Stdio::null()).output()?;
            let took = started.elapsed();
            ensure!(
                output.status.success(),
                "{label} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            if run >= 10 {
                runs.push(took);
            }
        }
    }
    for (_, runs) in &mut timings {
        runs.sort_unstable();
    }
    Ok(timings)
}

#[derive(Debug)]
struct HyperfineResult {
    label: String,
    median: f64,
    mean: f64,
    stddev: f64,
}

/// Every one of [`cli_commands`] under one hyperfine run (no shell), when hyperfine is on PATH; `None` when it is
/// not.
fn hyperfine(settings: &Settings, socket: &Path) -> Option<Result<Vec<HyperfineResult>, String>> {
    let found = Command::new("hyperfine").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if !found.is_ok_and(|status| status.success()) {
        return None;
    }
    let run = || -> anyhow::Result<Vec<HyperfineResult>> {
        let dir = tempfile::tempdir()?;
        let json = dir.path().join("hyperfine.json");
        let commands = cli_commands(settings, socket);
        let mut hyperfine = Command::new("hyperfine");
        hyperfine.args(["-N", "--style", "none", "--warmup", "20", "--runs"]);
        hyperfine.arg(settings.cli_runs.to_string()).arg("--export-json").arg(&json);
        for (_, argv) in &commands {
            let words: Vec<String> = argv.iter().map(|word| format!("'{}'", word.to_string_lossy())).collect();
            hyperfine.arg(words.join(" "));
        }
        let output = hyperfine.output()?;
        ensure!(output.status.success(), "hyperfine failed: {}", String::from_utf8_lossy(&output.stderr));
        let results: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
        commands
            .iter()
            .enumerate()
            .map(|(index, (label, _))| {
                let field =
                    |name: &str| results["results"][index][name].as_f64().with_context(|| format!("no {name} in JSON"));
                Ok(HyperfineResult {
                    label: label.clone(),
                    median: field("median")?,
                    mean: field("mean")?,
                    stddev: field("stddev")?,
                })
            })
            .collect()
    };
    Some(run().map_err(|e| format!("{e:#}")))
}

impl Report {
    fn print(&self, settings: &Settings) {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!();
        println!("graphbrokerd socket benchmark: {cores} cores available, {:?} measured per row", settings.measure);
        println!("daemon: {}", settings.daemon_bin.display());
        match settings.daemon_workers {
            Some(workers) => println!("daemon runtime: TOKIO_WORKER_THREADS={workers} (experiment)"),
            None => println!("daemon runtime: as built (Tokio's default is one worker per core)"),
        }
        println!(
            "token exchange: {} B request, {} B answer (headers + body); the echo moves the same sizes",
            self.request_bytes, self.response_bytes
        );
        println!();
        let header = format!(
            "{:>5} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>9} {:>9} {:>9} | {:>6} {:>6}",
            "conns",
            "bare p50",
            "p99",
            "req/s",
            "tokio p50",
            "p99",
            "req/s",
            "token p50",
            "p99",
            "req/s",
            "/bare",
            "/tokio"
        );
        println!("cached GET /v1/token?scopes={SCOPES} through graphbroker_client::Client (token), next to the");
        println!("Unix-socket echo floor: blocking threads (bare) and Tokio on both ends (tokio); ratios are of p50s");
        println!("{header}");
        for row in &self.rows {
            let stats = |s: &Sample| {
                format!("{:>9} {:>9} {:>9.0}", micros(s.percentile(0.5)), micros(s.percentile(0.99)), s.per_second())
            };
            println!(
                "{:>5} | {} | {} | {} | {:>5.1}x {:>5.1}x",
                row.concurrency,
                stats(&row.bare),
                stats(&row.tokio_echo),
                stats(&row.token),
                row.ratio(&row.bare),
                row.ratio(&row.tokio_echo),
            );
        }
        println!(
            "    1 | bare, both ends pinned to CPU 0 (no cross-CPU wakeup): p50 {}, p99 {}, {:.0}/s; token p50 is {:.1}x",
            micros(self.same_cpu.percentile(0.5)),
            micros(self.same_cpu.percentile(0.99)),
            self.same_cpu.per_second(),
            self.rows.first().map(|row| row.ratio(&self.same_cpu)).unwrap_or(0.0),
        );
        println!();
        println!("CPU in cores over each measured window (bench = this program: load generator and echo servers;");
        println!("others = the rest of the machine, steal included: noise, near 0 on a quiet machine)");
        println!(
            "{:>5} | {:>12} {:>12} | {:>12} {:>13} | {:>13} {:>12} {:>13} | {:>11}",
            "conns",
            "bare: bench",
            "bare: others",
            "tokio: bench",
            "tokio: others",
            "token: daemon",
            "token: bench",
            "token: others",
            "daemon/req"
        );
        for row in &self.rows {
            let token = &row.token;
            let per_request =
                token.cpu.observed.map(|c| c * token.measured.as_secs_f64() / token.latencies.len().max(1) as f64);
            println!(
                "{:>5} | {:>12} {:>12} | {:>12} {:>13} | {:>13} {:>12} {:>13} | {:>11}",
                row.concurrency,
                in_cores(row.bare.cpu.own),
                in_cores(row.bare.cpu.others),
                in_cores(row.tokio_echo.cpu.own),
                in_cores(row.tokio_echo.cpu.others),
                in_cores(token.cpu.observed),
                in_cores(token.cpu.own),
                in_cores(token.cpu.others),
                per_request.map(|s| micros(Duration::from_secs_f64(s))).unwrap_or_else(|| "?".into()),
            );
        }
        println!(
            "platform token requests during the load: {} (cache hits {}, refreshes {})",
            self.platform_token_requests, self.cache_hits, self.refreshes
        );
        println!();
        println!("daemon memory (VmRSS unless said)");
        println!("  at start, before sign-in   {}", mib(self.rss_start_kib));
        println!(
            "  idle, after sign-in        {} (anonymous {}, file-backed {})",
            mib(self.rss_idle_kib),
            mib(self.rss_idle_anon_kib),
            mib(self.rss_idle_file_kib)
        );
        println!("  under load, highest sample {}", mib(self.rss_load_max_kib));
        println!("  after load                 {}", mib(self.rss_after_kib));
        println!("  peak (VmHWM)               {}", mib(self.hwm_kib));
        println!();
        println!("whole processes, {} runs each (after 10 unmeasured), the commands taking turns", settings.cli_runs);
        println!("  {:<30} {:>9} {:>9} {:>9} {:>11}", "command", "median", "p90", "min", "x /bin/true");
        let spawn = self.cli.first().map(|(_, runs)| nth(runs, 0.5).as_secs_f64()).unwrap_or(f64::NAN);
        for (label, runs) in &self.cli {
            println!(
                "  {label:<30} {:>9} {:>9} {:>9} {:>10.2}x",
                millis(nth(runs, 0.5)),
                millis(nth(runs, 0.9)),
                millis(nth(runs, 0.0)),
                nth(runs, 0.5).as_secs_f64() / spawn
            );
        }
        match &self.hyperfine {
            Some(Ok(results)) => {
                println!("  hyperfine -N, the same commands:");
                let spawn = results.first().map(|h| h.median).unwrap_or(f64::NAN);
                for h in results {
                    println!(
                        "  {:<30} median {:.3} ms, mean {:.3} ± {:.3} ms, {:.2}x /bin/true",
                        h.label,
                        h.median * 1e3,
                        h.mean * 1e3,
                        h.stddev * 1e3,
                        h.median / spawn
                    );
                }
            }
            Some(Err(e)) => println!("  hyperfine failed: {e}"),
            None if settings.hyperfine => println!("  (hyperfine not installed; skipped)"),
            None => println!("  (hyperfine skipped: GRAPHBROKER_BENCH_HYPERFINE=0)"),
        }
        self.print_verdicts();
    }

    fn print_verdicts(&self) {
        let line = |target: String, met: bool, detail: String| {
            println!("  {target:<34} {:<8} ({detail})", if met { "met" } else { "NOT met" });
        };
        println!();
        println!("targets");
        let ratios = |floor: fn(&Row) -> &Sample| {
            let each: Vec<String> =
                self.rows.iter().map(|row| format!("{:.1}x@{}", row.ratio(floor(row)), row.concurrency)).collect();
            let worst = self.rows.iter().map(|row| row.ratio(floor(row))).fold(0.0, f64::max);
            (worst <= TARGET_P50_RATIO, each.join(", "))
        };
        let (met, each) = ratios(|row| &row.bare);
        line(format!("p50 <= {TARGET_P50_RATIO}x bare echo floor"), met, each.clone());
        let worst = self.rows.iter().map(|row| row.ratio(&row.bare)).fold(0.0, f64::max);
        line(format!("p50 <= {TARGET_P50_BARE_RATIO}x bare echo floor"), worst <= TARGET_P50_BARE_RATIO, each);
        let (met, each) = ratios(|row| &row.tokio_echo);
        line(format!("p50 <= {TARGET_P50_RATIO}x tokio echo floor"), met, each);
        if let Some(row) = self.rows.first() {
            let ratio = row.ratio(&self.same_cpu);
            line(
                format!("p50 <= {TARGET_P50_RATIO}x same-CPU floor"),
                ratio <= TARGET_P50_RATIO,
                format!("{ratio:.1}x@{}", row.concurrency),
            );
        }
        let (best, at) = self
            .rows
            .iter()
            .map(|row| (row.token.per_second(), row.concurrency))
            .fold((0.0, 0), |a, b| if b.0 > a.0 { b } else { a });
        line(
            format!(">= {TARGET_REQUESTS_PER_SEC:.0} requests/s"),
            best >= TARGET_REQUESTS_PER_SEC,
            format!("best {best:.0}/s at {at} conns"),
        );
        if let Some((_, runs)) = self.cli.iter().find(|(label, _)| label == "graphbroker-client token") {
            let median = nth(runs, 0.5).as_secs_f64() * 1e3;
            line(
                format!("CLI median <= {TARGET_CLI_MEDIAN_MS} ms"),
                median <= TARGET_CLI_MEDIAN_MS,
                format!("{median:.2} ms"),
            );
            if let Some((_, spawn)) = self.cli.first() {
                let ratio = median / (nth(spawn, 0.5).as_secs_f64() * 1e3);
                line(
                    format!("CLI token <= {TARGET_CLI_SPAWN_RATIO}x /bin/true"),
                    ratio <= TARGET_CLI_SPAWN_RATIO,
                    format!("{ratio:.2}x, medians in the same run"),
                );
            }
        }
        let idle = self.rss_idle_kib as f64 / 1024.0;
        line(format!("idle RSS <= {TARGET_IDLE_RSS_MIB} MiB"), idle <= TARGET_IDLE_RSS_MIB, format!("{idle:.1} MiB"));
        line(
            "cache only (no platform calls)".into(),
            self.platform_token_requests == 0,
            format!("{} token requests reached the stand-in", self.platform_token_requests),
        );
    }
}

fn nth(sorted: &[Duration], p: f64) -> Duration {
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied().unwrap_or_default()
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn in_cores(used: Option<f64>) -> String {
    used.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into())
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// The release daemon on a socket of its own, stopped (SIGTERM, then SIGKILL) when dropped.
struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    socket: PathBuf,
    log_path: PathBuf,
}

impl Daemon {
    fn start(bin: &Path, fake: &fake_entra::FakeEntra, workers: Option<usize>) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let config_path = dir.path().join("config.toml");
        let config = format!(
            r#"default_profile = "bench"
keyring_service = "graphbroker-bench-{pid}"

[profiles.bench]
authority = "{authority}"
client_id = "{CLIENT_ID}"
flow = "device"
scopes = ["{SCOPES}"]
store = "memory"
"#,
            pid = std::process::id(),
            authority = fake.authority("common"),
        );
        std::fs::write(&config_path, config)?;
        let socket = dir.path().join("run").join("graphbroker.sock");
        let log_path = dir.path().join("daemon.log");
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(bin);
        match workers {
            Some(workers) => command.env("TOKIO_WORKER_THREADS", workers.to_string()),
            None => command.env_remove("TOKIO_WORKER_THREADS"),
        };
        let child = command
            .arg("--config")
            .arg(&config_path)
            .arg("--socket")
            .arg(&socket)
            .args(["--log-level", "warn"])
            .env_remove("RUST_LOG")
            .env_remove("GRAPHBROKER_SOCKET")
            .env_remove("GRAPHBROKER_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("failed to start {}", bin.display()))?;
        let mut daemon = Daemon { child, dir, socket, log_path };
        daemon.wait_ready()?;
        Ok(daemon)
    }

    /// A connect loop with a deadline: ready when the socket accepts.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if BlockingUnixStream::connect(&self.socket).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("graphbrokerd exited early ({status}):\n{}", self.log());
            }
            ensure!(Instant::now() < deadline, "graphbrokerd did not become ready:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
