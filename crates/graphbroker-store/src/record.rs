//! What a profile keeps, and the versioned JSON form it takes inside a keychain entry.

use graphbroker_protocol::EpochSeconds;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::StoreError;

/// The account record kept beside the refresh token. Not secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// The sign-in name, e.g. `adele@contoso.com`.
    pub username: String,
    /// The identity platform's account id, `<object id>.<tenant id>` (from `client_info`).
    pub home_account_id: String,
    /// The tenant the account signed in to.
    pub tenant_id: String,
    /// The authority the refresh token was issued by; a token is only redeemed there.
    pub authority: String,
    /// The application the refresh token was issued to; a token is only redeemed by it.
    pub client_id: String,
    /// The scopes the user has consented to so far, as the identity platform reported them.
    pub granted_scopes: Vec<String>,
    /// When the identity platform last issued or accepted this refresh token (a sign-in or a refresh). Refresh
    /// tokens expire after a period of inactivity (90 days by default), counted from this moment; `None` in
    /// entries written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshed_at: Option<EpochSeconds>,
    /// Set when the identity platform refused this refresh token for good (the session ended: inactivity,
    /// revocation, a password change). The entry is kept so the account and the reason survive a restart and are
    /// shown by `status`; the token in it is never redeemed again, and the next sign-in replaces the entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ended: Option<Box<SessionEnded>>,
}

/// How and when the identity platform ended an account's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnded {
    pub at: EpochSeconds,
    /// The platform's AADSTS codes, e.g. `[700082]` (expired by inactivity) or `[50173]` (revoked).
    #[serde(default)]
    pub error_codes: Vec<u64>,
}

/// What one profile keeps: the refresh token (secret) and its account.
///
/// `Debug` shows the account and redacts the token.
#[derive(Debug, Clone)]
pub struct StoredAccount {
    pub refresh_token: SecretString,
    pub account: AccountRecord,
}

/// The version of the entry format written by [`encode`]. Bumped only when an older reader would misread an entry.
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize)]
struct EntryOut<'a> {
    v: u32,
    refresh_token: &'a str,
    account: &'a AccountRecord,
}

/// Read in two steps so that an entry of another version is reported as such, rather than as a missing field.
#[derive(Deserialize)]
struct EntryVersion {
    v: u32,
}

/// Unknown fields are ignored, so a later version can add optional fields without a version bump.
#[derive(Deserialize)]
struct EntryIn {
    #[serde(rename = "v")]
    _v: u32,
    refresh_token: String,
    account: AccountRecord,
}

/// The entry's secret: `{"v":1,"refresh_token":"…","account":{…}}`, zeroized when dropped.
pub(crate) fn encode(stored: &StoredAccount) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let token = stored.refresh_token.expose_secret();
    let account_len = serde_json::to_vec(&stored.account).map_err(encode_error)?.len();
    // Sized up front so the buffer never grows: a reallocation would leave a copy of the token in freed memory
    // that zeroizing the final buffer cannot reach. JSON escaping makes a character at most 6 bytes (`\u00XX`).
    let capacity = 64 + account_len + 6 * token.len();
    let mut out = Zeroizing::new(Vec::with_capacity(capacity));
    let entry = EntryOut { v: FORMAT_VERSION, refresh_token: token, account: &stored.account };
    serde_json::to_writer(&mut *out, &entry).map_err(encode_error)?;
    Ok(out)
}

/// Parses an entry's secret. Errors never quote the input: serde_json's messages can contain a value from it.
pub(crate) fn decode(profile: &str, secret: &[u8]) -> Result<StoredAccount, StoreError> {
    let corrupt = |message: String| StoreError::Corrupt { profile: profile.to_owned(), message };
    let version: EntryVersion = serde_json::from_slice(secret).map_err(|e| corrupt(describe_json_error(&e)))?;
    if version.v != FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not supported (this build reads version {FORMAT_VERSION}; \
             was it written by a newer graphbroker?)",
            version.v
        )));
    }
    let entry: EntryIn = serde_json::from_slice(secret).map_err(|e| corrupt(describe_json_error(&e)))?;
    let token = Zeroizing::new(entry.refresh_token);
    // An entry marked `session_ended` keeps the account and why it ended, not the dead refresh token.
    if token.is_empty() && entry.account.session_ended.is_none() {
        return Err(corrupt("the refresh token is empty".to_owned()));
    }
    // A copy into a fresh allocation of exactly the right size; the parsed String is zeroized when `token` drops.
    Ok(StoredAccount { refresh_token: SecretString::from(token.as_str()), account: entry.account })
}

/// Where and what kind of error, without the message text (which may quote the secret).
fn describe_json_error(err: &serde_json::Error) -> String {
    let kind = match err.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "not the expected JSON shape",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{kind} (at line {} column {})", err.line(), err.column())
}

