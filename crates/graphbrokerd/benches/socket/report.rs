//! The report: every row and its ratio to the floor, the memory, the CLI, and the targets met or missed.

use std::time::Duration;

use crate::measure::{Row, Sample};
use crate::{
    Report, SCOPES, Settings, TARGET_CLI_MEDIAN_MS, TARGET_CLI_SPAWN_RATIO, TARGET_IDLE_RSS_MIB, TARGET_P50_BARE_RATIO,
    TARGET_P50_RATIO, TARGET_REQUESTS_PER_SEC,
};

impl Report {
    pub(crate) fn print(&self, settings: &Settings) {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
        println!();
        println!("graphbrokerd socket benchmark: {cores} cores available, {:?} measured per row", settings.measure);
        println!("daemon: {}", settings.daemon_bin.display());
        match settings.daemon_workers {
            Some(workers) => println!("daemon runtime: TOKIO_WORKER_THREADS={workers} (experiment)"),
            None => println!("daemon runtime: as built (one worker thread; TOKIO_WORKER_THREADS unset)"),
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

    pub(crate) fn print_verdicts(&self) {
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

pub(crate) fn nth(sorted: &[Duration], p: f64) -> Duration {
    let index = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(index).copied().unwrap_or_default()
}

pub(crate) fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub(crate) fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

pub(crate) fn in_cores(used: Option<f64>) -> String {
    used.map(|c| format!("{c:.2}")).unwrap_or_else(|| "?".into())
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}
