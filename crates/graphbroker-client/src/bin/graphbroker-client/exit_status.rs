//! The command's exit statuses, and how each failure maps to one with a one-line message saying what to do.
//!
//! | status | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other error |
//! | 2 | usage error (bad flags or arguments) |
//! | 3 | graphbrokerd is not running and could not be started (or `--no-autostart`), or it does not answer |
//! | 4 | a sign-in is required and `--no-wait` (or `--timeout 0`) was given; the prompt is on stderr |
//! | 5 | the sign-in did not complete: declined, expired, another account than the profile's, or `--timeout` ran out (the sign-in goes on) |
//! | 6 | the identity platform refused the request or could not be reached |
//! | 7 | the OS keychain is locked or unavailable |
//! | 8 | bad request: invalid scopes, unknown profile, bad parameter |
//! | 9 | the socket is not safe to use (its directory or its listener is not yours alone), or there is no private place for it |
//! | 10 | `graph`: Microsoft Graph answered 4xx or 5xx (its body is on stdout), or could not be reached |
//! | 130 | interrupted (Ctrl-C); a sign-in under way goes on in graphbrokerd |

use std::time::Duration;

use graphbroker_client::{Error, ErrorCode};

/// The exit statuses listed in `--help`, kept beside the enum so they cannot drift apart.
pub const EXIT_STATUS_HELP: &str = "\
Exit status:
  0    success
  1    any other error
  2    usage error (bad flags or arguments)
  3    graphbrokerd is not running and could not be started (or --no-autostart), or it does not answer
  4    a sign-in is required and --no-wait (or --timeout 0) was given; the prompt is on stderr
  5    the sign-in did not complete: declined, expired, another account than the profile's, or --timeout ran
       out (the sign-in goes on)
  6    the identity platform refused the request or could not be reached
  7    the OS keychain is locked or unavailable
  8    bad request: invalid scopes, unknown profile, bad parameter
  9    the socket is not safe to use (its directory or its listener is not yours alone), or there is no private
       place for it; nothing was sent
  10   graph: Microsoft Graph answered 4xx or 5xx (its body is on stdout), or could not be reached
  130  interrupted (Ctrl-C); a sign-in under way goes on in graphbrokerd";

/// Why the command stopped, as its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Other = 1,
    Usage = 2,
    Unreachable = 3,
    SigninRequired = 4,
    SigninIncomplete = 5,
    IdentityPlatform = 6,
    Keychain = 7,
    BadRequest = 8,
    UnsafeSocket = 9,
    Graph = 10,
    Interrupted = 130,
}

impl ExitStatus {
    /// The status a library error ends the command with.
    pub fn of(error: &Error) -> Self {
        match error {
            Error::Unreachable { .. } | Error::Connection { .. } | Error::Timeout { .. } => Self::Unreachable,
            Error::UnsafeSocketDirectory { .. } | Error::UntrustedListener { .. } | Error::NoSocketPath(_) => {
                Self::UnsafeSocket
            }
            Error::Daemon { detail, .. } => Self::of_code(detail.code),
            _ => Self::Other,
        }
    }

    fn of_code(code: ErrorCode) -> Self {
        match code {
            ErrorCode::SigninRequired => Self::SigninRequired,
            ErrorCode::SigninDeclined
            | ErrorCode::SigninExpired
            | ErrorCode::SigninTimeout
            | ErrorCode::AccountMismatch => Self::SigninIncomplete,
            ErrorCode::IdentityProviderError | ErrorCode::IdentityProviderUnavailable => Self::IdentityPlatform,
            ErrorCode::KeychainUnavailable => Self::Keychain,
            ErrorCode::GraphUnavailable => Self::Graph,
            ErrorCode::DaemonStopping => Self::Unreachable,
            ErrorCode::BadRequest
            | ErrorCode::InvalidScopes
            | ErrorCode::UnknownProfile
            | ErrorCode::RequestTimeout => Self::BadRequest,
            ErrorCode::Forbidden
            | ErrorCode::PolicyDenied
            | ErrorCode::RateLimited
            | ErrorCode::NotFound
            | ErrorCode::MethodNotAllowed
            | ErrorCode::Internal
            | ErrorCode::Unknown => Self::Other,
        }
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A failed command: the status to exit with and the one line to print after `graphbroker-client: `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: ExitStatus,
    pub message: String,
}

impl Failure {
    pub fn new(status: ExitStatus, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }

    pub fn interrupted() -> Self {
        Self::new(
            ExitStatus::Interrupted,
            "interrupted; a sign-in under way goes on in graphbrokerd, run the command again to pick it up",
        )
    }

