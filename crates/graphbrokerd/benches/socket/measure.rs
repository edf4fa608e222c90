//! The load generator and what it measures: a `RoundTrip` repeated by each worker over a window, latencies,
//! CPU use (this process, the daemon, the machine) and the daemon's RSS.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::{RSS_SAMPLE_EVERY, USER_HZ, WARMUP};

/// One request/response exchange, repeated by a load worker.
pub(crate) trait RoundTrip: Send + 'static {
    fn round_trip(&mut self) -> impl Future<Output = Result<(), String>> + Send;
}

/// One row's measurements.
#[derive(Debug)]
pub(crate) struct Sample {
    /// Latency of each exchange started inside the measured window, sorted.
    pub(crate) latencies: Vec<Duration>,
    pub(crate) measured: Duration,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
    /// CPU used inside the window, in cores: by the observed process (the daemon), by this program (load
    /// generator and echo server), and by everything else on the machine (noise; near zero on a quiet machine).
    pub(crate) cpu: CpuUse,
    pub(crate) rss_max_kib: u64,
}

/// Cores busy over a window, by whom.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuUse {
    pub(crate) observed: Option<f64>,
    pub(crate) own: Option<f64>,
    pub(crate) others: Option<f64>,
}

/// CPU seconds consumed so far: by the observed process, this one, and the whole machine.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuClock {
    pub(crate) observed: Option<f64>,
    pub(crate) own: Option<f64>,
    pub(crate) machine: Option<f64>,
}

impl CpuClock {
    pub(crate) fn now(observe: Option<u32>) -> Self {
        Self { observed: observe.and_then(cpu_seconds), own: cpu_seconds_self(), machine: machine_busy_seconds() }
    }

    pub(crate) fn since(&self, earlier: &Self, window: Duration) -> CpuUse {
        let rate = |now: Option<f64>, then: Option<f64>| Some((now? - then?) / window.as_secs_f64());
        let observed = rate(self.observed, earlier.observed);
        let own = rate(self.own, earlier.own);
        let machine = rate(self.machine, earlier.machine);
        let others = machine.map(|m| (m - observed.unwrap_or(0.0) - own.unwrap_or(0.0)).max(0.0));
        CpuUse { observed, own, others }
    }
}

impl Sample {
    pub(crate) fn collect(
        recorders: impl Iterator<Item = Recorder>,
        measured: Duration,
        cpu: CpuUse,
        rss_max_kib: u64,
    ) -> Self {
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

    pub(crate) fn percentile(&self, p: f64) -> Duration {
        let rank = ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len().max(1));
        self.latencies.get(rank - 1).copied().unwrap_or_default()
    }

    pub(crate) fn per_second(&self) -> f64 {
        self.latencies.len() as f64 / self.measured.as_secs_f64()
    }
}

/// One concurrency level: the two floors and the daemon.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) concurrency: usize,
    pub(crate) bare: Sample,
    pub(crate) tokio_echo: Sample,
    pub(crate) token: Sample,
}

impl Row {
    pub(crate) fn ratio(&self, floor: &Sample) -> f64 {
        self.token.percentile(0.5).as_secs_f64() / floor.percentile(0.5).as_secs_f64()
    }
}

/// The measured window of a row: it opens after [`WARMUP`] and lasts the measured time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) start: Instant,
    pub(crate) end: Instant,
}

impl Window {
    pub(crate) fn after_warmup(measure: Duration) -> Self {
        let start = Instant::now() + WARMUP;
        Self { start, end: start + measure }
    }
}

/// One load worker's results: latencies of exchanges started inside the window; it stops at the first error.
#[derive(Debug)]
pub(crate) struct Recorder {
    pub(crate) window: Window,
    pub(crate) latencies: Vec<Duration>,
    pub(crate) errors: u64,
    pub(crate) first_error: Option<String>,
}

impl Recorder {
    pub(crate) fn new(window: Window) -> Self {
        Self { window, latencies: Vec::new(), errors: 0, first_error: None }
    }

    /// The start time of the next exchange, or `None` once the window has closed or an exchange failed.
    pub(crate) fn next(&self) -> Option<Instant> {
        let now = Instant::now();
        (now < self.window.end && self.errors == 0).then_some(now)
    }

    pub(crate) fn record(&mut self, started: Instant, outcome: Result<(), String>) {
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
pub(crate) async fn drive<W: RoundTrip>(workers: Vec<W>, measure: Duration, observe: Option<u32>) -> Sample {
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

/// User plus system CPU time of a whole process (all threads), from `/proc/PID/stat`.
pub(crate) fn cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub(crate) fn cpu_seconds_self() -> Option<f64> {
    cpu_seconds_of(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// Busy CPU time of the whole machine, all cores: everything in `/proc/stat`'s `cpu` line but idle and iowait.
pub(crate) fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks: Vec<u64> =
        stat.lines().next()?.strip_prefix("cpu ")?.split_whitespace().map(|t| t.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    let busy: u64 = ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
    Some(busy as f64 / USER_HZ)
}

pub(crate) fn cpu_seconds_of(stat: &str) -> Option<f64> {
    // The command name may contain spaces and parentheses; fields are counted after its closing parenthesis.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, so 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / USER_HZ)
}

/// A `kB` field of `/proc/PID/status` (`VmRSS`, `VmHWM`).
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}
