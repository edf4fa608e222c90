//! `graphbroker-client`: prints Microsoft Entra ID access tokens (or `Authorization` headers) from graphbrokerd,
//! signing in and starting the daemon when needed.
//!
//! stdout carries the token and nothing else; everything meant for a person goes to stderr. Every failure is one
//! stderr line starting `graphbroker-client: ` and a documented exit status (see [`exit_status`]).

mod autostart;
mod cli;
mod commands;
mod config_command;
mod daemon_program;
mod exit_status;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod fast_path;
mod format;
mod generate;
mod git_credential;
mod graph;
mod kubectl;
mod output;
mod policy_command;
mod profile_names;
mod safe_text;
mod service;
mod status_view;
mod ui;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::Cli;
use crate::exit_status::{ExitStatus, Failure};
use crate::ui::Ui;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).is_some_and(|first| first == generate::GENERATE) {
        return generate::run(std::env::args_os().skip(2));
    }
    if std::env::args_os().nth(1).is_some_and(|first| first == profile_names::PROFILES) {
        return profile_names::run();
    }
    // A cached token is answered without clap or an async runtime (see fast_path.rs); everything else, and
    // every answer but the token, takes the full path below.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let (cli, first) = match fast_path::parse(std::env::args_os().skip(1)) {
        Some(cli) => match fast_path::answer(&cli) {
            fast_path::Outcome::Done(printed) => return finish(printed, &Ui::new(false)),
            fast_path::Outcome::Refused(first) => (cli, Some(first)),
            fast_path::Outcome::Unanswered => (cli, None),
        },
        None => match parse_with_clap() {
            Ok(cli) => (cli, None),
            Err(status) => return status,
        },
    };
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let (cli, first) = match parse_with_clap() {
        Ok(cli) => (cli, None::<graphbroker_client::Error>),
        Err(status) => return status,
    };
    let ui = Ui::new(std::io::stderr().is_terminal());
    let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run_until_interrupted(&cli, first, &ui)),
        Err(error) => Err(Failure::new(ExitStatus::Other, format!("could not start the async runtime: {error}"))),
    };
    finish(outcome, &ui)
}

/// The command line through clap, or the status to exit with after clap printed help, a version or an error.
fn parse_with_clap() -> Result<Cli, ExitCode> {
    Cli::try_parse().map(kubectl::with_default_scope).map_err(|error| {
        // --help and --version are "errors" that print to stdout and succeed.
        let status = if error.use_stderr() { ExitStatus::Usage.code() } else { 0 };
        let _ = error.print();
        ExitCode::from(status)
    })
}

fn finish(outcome: Result<(), Failure>, ui: &Ui) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            ui.clear_waiting_line();
            let _ = writeln!(std::io::stderr(), "graphbroker-client: {}", safe_text::for_terminal(&failure.message));
            ExitCode::from(failure.status.code())
        }
    }
}

/// Runs the command; Ctrl-C drops it wherever it is (a sign-in wait included) and ends with status 130. Dropping
/// a wait closes its connection, which leaves the daemon's sign-in running for the next command to pick up.
async fn run_until_interrupted(cli: &Cli, first: Option<graphbroker_client::Error>, ui: &Ui) -> Result<(), Failure> {
    let command = async {
        match first {
            Some(first) => commands::continue_after(cli, first, ui).await,
            None => commands::run(cli, ui).await,
        }
    };
    tokio::select! {
        outcome = command => outcome,
        Ok(()) = tokio::signal::ctrl_c() => Err(Failure::interrupted()),
    }
}
