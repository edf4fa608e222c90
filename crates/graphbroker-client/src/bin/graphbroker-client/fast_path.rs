//! `token` and `header` when the daemon has the token: no argument parser, no async runtime, one blocking
//! request (`graphbroker_client::blocking`). Printing a cached token is most of what this program is run for,
//! and there starting up is the cost: this path keeps it close to the cost of starting any process.
//!
//! It takes only the plainest command lines, parsed here into the same [`Cli`] clap would make; anything else
//! (help, a usage error, another command, an unusual spelling) goes to clap. It answers only a token: every
//! other outcome goes to the full path in [`crate::commands`], which prints prompts, waits, starts the daemon and
//! words the errors. When the daemon did answer (`signin_required`, an error), that answer is handed over rather
//! than asked for again. A socket refused by the checks, or a daemon of another protocol, ends the command with
//! the full path's own error. Otherwise (not running, a broken connection, a garbled answer) the full path starts
//! from the beginning and makes every check again itself.

use std::ffi::OsString;
use std::path::PathBuf;

use graphbroker_client::{Error, TokenQuery};

use crate::cli::{Cli, Command, DEFAULT_TIMEOUT_SECS, HeaderFormat, TokenArgs, TokenFormat};
use crate::commands::{self, HeaderShape};
use crate::exit_status::Failure;

/// What the fast path made of a command.
#[derive(Debug)]
pub enum Outcome {
    /// It printed the answer (or failed to write it).
    Done(Result<(), Failure>),
    /// The daemon refused (an error answer): the full path carries on from it.
    Refused(Error),
    /// Nothing was answered: the full path starts over.
    Unanswered,
}

/// The command line as clap would read it, when it is one this path takes: `[--socket P] [--no-autostart]`,
/// then `token` or `header` with their own flags, each given once (`--scopes` as often as wanted), as `--flag
/// value` or `--flag=value`.
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Option<Cli> {
    let args: Vec<String> = args.into_iter().map(OsString::into_string).collect::<Result<_, _>>().ok()?;
    let mut args = args.into_iter();
    let (mut socket, mut no_autostart, mut command) = (None, false, None::<String>);
    let mut request = TokenArgs {
        scopes: Vec::new(),
        profile: None,
        min_valid: None,
        timeout: DEFAULT_TIMEOUT_SECS,
        no_wait: false,
        claims: None,
    };
    let (mut format, mut powershell, mut seen) = (None::<String>, false, Vec::<String>::new());
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            if command.replace(arg).is_some() {
                return None;
            }
            continue;
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
            None => (flag.to_owned(), None),
        };
        let repeatable = matches!(name.as_str(), "scopes" | "scope");
        if !repeatable && seen.contains(&name) {
            return None;
        }
        seen.push(name.clone());
        let is_switch = matches!(name.as_str(), "no-autostart" | "no-wait" | "powershell");
        if is_switch {
            if inline.is_some() {
                return None;
            }
        } else if !matches!(
            name.as_str(),
            "socket" | "scopes" | "scope" | "profile" | "min-valid" | "timeout" | "claims" | "format"
        ) {
            return None;
        }
        let mut value = || match inline.clone() {
            Some(value) => Some(value),
            // A value that looks like a flag is clap's to judge.
            None => args.next().filter(|value| !value.starts_with('-')),
        };
        match name.as_str() {
            "no-autostart" => no_autostart = true,
            "no-wait" => request.no_wait = true,
            "powershell" => powershell = true,
            "socket" => socket = Some(PathBuf::from(value().filter(|v| !v.is_empty())?)),
            "scopes" | "scope" => request.scopes.push(value()?),
            "profile" => request.profile = Some(value()?),
            "min-valid" => request.min_valid = Some(value()?.parse().ok()?),
            "timeout" => request.timeout = value()?.parse().ok()?,
            "claims" => request.claims = Some(value()?),
            _ => format = Some(value()?),
        }
    }
    let command = match command?.as_str() {
        "token" if !powershell => {
            let format = format.as_deref().map_or(Some(TokenFormat::Raw), TokenFormat::from_name)?;
            Command::Token { request, format }
        }
        "header" if !(powershell && format.is_some()) => {
            let format = match format.as_deref() {
                None | Some("header") => HeaderFormat::Header,
                Some("json") => HeaderFormat::Json,
                Some(_) => return None,
            };
            Command::Header { request, format, powershell }
        }
        _ => return None,
    };
    // As clap does: without the flag, the socket comes from the environment (an empty value counts as unset).
    let socket = socket.or_else(|| {
        std::env::var_os(graphbroker_client::protocol::SOCKET_ENV).filter(|value| !value.is_empty()).map(PathBuf::from)
    });
    Some(crate::kubectl::with_default_scope(Cli { socket, no_autostart, command }))
}

