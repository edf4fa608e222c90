//! `graphbroker-client token` as a whole process, against `/bin/true` and `--version`, and under hyperfine.

use anyhow::{Context as _, ensure};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{SCOPES, Settings};

/// The whole processes timed: a label and the argv. `/bin/true` (what starting any process costs here) first, then
/// the CLI's `--version` (loading it and its argument parser) and `token` (the real thing); the same two for
/// `GRAPHBROKER_BENCH_CLI_BEFORE` when set.
pub(crate) fn cli_commands(settings: &Settings, socket: &Path) -> Vec<(String, Vec<std::ffi::OsString>)> {
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
pub(crate) fn cli_timings(settings: &Settings, socket: &Path) -> anyhow::Result<Vec<(String, Vec<Duration>)>> {
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
pub(crate) struct HyperfineResult {
    pub(crate) label: String,
    pub(crate) median: f64,
    pub(crate) mean: f64,
    pub(crate) stddev: f64,
}

/// Every one of [`cli_commands`] under one hyperfine run (no shell), when hyperfine is on PATH; `None` when it is
/// not.
pub(crate) fn hyperfine(settings: &Settings, socket: &Path) -> Option<Result<Vec<HyperfineResult>, String>> {
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
