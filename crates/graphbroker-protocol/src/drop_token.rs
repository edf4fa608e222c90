//! `DELETE /v1/token`: drops the cached access token of one scope set, so that the next request gets a new one
//! (git's `erase`: the server refused the token). The refresh token and the account stay.

use serde::{Deserialize, Serialize};

/// Query parameters of `DELETE /v1/token`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DropTokenQuery {
    /// The profile; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// The scopes of the token to drop, as `GET /v1/token` takes them; the profile's scopes when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
}

/// The answer of `DELETE /v1/token`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropTokenResponse {
    pub profile: String,
    /// The scope set as normalized (the cache's key), as `GET /v1/token` answers it.
    pub scopes: Vec<String>,
    /// Whether a cached access token was there to drop (false: none was cached, which is no error).
    pub dropped: bool,
}
