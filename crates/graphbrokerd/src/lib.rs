//! graphbrokerd: a per-user daemon that brokers Microsoft Entra ID delegated tokens to local programs over a
//! Unix-domain socket, as ssh-agent brokers keys.
//!
//! Key design decision: **refresh tokens never leave this process.** Clients get short-lived access tokens (or a
//! ready `Authorization` header) and nothing else; the refresh token lives in memory in a zeroizing secret type
//! and in the OS keychain (through `graphbroker-store`), and only [`idp`] ever sends it anywhere — to the
//! identity platform's token endpoint.
//!
//! The binary is a thin `main`; everything here is a library so that tests can build the router without a
//! socket and start the server with their own shutdown future.
//!
//! - [`config`]: the TOML file, profiles and defaults.
//! - [`scopes`]: scope normalization, the cache key.
//! - [`idp`]: the identity platform behind the `Platform` trait; Entra through the `oauth2` crate; error
//!   classification. [`retry`]: the one retry policy.
//! - [`browser`]: browser sign-in (authorization code + PKCE, loopback redirect).
//! - [`broker`]: cache, single-flight, sign-in on first demand, persistence; the token state machine. Generic
//!   over the platform and the stores, so every lifecycle rule can be tested in-process.
//! - [`metrics`]: `GET /metrics` (Prometheus text): the counters, the platform latency, the tokens' life left.
//! - [`server`]: the HTTP API on the socket and the peer check. [`socket`]: binding the socket safely.
//!   [`waiting`]: a request waiting on the user gives up its connection's serving slot.
//! - [`caller`]: which program is asking. [`policy`]: who may have which token (`[policy]`), and the audit line
//!   of each decision, which [`audit`] writes off the request path.
//! - [`clock`]: the wall and boot clocks (the boot clock counts suspend), injectable; every token validity
//!   decision is taken on both. [`notify`]: desktop notifications of a sign-in's prompt.
//! - [`logging`]: the daemon's log, to stderr or a size-capped file.
//! - [`activation`]: socket activation (systemd, launchd) and readiness notification. [`hardening`]: no core
//!   dumps, no debugger.
//!
//! With the `fuzzing` feature, a hidden `fuzzing` module exposes the parsers of untrusted input to the fuzz
//! targets in `fuzz/`; the normal build does not carry it.

pub mod activation;
pub mod audit;
pub mod broker;
pub mod browser;
pub mod caller;
pub mod clock;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod hardening;
pub mod idp;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod retry;
pub mod scopes;
pub mod server;
pub mod socket;
pub mod tcp_owner;
#[cfg(test)]
pub(crate) mod testing;
pub mod upstream_owner;
pub mod waiting;
