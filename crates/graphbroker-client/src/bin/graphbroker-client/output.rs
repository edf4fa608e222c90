//! What the commands print on stdout.

use std::io::Write;

use crate::exit_status::{ExitStatus, Failure};

/// One line on stdout. A closed stdout (e.g. `| head -0`) is an error to report, not a panic.
pub fn print_line(line: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")
        .and_then(|()| stdout.flush())
        .map_err(|error| Failure::new(ExitStatus::Other, format!("could not write to stdout: {error}")))
}
