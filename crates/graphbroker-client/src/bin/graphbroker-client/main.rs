//! `graphbroker-client`: prints Microsoft Entra ID access tokens (or `Authorization` headers) from graphbrokerd,
//! signing in and starting the daemon when needed.
//!
//! stdout carries the token and nothing else; everything meant for a person goes to stderr. Every failure is one
//! stderr line starting `graphbroker-client: ` and a documented exit status (see [`exit_status`]).

mod autostart;
mod cli;
mod commands;
mod daemon_program;
mod exit_status;
mod graph;
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
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // --help and --version are "errors" that print to stdout and succeed.
            let status = if error.use_stderr() { ExitStatus::Usage.code() } else { 0 };
            let _ = error.print();
            return ExitCode::from(status);
        }
    };
    let ui = Ui::new(std::io::stderr().is_terminal());
    let outcome = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime.block_on(run_until_interrupted(&cli, &ui)),
        Err(error) => Err(Failure::new(ExitStatus::Other, format!("could not start the async runtime: {error}"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            ui.clear_waiting_line();
            let _ = writeln!(std::io::stderr(), "graphbroker-client: {}", failure.message);
            ExitCode::from(failure.status.code())
        }
    }
}

/// Runs the command; Ctrl-C drops it wherever it is (a sign-in wait included) and ends with status 130. Dropping
/// a wait closes its connection, which leaves the daemon's sign-in running for the next command to pick up.
async fn run_until_interrupted(cli: &Cli, ui: &Ui) -> Result<(), Failure> {
    tokio::select! {
        outcome = commands::run(cli, ui) => outcome,
        Ok(()) = tokio::signal::ctrl_c() => Err(Failure::interrupted()),
    }
}
