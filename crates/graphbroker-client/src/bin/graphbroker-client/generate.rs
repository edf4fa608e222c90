//! What is generated from the command line's own definition: shell completions (`completions SHELL`) and, for
//! packaging, the man pages and the launchd plist (`graphbroker-client __generate …`), so none of them is written
//! by hand and each follows the subcommands and flags as they change.
//!
//! `__generate` is a command line of its own, read before the main one: clap_complete would put a hidden
//! subcommand of [`Cli`] into the completion scripts.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{CommandFactory, Parser, Subcommand};

use crate::cli::Cli;
use crate::exit_status::{ExitStatus, Failure};
use crate::service::launchd_plist;

/// The program's name as shells and `man` know it.
const BIN_NAME: &str = "graphbroker-client";

/// The word that selects the packaging command line; no subcommand of [`Cli`] starts with underscores.
pub const GENERATE: &str = "__generate";

/// `graphbroker-client __generate …`: run when packaging, not meant for people (so neither completed nor paged).
#[derive(Debug, Parser)]
#[command(
    name = "graphbroker-client __generate",
    about = "Write what packaging installs, generated from the command line's definition"
)]
pub struct GenerateCli {
    #[command(subcommand)]
    pub what: Generated,
}

/// What `__generate` writes.
#[derive(Debug, Clone, Subcommand)]
pub enum Generated {
    /// Writes graphbroker-client.1 and a page per subcommand (graphbroker-client-token.1, …) into DIR
    Man {
        /// The directory to write the pages into (created when missing)
        dir: PathBuf,
    },
    /// Prints the launchd agent's plist for these absolute paths, as `service install` writes it on macOS
    LaunchdPlist {
        #[arg(long, value_name = "PATH")]
        program: PathBuf,
        #[arg(long, value_name = "PATH")]
        socket: PathBuf,
        #[arg(long, value_name = "DIR")]
        log_dir: PathBuf,
    },
}

/// `completions SHELL`: the completion script on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<(), Failure> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), BIN_NAME, &mut script);
    if shell == clap_complete::Shell::Bash {
        script = mend_bash_states(&String::from_utf8_lossy(&script)).into_bytes();
    }
    let script = crate::profile_names::complete_profiles(shell, &String::from_utf8_lossy(&script));
    print(script.as_bytes())
}

/// clap_complete's bash script tracks the subcommand typed so far in a state variable, spelling the program's
/// hyphen `__` where it sets the state and `__subcmd__` where it matches it (clap-rs/clap#6421, open): no arm
/// matches, and nothing after a subcommand completes. The arms are respelled as the state is set; once clap_complete
/// spells both alike this replaces nothing (tests/generated.rs completes a subcommand's flags either way).
fn mend_bash_states(script: &str) -> String {
    script.replace(&BIN_NAME.replace('-', "__subcmd__"), &BIN_NAME.replace('-', "__"))
}

/// `__generate …`: `args` are the words after `__generate`.
pub fn run(args: impl Iterator<Item = std::ffi::OsString>) -> std::process::ExitCode {
    let cli = match GenerateCli::try_parse_from(std::iter::once(GENERATE.into()).chain(args)) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return std::process::ExitCode::from(if error.use_stderr() { ExitStatus::Usage.code() } else { 0 });
        }
    };
    match write(&cli.what) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("graphbroker-client: {}", failure.message);
            std::process::ExitCode::from(failure.status.code())
        }
    }
}

fn write(what: &Generated) -> Result<(), Failure> {
    match what {
        Generated::Man { dir } => man_pages(dir),
        Generated::LaunchdPlist { program, socket, log_dir } => {
            print(launchd_plist::agent_xml(program, socket, log_dir)?.as_bytes())
        }
    }
}

/// The pages of the command and of every visible subcommand, nested ones included (`service install`).
fn man_pages(dir: &Path) -> Result<(), Failure> {
    let failed = |error: std::io::Error| {
        Failure::new(ExitStatus::Other, format!("could not write the man pages into {}: {error}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(failed)?;
    clap_mangen::generate_to(Cli::command(), dir).map_err(failed)
}

fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::new(ExitStatus::Other, format!("could not write to stdout: {error}")))
}
