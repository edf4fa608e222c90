//! Entra's error body as typed data, and its classification by what the daemon must do about it (after
//! Microsoft's AADSTS error reference and the MSAL libraries' rules).

use std::time::Duration;

use graphbroker_protocol::SignInReason;
use oauth2::ErrorResponse;
use serde::{Deserialize, Serialize};

/// Entra's error body (`error`, `error_description`, `error_codes`, `suberror`, `claims`, trace ids), kept typed so
/// classification never parses strings it need not.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EntraError {
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_codes: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suberror: Option<String>,
    /// A claims challenge to send on the next authorize or device-code request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
}

impl EntraError {
    /// The description's first line (`AADSTSnnnn: …`), without the trace and correlation lines. Never empty: a
    /// body with neither (`{"error":""}`, found by fuzzing) would make an error message that says nothing.
    pub fn summary(&self) -> String {
        let description = self.error_description.as_deref().unwrap_or("");
        let first = description.lines().next().unwrap_or("").trim();
        match (self.error.trim().is_empty(), first.is_empty()) {
            // Seen by the fuzzer: `{"error": ""}` made every message that quotes the platform end in nothing.
            (true, true) => "an error without a code or a description".to_owned(),
            (true, false) => first.to_owned(),
            (false, true) => self.error.clone(),
            (false, false) => format!("{}: {first}", self.error),
        }
    }

    fn has_code(&self, codes: &[u64]) -> bool {
        self.error_codes.iter().any(|c| codes.contains(c))
    }
}

impl std::fmt::Display for EntraError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl ErrorResponse for EntraError {}

/// What went wrong on the way to a token, classified by what the daemon must do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// The refresh token is dead (expired, revoked, password changed): forget it; a full sign-in is needed.
    AccountDead { detail: String, codes: Vec<u64> },
    /// The user must act for this request (consent, MFA, Conditional Access); the refresh token stays good
    /// for everything else.
    NeedsUser { reason: SignInReason, claims: Option<String>, detail: String, codes: Vec<u64> },
    /// The user declined the sign-in.
    Declined,
    /// The sign-in ran out of time before the user completed it (device code expired, browser timeout).
    Expired,
    /// Worth retrying later: network, 5xx, 429, throttling, an answer that could not be read.
    Transient { retry_after: Option<Duration>, detail: String },
    /// The platform refused, and retrying will not fix it: configuration (client id, tenant, scopes) or policy.
    Refused { detail: String, codes: Vec<u64>, hint: Option<&'static str> },
    /// Not the platform's doing: something on this machine failed (a loopback port that cannot be bound, an
    /// endpoint or redirect URL that cannot be built).
    Local { detail: String },
}

/// AADSTS numbers that mean the refresh token can never work again, so the account is forgotten (Microsoft's
/// AADSTS error reference; entra-protocol notes §5). Each is about the grant itself, not about this request:
///
/// - 70008 `ExpiredOrRevokedGrant`: the refresh token expired (lifetime or inactivity).
/// - 700082 `ExpiredOrRevokedGrantInactiveToken`: expired after 90 days without use.
/// - 50173 `FreshTokenNeeded`: the grant was revoked (password change, admin or user revocation).
/// - 70000 `InvalidGrant`: the refresh token is not valid (malformed, revoked, issued to another client).
/// - 700084: a single-page-app refresh token past its fixed 24 h lifetime, which refreshing cannot extend.
/// - 54005: an authorization code that was already redeemed; only seen when redeeming a code, where the grant
///   presented (the code) is spent for good.
///
/// The suberror `bad_token` says the same without a number.
const DEAD_GRANT_CODES: &[u64] = &[70008, 700082, 50173, 70000, 700084, 54005];
/// AADSTS numbers that come with `invalid_grant` or `interaction_required` but leave the refresh token good
/// for requests a policy does not cover: the user must sign in again for *these* scopes, and the account stays
/// (MSAL maps every such `invalid_grant` to "UI required" without dropping the account). Checked before
/// [`DEAD_GRANT_CODES`] and `bad_token`, which Entra may send beside them.
///
/// - 70043 `BadTokenDueToSignInFrequency`: a Conditional Access sign-in frequency policy wants a fresh
///   sign-in for this resource; other resources may have no such policy.
/// - 50089 flow token expired: the authentication flow (not the account) ran out of time; an interactive
///   sign-in starts a new one.
/// - 9002313 invalid request: Conditional Access or a request-level check refused this request; nothing says
///   the refresh token is dead, and an interactive sign-in is how the user resolves it.
const REAUTHENTICATE_CODES: &[u64] = &[70043, 50089, 9002313];
/// AADSTS numbers that mean "ask the user", keeping the account.
const INTERACTION_CODES: &[u64] = &[50076, 50079, 50078, 50058, 50072, 50074];
/// AADSTS numbers for throttling and passing platform faults.
const TRANSIENT_CODES: &[u64] = &[50196, 90055, 50033, 50087, 90006, 90024];

