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
            (true, true) => "an error without a code or description".to_owned(),
            (_, true) => self.error.clone(),
            (_, false) => format!("{}: {first}", self.error),
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

/// AADSTS numbers that mean the refresh token can never work again (Microsoft's error reference: expired,
/// revoked, inactive, reused code, sign-in frequency).
const DEAD_GRANT_CODES: &[u64] = &[70008, 700082, 50173, 70000, 50089, 700084, 54005, 9002313, 70043];
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
            if error.has_code(DEAD_GRANT_CODES) || suberror == "bad_token" {
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
        let bad_token = classify(&entra("invalid_grant", &[1], Some("bad_token")));
        assert!(matches!(bad_token, PlatformError::AccountDead { .. }));
        let frequency = classify(&entra("interaction_required", &[70043], None));
        assert!(matches!(frequency, PlatformError::AccountDead { .. }));
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
    fn an_error_body_without_code_or_description_still_says_something() {
        let empty: EntraError = serde_json::from_str(r#"{"error": ""}"#).unwrap();
        assert!(!empty.summary().is_empty());
        let PlatformError::Refused { detail, .. } = classify(&empty) else { panic!("not refused") };
        assert!(detail.contains("without a code"), "{detail}");
    }

    #[test]
    fn aadsts_numbers_are_read_from_descriptions() {
        assert_eq!(aadsts_code(Some("AADSTS70020: This device code has expired.")), [70020]);
        assert!(aadsts_code(Some("nothing")).is_empty());
    }
}