    /// A failure of a request that waited up to `waited` for a sign-in. The daemon's own sentences are kept,
    /// except where the client knows more: that it stopped waiting, or that the user chose not to wait.
    pub fn after_wait(error: &Error, waited: Duration) -> Self {
        match error.code() {
            // Without a prompt there is nothing the user could have done: keep the daemon's sentence.
            Some(ErrorCode::SigninRequired) if error.signin_prompt().is_none() => Self::from(error),
            Some(ErrorCode::SigninRequired) if waited.is_zero() => Self::new(
                ExitStatus::SigninRequired,
                "sign-in required; complete the sign-in shown above, then run the command again",
            ),
            // `signin_required` after a non-zero wait: the time ran out before a request could be held.
            Some(ErrorCode::SigninRequired | ErrorCode::SigninTimeout) => Self::new(
                ExitStatus::SigninIncomplete,
                format!(
                    "the sign-in did not complete within {}s; it goes on in graphbrokerd, run the command again to \
                     keep waiting",
                    waited.as_secs()
                ),
            ),
            _ => Self::from(error),
        }
    }
}

impl From<&Error> for Failure {
    fn from(error: &Error) -> Self {
        Self::new(ExitStatus::of(error), error.to_string())
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::from(&error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use graphbroker_client::ErrorDetail;

    fn daemon_error(code: ErrorCode) -> Error {
        Error::Daemon { status: code.http_status(), detail: Box::new(ErrorDetail::new(code, "do the thing")) }
    }

    #[test]
    fn daemon_codes_map_to_the_documented_statuses() {
        let expected = [
            (ErrorCode::SigninRequired, 4),
            (ErrorCode::SigninDeclined, 5),
            (ErrorCode::SigninExpired, 5),
            (ErrorCode::SigninTimeout, 5),
            (ErrorCode::AccountMismatch, 5),
            (ErrorCode::IdentityProviderError, 6),
            (ErrorCode::IdentityProviderUnavailable, 6),
            (ErrorCode::KeychainUnavailable, 7),
            (ErrorCode::GraphUnavailable, 10),
            (ErrorCode::BadRequest, 8),
            (ErrorCode::InvalidScopes, 8),
            (ErrorCode::UnknownProfile, 8),
            (ErrorCode::Forbidden, 1),
            (ErrorCode::PolicyDenied, 1),
            (ErrorCode::Internal, 1),
            (ErrorCode::Unknown, 1),
        ];
        for (code, status) in expected {
            assert_eq!(ExitStatus::of(&daemon_error(code)).code(), status, "{code}");
        }
    }

    #[test]
    fn transport_failures_mean_the_daemon_is_unreachable() {
        let missing = Error::Unreachable { path: "/s".into(), source: std::io::ErrorKind::NotFound.into() };
        let slow = Error::Timeout { path: "/s".into(), after: Duration::from_secs(30) };
        assert_eq!(ExitStatus::of(&missing).code(), 3);
        assert_eq!(ExitStatus::of(&slow).code(), 3);
        assert_eq!(ExitStatus::of(&Error::Protocol("x".into())).code(), 1);
        let mismatch = Error::ProtocolMismatch { path: "/s".into(), daemon: Some(2), client: 1 };
        assert_eq!(ExitStatus::of(&mismatch).code(), 1);
    }

    #[test]
    fn a_socket_that_is_not_ours_alone_exits_9() {
        let foreign = Error::UntrustedListener { path: "/s".into(), listener: Some(65534), expected: 1000 };
        let no_place = Error::NoSocketPath(graphbroker_client::protocol::NoSocketPath { tmpdir: None });
        assert_eq!(ExitStatus::of(&foreign).code(), 9);
        assert_eq!(ExitStatus::of(&no_place).code(), 9);
        assert_eq!(Failure::interrupted().status.code(), 130);
    }

    #[test]
    fn running_out_of_time_says_the_sign_in_goes_on() {
        let failure = Failure::after_wait(&daemon_error(ErrorCode::SigninTimeout), Duration::from_secs(900));
        assert_eq!(failure.status, ExitStatus::SigninIncomplete);
        assert_eq!(
            failure.message,
            "the sign-in did not complete within 900s; it goes on in graphbrokerd, run the command again to keep \
             waiting"
        );
    }

    #[test]
    fn signin_required_means_not_waiting_or_out_of_time() {
        let mut detail = ErrorDetail::new(ErrorCode::SigninRequired, "sign in");
        detail.signin = Some(graphbroker_client::SignInPrompt::Browser {
            url: "https://login.example/authorize".into(),
            expires_at: graphbroker_client::protocol::EpochSeconds(1_795_000_000),
        });
        let error = Error::Daemon { status: 401, detail: Box::new(detail) };
        assert_eq!(Failure::after_wait(&error, Duration::ZERO).status, ExitStatus::SigninRequired);
        assert_eq!(Failure::after_wait(&error, Duration::from_secs(1)).status, ExitStatus::SigninIncomplete);
    }

    #[test]
    fn other_failures_keep_the_daemons_sentence() {
        let failure = Failure::after_wait(&daemon_error(ErrorCode::SigninDeclined), Duration::from_secs(900));
        assert_eq!(failure, Failure::new(ExitStatus::SigninIncomplete, "do the thing (signin_declined)"));
    }

    #[test]
    fn the_help_text_lists_every_status() {
        for status in [
            ExitStatus::Other,
            ExitStatus::Usage,
            ExitStatus::Unreachable,
            ExitStatus::SigninRequired,
            ExitStatus::SigninIncomplete,
            ExitStatus::IdentityPlatform,
            ExitStatus::Keychain,
            ExitStatus::BadRequest,
            ExitStatus::UnsafeSocket,
            ExitStatus::Interrupted,
        ] {
            let line = format!("\n  {:<4} ", status.code());
            assert!(EXIT_STATUS_HELP.contains(&line), "{status:?} missing from the help");
        }
    }
}