/// Classifies an error body from the token or device-code endpoint.
pub fn classify(error: &EntraError) -> PlatformError {
    let detail = error.summary();
    let codes = error.error_codes.clone();
    let suberror = error.suberror.as_deref().unwrap_or("");
    let needs_user = |reason| PlatformError::NeedsUser {
        reason,
        claims: error.claims.clone(),
        detail: detail.clone(),
        codes: codes.clone(),
    };
    if error.has_code(TRANSIENT_CODES) || matches!(error.error.as_str(), "temporarily_unavailable" | "server_error") {
        return PlatformError::Transient { retry_after: None, detail };
    }
    if error.has_code(&[65001]) || suberror == "consent_required" || error.error == "consent_required" {
        return needs_user(SignInReason::ConsentRequired);
    }
    match error.error.as_str() {
        "invalid_grant" | "interaction_required" | "login_required" => {
            if error.has_code(REAUTHENTICATE_CODES) {
                needs_user(SignInReason::InteractionRequired)
            } else if error.has_code(DEAD_GRANT_CODES) || suberror == "bad_token" {
                PlatformError::AccountDead { detail, codes }
            } else if error.has_code(INTERACTION_CODES) || error.claims.is_some() || error.error != "invalid_grant" {
                needs_user(SignInReason::InteractionRequired)
            } else {
                // An invalid_grant we cannot place may come from a per-resource policy while the refresh token
                // still works elsewhere (MSAL keeps the token too): ask the user for this request only.
                needs_user(SignInReason::InteractionRequired)
            }
        }
        "invalid_client" | "unauthorized_client" => PlatformError::Refused {
            detail,
            hint: Some(if error.has_code(&[7000218]) {
                "allow public client flows in the app registration (Authentication → Advanced settings)"
            } else {
                "check client_id in the profile: the app must exist in the tenant and be a public client"
            }),
            codes,
        },
        "invalid_scope" => PlatformError::Refused { detail, codes, hint: Some("check the scopes asked for") },
        _ if error.has_code(&[90002, 50194, 9002332]) => {
            PlatformError::Refused { detail, codes, hint: Some("check tenant (or authority) in the profile") }
        }
        _ => PlatformError::Refused { detail, codes, hint: None },
    }
}

/// The AADSTS number at the start of a description, for errors whose body oauth2 parsed into its own type.
pub(crate) fn aadsts_code(description: Option<&str>) -> Vec<u64> {
    description
        .and_then(|d| d.strip_prefix("AADSTS"))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entra(error: &str, codes: &[u64], suberror: Option<&str>) -> EntraError {
        EntraError {
            error: error.into(),
            error_description: Some(format!(
                "AADSTS{}: something happened.\r\nTrace ID: x\r\nCorrelation ID: y\r\nTimestamp: z",
                codes.first().unwrap_or(&0)
            )),
            error_codes: codes.to_vec(),
            suberror: suberror.map(str::to_owned),
            ..EntraError::default()
        }
    }

    #[test]
    fn dead_grants_forget_the_account() {
        for code in [700082, 50173, 70008, 54005] {
            let class = classify(&entra("invalid_grant", &[code], None));
            assert!(matches!(class, PlatformError::AccountDead { .. }), "{code}");
        }
        for code in [70000, 700084] {
            let class = classify(&entra("invalid_grant", &[code], Some("bad_token")));
            assert!(matches!(class, PlatformError::AccountDead { .. }), "{code}");
        }
        let bad_token = classify(&entra("invalid_grant", &[1], Some("bad_token")));
        assert!(matches!(bad_token, PlatformError::AccountDead { .. }));
    }

    #[test]
    fn conditional_access_and_flow_codes_keep_the_account_and_ask_the_user() {
        for (error, code) in [
            ("interaction_required", 70043),
            ("invalid_grant", 70043),
            ("invalid_grant", 50089),
            ("invalid_grant", 9002313),
        ] {
            for suberror in [None, Some("bad_token")] {
                let class = classify(&entra(error, &[code], suberror));
                assert!(
                    matches!(class, PlatformError::NeedsUser { reason: SignInReason::InteractionRequired, .. }),
                    "{error} {code} {suberror:?}: {class:?}"
                );
            }
        }
    }

    #[test]
    fn consent_and_mfa_keep_the_account() {
        let consent = classify(&entra("invalid_grant", &[65001], Some("consent_required")));
        assert!(matches!(consent, PlatformError::NeedsUser { reason: SignInReason::ConsentRequired, .. }));
        let mut mfa = entra("interaction_required", &[50076], Some("basic_action"));
        mfa.claims = Some(r#"{"access_token":{"capolids":{"essential":true,"values":["1"]}}}"#.into());
        match classify(&mfa) {
            PlatformError::NeedsUser { reason: SignInReason::InteractionRequired, claims: Some(c), .. } => {
                assert!(c.contains("capolids"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn throttling_and_outages_are_transient() {
        assert!(matches!(classify(&entra("temporarily_unavailable", &[], None)), PlatformError::Transient { .. }));
        assert!(matches!(classify(&entra("invalid_grant", &[50196], None)), PlatformError::Transient { .. }));
        assert!(matches!(classify(&entra("server_error", &[], None)), PlatformError::Transient { .. }));
    }

    #[test]
    fn configuration_errors_name_the_setting() {
        match classify(&entra("unauthorized_client", &[700016], None)) {
            PlatformError::Refused { hint: Some(hint), codes, detail } => {
                assert!(hint.contains("client_id"));
                assert_eq!(codes, [700016]);
                assert!(detail.starts_with("unauthorized_client: AADSTS700016"), "{detail}");
                assert!(!detail.contains("Trace ID"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify(&entra("invalid_request", &[90002], None)),
            PlatformError::Refused { hint: Some(h), .. } if h.contains("tenant")
        ));
    }

    #[test]
    fn an_error_without_code_or_description_still_says_something() {
        let empty: EntraError = serde_json::from_str(r#"{"error": ""}"#).unwrap();
        assert_eq!(empty.summary(), "an error without a code or a description");
        let described: EntraError =
            serde_json::from_str(r#"{"error": "", "error_description": "AADSTS1: x"}"#).unwrap();
        assert_eq!(described.summary(), "AADSTS1: x");
    }

    #[test]
    fn aadsts_numbers_are_read_from_descriptions() {
        assert_eq!(aadsts_code(Some("AADSTS70020: This device code has expired.")), [70020]);
        assert!(aadsts_code(Some("nothing")).is_empty());
    }
}
