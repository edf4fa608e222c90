//! Client of `graphbrokerd`, the per-user daemon that hands out Microsoft Entra ID delegated tokens over a Unix
//! socket.
//!
//! Key design decision: this crate speaks the socket's HTTP/1.1 + JSON protocol using only the types of
//! `graphbroker-protocol` and never depends on the daemon, so a program that wants a token pulls in hyper and
//! serde, not OAuth, keychains or axum. Waiting for a sign-in is the daemon's job (`wait=`); the client only
//! shows the prompt and asks again, so every client — this one, `curl`, a script — sees the same sign-in.
//!
//! ```no_run
//! use std::time::Duration;
//! use graphbroker_client::{Client, TokenQuery};
//!
//! # async fn example() -> Result<(), graphbroker_client::Error> {
//! let client = Client::from_env()?;
//! let query = TokenQuery { scopes: Some("User.Read".into()), ..TokenQuery::default() };
//! let token = client
//!     .token_with_signin(&query, Duration::from_secs(900), |prompt, _reason| {
//!         eprintln!("{}", prompt.instruction());
//!     })
//!     .await?;
//! // Send `token.access_token` as `Authorization: Bearer …`; it stays valid until `token.expires_at`.
//! println!("signed in as {}", token.account.username);
//! # Ok(())
//! # }
//! ```
//!
//! Errors are typed: [`Error::Daemon`] carries the daemon's stable [`ErrorCode`] (branch on
//! [`Error::code`], never on the message), and [`Error::Unreachable`] means no daemon is running.
//!
//! Trust: before a request goes out, the client checks that the socket's directory is the user's alone and that
//! the program listening on it runs as the user ([`Error::UnsafeSocketDirectory`], [`Error::UntrustedListener`]
//! otherwise), and it checks the daemon's protocol version on every answer ([`Error::ProtocolMismatch`]).

#[cfg(any(target_os = "linux", target_os = "android"))]
pub mod blocking;
mod client;
pub mod config_file;
mod connect;
mod error;
mod graph;
mod policy;
mod wait;

pub use client::{Client, DEFAULT_ANSWER_MARGIN};
pub use error::Error;
pub use graph::{GraphBody, GraphRequest, empty_body, graph_path, reader_body};
pub use wait::{MAX_WAIT_PER_REQUEST, TokenAnswer};

/// The wire types, re-exported so that a program needs only this crate.
pub use graphbroker_protocol::{
    self as protocol, AccountInfo, ConfigResponse, EpochSeconds, ErrorCode, ErrorDetail, HeaderResponse,
    PROTOCOL_VERSION, SignInFlow, SignInPrompt, SignInReason, SignInResponse, SignInState, SignoutResponse,
    StatusResponse, TokenQuery, TokenResponse, VersionResponse, split_scopes,
};

/// The README's library example, compiled as a doc test so it cannot go stale.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
