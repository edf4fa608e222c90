//! The body of `GET /v1/status`: each profile's account, store, sign-in and cached tokens (never a token value),
//! and the daemon's request counters.

use serde::{Deserialize, Serialize};

use crate::daemon_log::LogDestination;
use crate::expiry::SignInWarning;
use crate::messages::{AccountInfo, SignInFlow, SignInPrompt, StoreKind};
use crate::time::EpochSeconds;

/// `GET /v1/status`. Never carries a token value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusResponse {
    pub protocol: u32,
    pub daemon: String,
    pub default_profile: String,
    pub profiles: Vec<ProfileStatus>,
    pub counters: Counters,
    /// Where the daemon's log goes. `None` from daemons that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogDestination>,
}

/// One profile in [`StatusResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileStatus {
    pub name: String,
    pub authority: String,
    pub client_id: String,
    pub flow: SignInFlow,
    pub store: StoreKind,
    /// `None` when the store works; otherwise why it does not, and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountInfo>,
    /// The sign-in waiting for the user, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<SignInPrompt>,
    /// Access tokens held in memory, by scope set and expiry (never their values).
    pub tokens: Vec<CachedTokenStatus>,
    /// Why `store` is the store in use, e.g. `auto: no Secret Service answered on the session bus (…)`. `None`
    /// from daemons that predate it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_reason: Option<String>,
    /// When the identity platform last issued or accepted the account's refresh token (a sign-in or a refresh);
    /// absent when unknown (an entry stored by an older daemon) or when nobody is signed in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<EpochSeconds>,
    /// When the refresh token expires unless it is used again before: `refreshed_at` plus the platform's 90-day
    /// inactivity limit. The rolling refresh (`rolling_refresh`) uses it long before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_expires_at: Option<EpochSeconds>,
    /// The user must sign in again, or soon will: why, and what to do. Absent when nothing needs doing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<SignInWarning>,
}

/// A cached access token, described without its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedTokenStatus {
    pub scopes: Vec<String>,
    pub expires_at: EpochSeconds,
}

/// Request counters since the daemon started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Token and header requests answered (and each token the Graph proxy attached).
    pub requests: u64,
    /// Of those, served from the in-memory cache.
    pub cache_hits: u64,
    /// Refresh-token grants sent to the identity platform.
    pub refreshes: u64,
    /// Sign-ins started.
    pub signins: u64,
    /// Error answers, on every route (the sum of `/metrics`' `graphbroker_errors_total`), except `signin_required`.
    pub errors: u64,
    /// `signin_required` answers: a sign-in was needed and the caller did not wait for it (`wait=0`) or not long
    /// enough. Expected while nobody is signed in, so counted apart from `errors`
    /// (`graphbroker_errors_total{code="signin_required"}`). 0 from daemons that predate it.
    #[serde(default)]
    pub signin_required: u64,
}