fn encode_error(err: serde_json::Error) -> StoreError {
    // Serializing strings into a Vec cannot fail; this is here so that a future field that can is not an unwrap.
    StoreError::Failed { message: format!("could not serialize the keychain entry: {}", describe_json_error(&err)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0.AAAA-very-secret-refresh-token-\u{e9}\"quoted\"-\n";

    fn account() -> AccountRecord {
        AccountRecord {
            username: "adele@contoso.com".into(),
            home_account_id: "oid.tid".into(),
            tenant_id: "tid".into(),
            authority: "https://login.microsoftonline.com/common".into(),
            client_id: "14d82eec-204b-4c2f-b7e8-296a70dab67e".into(),
            granted_scopes: vec!["https://graph.microsoft.com/User.Read".into(), "offline_access".into()],
            refreshed_at: Some(EpochSeconds(1_795_000_000)),
            session_ended: None,
        }
    }

    fn stored() -> StoredAccount {
        StoredAccount { refresh_token: SecretString::from(TOKEN), account: account() }
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&stored()).unwrap();
        let back = decode("p", &bytes).unwrap();
        assert_eq!(back.refresh_token.expose_secret(), TOKEN);
        assert_eq!(back.account, account());
    }

    #[test]
    fn encoded_shape_is_versioned() {
        let bytes = encode(&stored()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["refresh_token"], TOKEN);
        assert_eq!(value["account"]["username"], "adele@contoso.com");
        assert_eq!(value["account"]["granted_scopes"][1], "offline_access");
    }

    #[test]
    fn encode_never_reallocates() {
        let long = StoredAccount { refresh_token: SecretString::from("\u{1}".repeat(5000)), account: account() };
        let bytes = encode(&long).unwrap();
        assert!(bytes.len() <= bytes.capacity());
        let plain = encode(&stored()).unwrap();
        assert!(plain.len() <= plain.capacity());
        assert_eq!(decode("p", &bytes).unwrap().refresh_token.expose_secret(), "\u{1}".repeat(5000));
    }

    #[test]
    fn debug_redacts_the_token() {
        let printed = format!("{:?} {:#?}", stored(), stored());
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("adele@contoso.com"));
    }

    #[test]
    fn corrupt_entries_never_quote_the_secret() {
        let cases: &[&[u8]] = &[
            b"not json very-secret",
            br#"{"v":1,"refresh_token":"very-secret","account":"very-secret-2"}"#,
            br#"{"v":1,"refresh_token":"very-secret"}"#,
            br#"{"v":"very-secret"}"#,
            br#"{"v":1,"refresh_token":"very-secret","account":{},"extra":"very-secret"}"#,
            br#"{"v":1,"refresh_token":"","account":{"username":"u","home_account_id":"h","tenant_id":"t","authority":"a","client_id":"c","granted_scopes":[]}}"#,
            b"\xff\xfe",
        ];
        for case in cases {
            let err = decode("work", case).unwrap_err();
            assert!(matches!(err, StoreError::Corrupt { ref profile, .. } if profile == "work"), "{err:?}");
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains("very-secret"), "{shown}");
            assert!(shown.contains("work"), "{shown}");
        }
    }

    #[test]
    fn entries_without_the_refresh_time_still_read() {
        let old = br#"{"v":1,"refresh_token":"rt","account":{"username":"u","home_account_id":"h","tenant_id":"t","authority":"a","client_id":"c","granted_scopes":[]}}"#;
        let back = decode("p", old).unwrap();
        assert_eq!(back.account.refreshed_at, None);
        assert_eq!(back.account.session_ended, None);
    }

    #[test]
    fn refresh_time_and_ended_session_round_trip() {
        let mut ended = stored();
        ended.account.session_ended =
            Some(Box::new(SessionEnded { at: EpochSeconds(1_796_000_000), error_codes: vec![700082] }));
        let bytes = encode(&ended).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["account"]["refreshed_at"], 1_795_000_000);
        assert_eq!(value["account"]["session_ended"]["error_codes"][0], 700082);
        assert_eq!(decode("p", &bytes).unwrap().account, ended.account);
    }

    #[test]
    fn only_an_ended_session_may_keep_no_refresh_token() {
        let mut ended = stored();
        ended.refresh_token = SecretString::from(String::new());
        let bytes = encode(&ended).unwrap();
        assert!(matches!(decode("p", &bytes), Err(StoreError::Corrupt { .. })), "an empty token of a live account");
        ended.account.session_ended = Some(Box::new(SessionEnded { at: EpochSeconds(1), error_codes: vec![50173] }));
        let back = decode("p", &encode(&ended).unwrap()).unwrap();
        assert_eq!((back.refresh_token.expose_secret(), back.account), ("", ended.account));
    }

    #[test]
    fn newer_format_version_is_named() {
        let err = decode("p", br#"{"v":2,"anything":true}"#).unwrap_err();
        assert!(err.to_string().contains("format version 2"), "{err}");
    }
}
