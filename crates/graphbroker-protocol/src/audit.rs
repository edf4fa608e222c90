//! The audit log's line (`$XDG_STATE_HOME/graphbroker/audit.jsonl`, one JSON object a line) and the policy routes'
//! bodies. The daemon writes the lines; `graphbroker-client audit` reads them. Neither ever holds a token or a code.

use serde::{Deserialize, Serialize};

use crate::time::EpochSeconds;

/// One decision on a token request: who asked, for what, and what came of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub time: EpochSeconds,
    /// The profile, once the request named a known one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The signed-in account's username, when a token was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// The resource the scopes are for (`https://graph.microsoft.com`), once they were normalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub route: AuditRoute,
    pub program: CallerInfo,
    pub outcome: AuditOutcome,
    /// With `error` and `policy_denied`: the error code answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What decided: `default` or the rule's line in the config file (`rule:12`), or `approved:ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// A folded line: this many more decisions, each the same as the line before it for this connection (same
    /// program, profile, account, scopes, route and rule, served from the cache), the last at `time`. The first
    /// decision of a connection is always a line of its own; repeats are folded so that a program asking in a
    /// loop neither costs the request path a line each nor pushes other programs' lines out of the capped log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeats: Option<u64>,
}

/// Which route asked: `/v1/token`, `/v1/header`, or the Graph proxy with its method and path template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum AuditRoute {
    Token,
    Header,
    /// `path` is a template: segments that are not plain words (ids, addresses, names) read `{}`.
    Proxy {
        method: String,
        path: String,
    },
    /// A request made inside the daemon, or by a route this version does not name.
    Other,
}

/// The program at the other end of the socket, as the daemon identified it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CallerInfo {
    /// The executable (`/proc/PID/exe`); `None` for an unknown caller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exe: Option<String>,
    /// The first words of its command line (at most two, long or token-like ones left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Its systemd unit, from its cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// Its sandbox's app id (flatpak's, or snap's name), when it runs in one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// `flatpak` or `snap`, with `sandbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox_kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Why the caller is unknown; set exactly when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unknown: Option<String>,
}

impl CallerInfo {
    /// How a person reads it: the sandbox app, else the executable, else `unknown (why)`.
    pub fn describe(&self) -> String {
        match (&self.sandbox, &self.exe, &self.unknown) {
            (Some(app), _, _) => format!("{} app {app}", self.sandbox_kind.as_deref().unwrap_or("sandboxed")),
            (None, Some(exe), _) => exe.clone(),
            (None, None, why) => format!("unknown program ({})", why.as_deref().unwrap_or("not identified")),
        }
    }
}

/// What came of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Served from the cache.
    Cache,
    /// A new access token from the refresh token.
    Refreshed,
    /// Served after a sign-in.
    SignedIn,
    /// Refused by the policy (a rule, the default, or the user's answer).
    PolicyDenied,
    /// Allowed, but failed with `error`.
    Error,
}

impl AuditOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Refreshed => "refreshed",
            Self::SignedIn => "signed_in",
            Self::PolicyDenied => "policy_denied",
            Self::Error => "error",
        }
    }
}

/// `GET /v1/policy`: the policy in effect and the requests waiting for the user's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyResponse {
    /// `allow`, `deny` or `ask`.
    pub default: String,
    pub rules: Vec<PolicyRuleInfo>,
    pub pending: Vec<PendingAsk>,
    /// The file rules are written to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// One `[[policy.rules]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRuleInfo {
    /// `allow` or `deny`.
    pub action: String,
    /// `program`, `unit` or `sandbox`.
    pub matches: String,
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// A request held until the user answers (`default = "ask"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAsk {
    pub id: u64,
    pub program: CallerInfo,
    pub profile: String,
    pub scopes: Vec<String>,
    pub asked_at: EpochSeconds,
}

/// `POST /v1/policy/rules`: a rule to append (query string).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleQuery {
    /// `allow` or `deny`.
    pub action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// Profiles, space-separated; every profile when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profiles: Option<String>,
    /// Scopes, space-separated; every scope when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

/// `POST /v1/policy/approve` and `/v1/policy/deny`: the answer to a pending ask.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerQuery {
    pub id: u64,
    /// With approve: also write a rule, so the program is not asked again.
    #[serde(default)]
    pub always: bool,
}

/// What a policy change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyChangeResponse {
    pub message: String,
    /// The config file's line of a rule written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// The audit log's file name, in [`default_audit_path`]'s directory; rotated copies add `.1`, `.2`.
pub const AUDIT_FILE_NAME: &str = "audit.jsonl";

/// Where the daemon keeps its audit log and `graphbroker-client audit` reads it: [`AUDIT_FILE_NAME`] in
/// [`crate::default_state_dir`]. `None` without a home.
pub fn default_audit_path() -> Option<std::path::PathBuf> {
    Some(crate::default_state_dir()?.join(AUDIT_FILE_NAME))
}
