//! What the daemon says about refresh tokens nearing the identity platform's inactivity limit: the warning in
//! `status` ([`SignInWarning`]) and the answer of the rolling refresh, `POST /v1/refresh-idle`
//! ([`RefreshIdleResponse`]).

use serde::{Deserialize, Serialize};

use crate::EpochSeconds;

/// In [`ProfileStatus`]: a sign-in the user must do (or soon will), before anyone is left without a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInWarning {
    pub kind: WarningKind,
    /// One sentence saying what happened and what to do, e.g. `graphbroker-client signin --profile work`.
    pub message: String,
    /// The account concerned (the one whose session ended, for `session_ended`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// When the platform said so (`session_ended`, `refused`) or when the refresh token expires (`expires_soon`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<EpochSeconds>,
    /// The platform's AADSTS codes, when it refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u64>,
}

/// What a [`SignInWarning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The refresh token nears the platform's inactivity limit and no rolling refresh has renewed it.
    ExpiresSoon,
    /// The platform ended the session (inactivity AADSTS700082, revocation 50173, …): a new sign-in is needed.
    SessionEnded,
    /// The platform refused the last refresh until the user acts (MFA, Conditional Access, consent).
    Refused,
    /// A kind this client does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}

/// `POST /v1/refresh-idle`: what the rolling refresh did for each profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshIdleResponse {
    pub profiles: Vec<RefreshIdleProfile>,
}

/// One profile in [`RefreshIdleResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshIdleProfile {
    pub profile: String,
    pub outcome: RefreshIdleOutcome,
    /// What went wrong and what to do, for `signin_needed` and `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// When the refresh token was last used, after this check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<EpochSeconds>,
}

/// What the rolling refresh did for one profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefreshIdleOutcome {
    /// The account was idle past `rolling_refresh`: its refresh token was redeemed and the new one stored.
    Refreshed,
    /// Used recently enough; nothing done.
    NotDue,
    /// `rolling_refresh = 0` for this profile.
    Off,
    /// Nobody is signed in.
    NoAccount,
    /// The platform wants a new sign-in (the session ended, or it wants the user).
    SigninNeeded,
    /// The check could not be done now (the platform or the keychain unavailable); the next one tries again.
    Failed,
    /// An outcome this client does not know (a newer daemon's).
    #[serde(other)]
    Unknown,
}
