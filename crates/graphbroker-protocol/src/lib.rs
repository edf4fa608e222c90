//! The wire contract between `graphbrokerd` and every client: routes, request and response bodies, the stable
//! error codes, the protocol version and where the socket lives.
//!
//! Key design decision: this crate depends on `serde` alone — no tokio, no axum, no hyper — so that the daemon,
//! the client library and any third-party program can share one definition of the protocol without pulling in
//! an async runtime. Everything that crosses the socket is a type here; nothing crosses as a formatted string.

mod audit;
mod config;
mod daemon_log;
mod drop_token;
mod error;
mod expiry;
mod messages;
mod redact;
mod socket;
mod status;
mod time;

pub use audit::{
    AUDIT_FILE_NAME, AnswerQuery, AuditEntry, AuditOutcome, AuditRoute, CallerInfo, PendingAsk, PolicyChangeResponse,
    PolicyResponse, PolicyRuleInfo, RuleQuery, default_audit_path,
};
pub use config::{ConfigEntry, ConfigOrigin, ConfigResponse, ConfigValue};
pub use daemon_log::{LOG_FILE_NAME, LogDestination, default_log_path, default_state_dir};
pub use drop_token::{DropTokenQuery, DropTokenResponse};
pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use expiry::{RefreshIdleOutcome, RefreshIdleProfile, RefreshIdleResponse, SignInWarning, WarningKind};
pub use messages::{
    AccountInfo, HeaderResponse, ProfileQuery, SignInFlow, SignInPrompt, SignInQuery, SignInReason, SignInResponse,
    SignInState, SignoutResponse, StoreKind, TokenQuery, TokenResponse, VersionResponse, split_scopes,
};
pub use redact::redact_url;
pub use socket::{
    DirectoryProblem, NoSocketPath, SOCKET_DIR_NAME, SOCKET_ENV, SOCKET_FILE_NAME, UnsafeDirectory,
    private_directory_problem, resolve_socket_path,
};
pub use status::{CachedTokenStatus, Counters, ProfileStatus, StatusResponse};
pub use time::EpochSeconds;

/// The version of the socket protocol. It changes only when a v1 route changes incompatibly; `GET /v1/version`
/// reports it and never changes shape, so a client can always tell a user that the daemon is older than it.
pub const PROTOCOL_VERSION: u32 = 1;

/// The response header on every answer of the daemon, carrying [`PROTOCOL_VERSION`] in decimal. A client checks
/// it on each answer, so that a daemon older or newer than the client is named as such instead of surfacing as a
/// body that fails to parse; an answer without it comes from a daemon older than the header, or not from
/// graphbrokerd at all.
pub const PROTOCOL_HEADER: &str = "graphbroker-protocol";

/// The request header by which a client says it shows a sign-in's prompt on a terminal (value `1`), on
/// `/v1/token`, `/v1/header` and `/v1/signin`. Without it nobody is assumed to be looking, and the prompt goes to
/// the desktop as a notification when the user has turned those on. A header rather than a query parameter, so
/// that a daemon older than it ignores it instead of refusing the request.
pub const TERMINAL_HEADER: &str = "graphbroker-terminal";

/// Route paths, so that daemon and clients cannot disagree on a spelling.
pub mod routes {
    /// `GET`: [`crate::VersionResponse`]. Kept first and never changes shape.
    pub const VERSION: &str = "/v1/version";
    /// `GET`: [`crate::TokenResponse`] for [`crate::TokenQuery`]. `DELETE`: drops the cached access token of
    /// [`crate::DropTokenQuery`]'s scopes, answering [`crate::DropTokenResponse`].
    pub const TOKEN: &str = "/v1/token";
    /// `GET`: [`crate::HeaderResponse`] for [`crate::TokenQuery`].
    pub const HEADER: &str = "/v1/header";
    /// `POST`: start or join a sign-in, answering its prompt.
    pub const SIGNIN: &str = "/v1/signin";
    /// `POST`: forget a profile's account.
    pub const SIGNOUT: &str = "/v1/signout";
    /// `GET`: [`crate::StatusResponse`].
    pub const STATUS: &str = "/v1/status";
    /// `GET`: [`crate::ConfigResponse`], the configuration in effect and where each value came from.
    pub const CONFIG: &str = "/v1/config";
    /// `POST`: the rolling refresh: redeem the refresh token of every account idle past its profile's
    /// `rolling_refresh`; answers [`crate::RefreshIdleResponse`]. The service manager's daily timer calls it.
    pub const REFRESH_IDLE: &str = "/v1/refresh-idle";
    /// `GET`: liveness; answers `ok`.
    pub const HEALTHZ: &str = "/healthz";
    /// Any method: `/graph/{version}/{path…}` is forwarded to the profile's Microsoft Graph endpoint with its
    /// `Authorization` header attached (see [`crate::proxy`]).
    pub const GRAPH_PREFIX: &str = "/graph/";
    /// `GET`: the daemon's metrics in the Prometheus text format (counts only; see docs/api.md).
    pub const METRICS: &str = "/metrics";
    /// `GET`: the policy in effect and the asks waiting for an answer.
    pub const POLICY: &str = "/v1/policy";
    /// `POST`: append an allow or deny rule to the config file, and apply it.
    pub const POLICY_RULES: &str = "/v1/policy/rules";
    /// `POST`: answer a pending ask with "allow" (once, or always).
    pub const POLICY_APPROVE: &str = "/v1/policy/approve";
    /// `POST`: answer a pending ask with "deny".
    pub const POLICY_DENY: &str = "/v1/policy/deny";
}

/// The request and answer headers of the Graph proxy (`/graph/{version}/{path…}`).
pub mod proxy {
    /// The scopes of the token to attach, separated by spaces or commas; the profile's scopes when absent.
    pub const SCOPES_HEADER: &str = "x-graphbroker-scopes";
    /// The profile; the default profile when absent.
    pub const PROFILE_HEADER: &str = "x-graphbroker-profile";
    /// Seconds to hold the call while a sign-in it needs goes on (as `wait` on `/v1/token`); 0 when absent.
    pub const WAIT_HEADER: &str = "x-graphbroker-wait";
    /// On an answer that came from Graph (rather than from the daemon itself): `graph`. Lets a program tell
    /// Graph's `{"error":…}` from the daemon's.
    pub const UPSTREAM_HEADER: &str = "graphbroker-upstream";
    /// On a Graph claims challenge the daemon could not retry (the request body was too large to replay):
    /// `renewed`, meaning a token satisfying the challenge is now cached and sending the call again will succeed.
    pub const CLAIMS_HEADER: &str = "graphbroker-claims";
    /// On a JSON answer from Graph: `odata-links`, meaning its `@odata.nextLink` and `@odata.deltaLink` values
    /// that pointed at the profile's Graph endpoint now point back at the proxy (`http://{Host}/graph/…`).
    pub const REWRITTEN_HEADER: &str = "graphbroker-rewritten";
    /// The value of [`REWRITTEN_HEADER`].
    pub const REWRITTEN_ODATA_LINKS: &str = "odata-links";
    /// The API versions Graph serves.
    pub const VERSIONS: [&str; 2] = ["v1.0", "beta"];
}
