//! What can go wrong talking to graphbrokerd, as one typed enum.
//!
//! Error policy: every variant carries what a caller needs to act on it (the socket path, the daemon's stable
//! [`ErrorCode`], the HTTP status), and its `Display` is one lowercase line that says what to do next. No message
//! ever contains a token value: answers that fail to parse are described by their position and category only,
//! never by their content, because the content of a token answer *is* the token.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use graphbroker_protocol::{ErrorCode, ErrorDetail, NoSocketPath, SignInPrompt, SignInReason, UnsafeDirectory};

/// An error from [`crate::Client`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing answers on the socket: the file is missing (`ENOENT`) or nobody listens on it (`ECONNREFUSED`).
    /// Both mean graphbrokerd is not running; [`Error::is_socket_missing`] tells them apart.
    #[error("{}", unreachable_message(path, source))]
    Unreachable {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The socket exists but the connection failed or broke for another reason (permission, reset, …).
    #[error("could not talk to graphbrokerd at {}: {source}; check that the socket belongs to you", path.display())]
    Connection {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The socket's directory is a symlink, another user's, or open to others: the client did not connect.
    #[error("refusing to talk to graphbrokerd at {}: {directory}", socket.display())]
    UnsafeSocketDirectory { socket: PathBuf, directory: UnsafeDirectory },
    /// The program listening on the socket runs as another user (`listener`), or the kernel could not say who it
    /// is (`None`). The connection was dropped before anything was written to it.
    #[error("{}", untrusted_listener_message(path, *listener, *expected))]
    UntrustedListener { path: PathBuf, listener: Option<u32>, expected: u32 },
    /// No socket path was given and there is no private directory to look in (see
    /// [`graphbroker_protocol::resolve_socket_path`]).
    #[error(transparent)]
    NoSocketPath(#[from] NoSocketPath),
    /// The daemon speaks another protocol version (`daemon`), or did not say which (`None`: a graphbrokerd older
    /// than the protocol header, or not graphbrokerd at all).
    #[error("{}", protocol_mismatch_message(path, *daemon, *client))]
    ProtocolMismatch { path: PathBuf, daemon: Option<u32>, client: u32 },
    /// The daemon took longer than the client allows (the request's `wait` plus a margin).
    #[error("graphbrokerd at {} did not answer within {}s; check its log, or restart it", path.display(), after.as_secs())]
    Timeout { path: PathBuf, after: Duration },
    /// The daemon answered with its error envelope. (Boxed: the envelope is large and errors travel in
    /// `Result`s on every path.)
    #[error("{} ({})", one_line(&detail.message), detail.code)]
    Daemon { status: u16, detail: Box<ErrorDetail> },
    /// The daemon answered something this client does not understand (a different protocol version, or not
    /// graphbrokerd at all).
    #[error("could not understand graphbrokerd's answer: {0}; compare versions with `graphbroker-client version`")]
    Protocol(String),
    /// The request could not be written (e.g. a query parameter that cannot be encoded).
    #[error("could not build the request: {0}")]
    Request(String),
}

impl Error {
    /// The daemon's stable error code, when the daemon answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        self.detail().map(|detail| detail.code)
    }

    /// The daemon's error envelope, when it answered with one.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            Self::Daemon { detail, .. } => Some(detail.as_ref()),
            _ => None,
        }
    }

    /// With `signin_required`: the sign-in the user must complete.
    pub fn signin_prompt(&self) -> Option<&SignInPrompt> {
        self.detail().and_then(|detail| detail.signin.as_ref())
    }

    /// With `signin_required`: why the daemon needs the user.
    pub fn signin_reason(&self) -> Option<SignInReason> {
        self.detail().and_then(|detail| detail.reason)
    }

    /// True when graphbrokerd is not running at all (no socket, or nobody listening on it). This is the case in
    /// which starting the daemon helps.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// True when the client refused the socket itself: its directory or its listener is not the user's alone.
    /// Starting a daemon does not help; the user must look at what is there.
    pub fn is_untrusted_socket(&self) -> bool {
        matches!(self, Self::UnsafeSocketDirectory { .. } | Self::UntrustedListener { .. })
    }

    /// True when the socket file does not exist (as opposed to existing with nobody listening).
    pub fn is_socket_missing(&self) -> bool {
        matches!(self, Self::Unreachable { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

fn unreachable_message(path: &std::path::Path, source: &io::Error) -> String {
    let path = path.display();
    match source.kind() {
        io::ErrorKind::NotFound => {
            format!("graphbrokerd is not running (no socket at {path}); start it with `graphbrokerd` or its service")
        }
        _ => format!(
            "graphbrokerd is not running (nothing listens on {path}); start it with `graphbrokerd` or its service"
        ),
    }
}

fn untrusted_listener_message(path: &std::path::Path, listener: Option<u32>, expected: u32) -> String {
    let path = path.display();
    match listener {
        Some(uid) => format!(
            "refusing to talk to {path}: the program listening there runs as uid {uid}, not as you (uid {expected}), \
             so it is not your graphbrokerd; nothing was sent to it; remove the socket and start graphbrokerd again"
        ),
        None => format!(
            "refusing to talk to {path}: the system could not say which user listens there; nothing was sent to it"
        ),
    }
}

fn protocol_mismatch_message(path: &std::path::Path, daemon: Option<u32>, client: u32) -> String {
    let path = path.display();
    match daemon {
        Some(daemon) if daemon > client => format!(
            "graphbrokerd at {path} speaks protocol {daemon} and this client speaks protocol {client}: the client \
             is older; upgrade graphbroker-client (or the program using its library)"
        ),
        Some(daemon) => format!(
            "graphbrokerd at {path} speaks protocol {daemon} and this client speaks protocol {client}: the daemon \
             is older; upgrade graphbrokerd and restart it (`systemctl --user restart graphbroker.service`, or stop \
             it and let the next command start it)"
        ),
        None => format!(
            "the program answering on {path} does not say which protocol it speaks: it is a graphbrokerd older \
             than this client (protocol {client}), or not graphbrokerd at all; upgrade graphbrokerd and restart it"
        ),
    }
}

/// The daemon's message is meant to be one sentence; a stray newline would break the one-line rule of callers
/// that print it.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Describes a body that failed to parse without quoting any of it: serde_json's messages can include the
/// offending string value, which in a token answer would be the token.
pub(crate) fn describe_parse_failure(route: &str, error: &serde_json::Error) -> String {
    let what = match error.classify() {
        serde_json::error::Category::Io => "could not be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "does not have the expected fields",
        serde_json::error::Category::Eof => "ended early",
    };
    format!("the answer to {route} {what} (line {}, column {})", error.line(), error.column())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_socket_and_a_dead_one_are_told_apart() {
        let missing = Error::Unreachable { path: "/run/x.sock".into(), source: io::ErrorKind::NotFound.into() };
        let refused =
            Error::Unreachable { path: "/run/x.sock".into(), source: io::ErrorKind::ConnectionRefused.into() };
        assert!(missing.is_socket_missing());
        assert!(!refused.is_socket_missing());
        assert!(missing.is_unreachable() && refused.is_unreachable());
        assert_eq!(
            missing.to_string(),
            "graphbrokerd is not running (no socket at /run/x.sock); start it with `graphbrokerd` or its service"
        );
        assert!(refused.to_string().contains("nothing listens on /run/x.sock"), "{refused}");
    }

    #[test]
    fn daemon_errors_show_the_message_and_the_code_on_one_line() {
        let error = Error::Daemon {
            status: 404,
            detail: Box::new(ErrorDetail::new(
                ErrorCode::UnknownProfile,
                "no profile named \"x\";\n  add it to the config",
            )),
        };
        assert_eq!(error.to_string(), "no profile named \"x\"; add it to the config (unknown_profile)");
        assert_eq!(error.code(), Some(ErrorCode::UnknownProfile));
    }

    #[test]
    fn parse_failures_never_quote_the_body() {
        let secret = "eyJ-secret-token";
        let body = format!(r#"{{"token_type":"Bearer","access_token":"{secret}","expires_in":"{secret}"}}"#);
        let error = serde_json::from_str::<graphbroker_protocol::TokenResponse>(&body).unwrap_err();
        assert!(error.to_string().contains(secret), "serde_json quotes values, which is why this exists");
        let described = describe_parse_failure("/v1/token", &error);
        assert!(!described.contains(secret), "{described}");
        assert!(described.starts_with("the answer to /v1/token does not have the expected fields"), "{described}");
    }

    #[test]
    fn a_protocol_mismatch_says_which_side_is_older() {
        let mismatch = |daemon| Error::ProtocolMismatch { path: "/s".into(), daemon, client: 2 }.to_string();
        let newer = mismatch(Some(3));
        assert!(newer.starts_with("graphbrokerd at /s speaks protocol 3 and this client speaks protocol 2"), "{newer}");
        assert!(newer.contains("the client is older; upgrade graphbroker-client"), "{newer}");
        let older = mismatch(Some(1));
        assert!(older.contains("the daemon is older; upgrade graphbrokerd and restart it"), "{older}");
        let silent = mismatch(None);
        assert!(silent.contains("does not say which protocol it speaks"), "{silent}");
    }

    #[test]
    fn an_untrusted_listener_is_named_by_its_uid() {
        let error = Error::UntrustedListener { path: "/run/s".into(), listener: Some(65534), expected: 1000 };
        assert!(error.is_untrusted_socket() && !error.is_unreachable());
        assert!(
            error.to_string().starts_with(
                "refusing to talk to /run/s: the program listening there runs as uid 65534, not as you (uid 1000)"
            ),
            "{error}"
        );
    }

    #[test]
    fn every_message_is_one_lowercase_line() {
        let errors = [
            Error::Unreachable { path: "/s".into(), source: io::ErrorKind::ConnectionRefused.into() },
            Error::Connection { path: "/s".into(), source: "permission denied".into() },
            Error::Timeout { path: "/s".into(), after: Duration::from_secs(90) },
            Error::Protocol("HTTP 404 without an error envelope".into()),
            Error::UnsafeSocketDirectory {
                socket: "/d/s".into(),
                directory: UnsafeDirectory {
                    path: "/d".into(),
                    problem: graphbroker_protocol::DirectoryProblem::Mode { mode: 0o755 },
                },
            },
            Error::UntrustedListener { path: "/s".into(), listener: Some(65534), expected: 1000 },
            Error::UntrustedListener { path: "/s".into(), listener: None, expected: 1000 },
            Error::NoSocketPath(NoSocketPath { tmpdir: None }),
            Error::ProtocolMismatch { path: "/s".into(), daemon: Some(2), client: 1 },
            Error::ProtocolMismatch { path: "/s".into(), daemon: None, client: 1 },
            Error::Request("bad".into()),
        ];
        for error in errors {
            let text = error.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.chars().next().unwrap().is_lowercase(), "{text}");
        }
    }
}
