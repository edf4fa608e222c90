//! The `claims` request parameter: a resource's claims challenge merged with the client capability `cp1`.

use base64::Engine as _;

/// Why a claims challenge cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("claims is neither JSON nor base64-encoded JSON")]
    NotEncoded,
    #[error("claims is not valid JSON")]
    NotJson,
    #[error("claims must be a JSON object")]
    NotAnObject,
}

/// A claims challenge as a resource sent it (JSON, or the base64 form of a `WWW-Authenticate` header), decoded
/// and checked to be a JSON object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimsChallenge(serde_json::Map<String, serde_json::Value>);

impl ClaimsChallenge {
    /// Decodes `text`; empty or blank text is no challenge.
    pub fn parse(text: &str) -> Result<Option<Self>, ClaimsError> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let json = if text.starts_with(['{', '[']) {
            text.as_bytes().to_vec()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                .map_err(|_| ClaimsError::NotEncoded)?
        };
        match serde_json::from_slice(&json).map_err(|_| ClaimsError::NotJson)? {
            serde_json::Value::Object(map) => Ok(Some(Self(map))),
            _ => Err(ClaimsError::NotAnObject),
        }
    }
}

/// The `claims` parameter for a platform request: `challenge` merged with the client capability `cp1` when the
/// profile declares CAE (MSAL merges them the same way). `None` when there is nothing to send.
pub fn request_claims(challenge: Option<&ClaimsChallenge>, cae: bool) -> Option<String> {
    let mut merged = challenge.map(|c| c.0.clone()).unwrap_or_default();
    if cae {
        let access_token = merged.entry("access_token").or_insert_with(|| serde_json::json!({}));
        if let Some(access_token) = access_token.as_object_mut() {
            access_token.insert("xms_cc".into(), serde_json::json!({"values": ["cp1"]}));
        }
    }
    (!merged.is_empty()).then(|| serde_json::Value::Object(merged).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_merge_challenge_and_capability() {
        assert_eq!(request_claims(None, false), None);
        assert_eq!(request_claims(None, true).unwrap(), r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#);
        // The base64 form a resource sends in WWW-Authenticate.
        let challenge = base64::engine::general_purpose::STANDARD
            .encode(r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#);
        let parsed = ClaimsChallenge::parse(&challenge).unwrap().unwrap();
        let merged: serde_json::Value = serde_json::from_str(&request_claims(Some(&parsed), true).unwrap()).unwrap();
        assert_eq!(merged["access_token"]["nbf"]["value"], "1604106651");
        assert_eq!(merged["access_token"]["xms_cc"]["values"][0], "cp1");
        assert_eq!(ClaimsChallenge::parse("[1,2]"), Err(ClaimsError::NotAnObject));
        assert_eq!(ClaimsChallenge::parse("%%%"), Err(ClaimsError::NotEncoded));
        assert_eq!(ClaimsChallenge::parse("{nope"), Err(ClaimsError::NotJson));
        assert_eq!(ClaimsChallenge::parse("  "), Ok(None));
    }
}