/// Asks the daemon once, blocking, and prints the answer when it is the token.
pub fn answer(cli: &Cli) -> Outcome {
    let socket = match &cli.socket {
        Some(socket) => socket.clone(),
        None => match graphbroker_client::protocol::resolve_socket_path(
            |name| std::env::var_os(name).filter(|value| !value.is_empty()),
            nix::unistd::getuid().as_raw(),
        ) {
            Ok(socket) => socket,
            Err(_) => return Outcome::Unanswered,
        },
    };
    let printed = match &cli.command {
        Command::Token { request, format } => {
            graphbroker_client::blocking::token_showing_prompts(&socket, &first_query(request), commands::at_terminal())
                .map(|token| commands::print_token(&token, *format))
        }
        Command::Header { request, format, powershell } => {
            let shape = if *powershell { HeaderShape::PowerShell } else { HeaderShape::Format(*format) };
            graphbroker_client::blocking::header_showing_prompts(
                &socket,
                &first_query(request),
                commands::at_terminal(),
            )
            .map(|headers| commands::print_headers(&headers, shape))
        }
        _ => return Outcome::Unanswered,
    };
    match printed {
        Ok(printed) => Outcome::Done(printed),
        Err(error @ Error::Daemon { .. }) => Outcome::Refused(error),
        // What the full path would say too, at its first request; asking again would only knock twice on a
        // socket that is not to be trusted, or on a daemon of another version.
        Err(error) if error.is_untrusted_socket() || matches!(error, Error::ProtocolMismatch { .. }) => {
            Outcome::Done(Err(Failure::from(&error)))
        }
        Err(_) => Outcome::Unanswered,
    }
}

/// The first request the full path would send: `wait=0`, so that a prompt reaches the user at once.
fn first_query(request: &TokenArgs) -> TokenQuery {
    TokenQuery { wait: Some(0), ..request.query() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn both(args: &[&str]) -> (Option<String>, Option<String>) {
        let fast = parse(args.iter().map(OsString::from)).map(|cli| format!("{cli:?}"));
        let clap = Cli::try_parse_from(std::iter::once("graphbroker-client").chain(args.iter().copied()))
            .ok()
            .map(|cli| format!("{cli:?}"));
        (fast, clap)
    }

    #[test]
    fn what_it_takes_it_reads_as_clap_does() {
        let taken: [&[&str]; 6] = [
            &["token"],
            &["--no-autostart", "--socket", "/s.sock", "token", "--scopes", "User.Read", "--scopes=Mail.Read"],
            &["token", "--format", "xoauth2", "--profile=work", "--min-valid", "600", "--timeout", "5", "--no-wait"],
            &["header", "--powershell", "--scope", "User.Read", "--claims", "{}"],
            &["header", "--format=json"],
            &["token", "--format", "token"],
        ];
        for args in taken {
            let (fast, clap) = both(args);
            assert!(fast.is_some(), "{args:?} not taken");
            assert_eq!(fast, clap, "{args:?}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_clap() {
        let left: [&[&str]; 9] = [
            &["--help"],
            &["token", "--help"],
            &["--version"],
            &["status"],
            &["token", "--format", "yaml"],
            &["token", "--profile", "a", "--profile", "b"],
            &["header", "--powershell", "--format", "json"],
            &["token", "--scopes", "-x"],
            &["token", "--no-wait=yes"],
        ];
        for args in left {
            assert!(parse(args.iter().map(OsString::from)).is_none(), "{args:?} taken");
        }
    }
}
