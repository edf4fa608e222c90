//! Request parameters and response bodies of the v1 routes.
//!
//! Token values appear in exactly two fields here (`TokenResponse::access_token` and
//! `HeaderResponse::authorization`); both types print them redacted in `Debug`.

use std::str::FromStr;

use serde::de::IntoDeserializer;
use serde::{Deserialize, Serialize};

use crate::time::EpochSeconds;

/// `GET /v1/version`. Never changes shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionResponse {
    /// [`crate::PROTOCOL_VERSION`] of the daemon.
    pub protocol: u32,
    /// The daemon's package version.
    pub daemon: String,
}

/// Query parameters of `GET /v1/token` and `GET /v1/header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenQuery {
    /// Scopes separated by spaces or commas; short names mean Microsoft Graph. The profile's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<String>,
    /// The profile; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Seconds the served token must still be valid; the profile's `min_valid` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_valid: Option<u64>,
    /// Seconds to hold the request while a sign-in is needed or under way; 0 or absent answers at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
    /// A claims challenge (JSON, or the base64 form a resource sends in `WWW-Authenticate`); bypasses the cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<String>,
}

/// Query parameters of `POST /v1/signin`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignInQuery {
    /// The profile; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// How to sign in; the profile's `flow` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<SignInFlow>,
}

/// Query parameters of routes that take only a profile (`POST /v1/signout`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileQuery {
    /// The profile; the configured default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// Splits a scope list written with spaces and/or commas, dropping empty pieces.
pub fn split_scopes(list: &str) -> Vec<String> {
    if !list.is_ascii() {
        return list
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
    }
    // The same split a byte at a time (what a daemon does on every token request): the separators are `,` and
    // the ASCII characters `char::is_whitespace` takes, and an ASCII string cuts anywhere on a char boundary.
    let mut scopes = Vec::new();
    let mut start = 0;
    for (at, byte) in list.bytes().enumerate() {
        if matches!(byte, b',' | b' ' | b'\t' | b'\n' | b'\x0b' | b'\x0c' | b'\r') {
            if at > start {
                scopes.push(list[start..at].to_owned());
            }
            start = at + 1;
        }
    }
    if list.len() > start {
        scopes.push(list[start..].to_owned());
    }
    scopes
}

/// The signed-in account a token belongs to. Never secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountInfo {
    /// The user's sign-in name (`preferred_username`); for display only.
    pub username: String,
    /// `{uid}.{utid}` from the platform's `client_info`: stable across renames.
    pub home_account_id: String,
    /// The tenant the tokens are issued in.
    pub tenant_id: String,
}

/// `GET /v1/token`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Always `Bearer`.
    pub token_type: String,
    /// The access token. Treat it as opaque.
    pub access_token: String,
    /// When the token stops being valid.
    pub expires_at: EpochSeconds,
    /// Seconds from now until `expires_at`.
    pub expires_in: u64,
    /// The scopes the token carries, resource-qualified.
    pub scopes: Vec<String>,
    pub profile: String,
    pub account: AccountInfo,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("access_token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("expires_in", &self.expires_in)
            .field("scopes", &self.scopes)
            .field("profile", &self.profile)
            .field("account", &self.account)
            .finish()
    }
}

/// `GET /v1/header`: the headers a Microsoft Graph call needs, ready to send.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderResponse {
    /// `Bearer <access token>`.
    #[serde(rename = "Authorization")]
    pub authorization: String,
    /// `application/json`.
    #[serde(rename = "Content-Type")]
    pub content_type: String,
}

impl std::fmt::Debug for HeaderResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderResponse")
            .field("authorization", &"Bearer [redacted]")
            .field("content_type", &self.content_type)
            .finish()
    }
}

/// How a sign-in is carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInFlow {
    /// Device code: the user opens a page anywhere and types a code.
    Device,
    /// Authorization code + PKCE through the system browser and a loopback redirect.
    Browser,
    /// Browser when a graphical session is present, device code otherwise.
    Auto,
}

impl SignInFlow {
    /// Every flow, in declaration order, as serde's errors list the allowed values.
    pub const ALL: [Self; 3] = [Self::Device, Self::Browser, Self::Auto];

    /// The flow as it is spelled on the wire, in the config file and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Browser => "browser",
            Self::Auto => "auto",
        }
    }
}

impl std::fmt::Display for SignInFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the [`SignInFlow::as_str`] spelling; the error is serde's, naming every allowed value.
impl FromStr for SignInFlow {
    type Err = serde::de::value::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::deserialize(s.into_deserializer())
    }
}

/// Why the daemon needs the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInReason {
    /// The profile has no account yet.
    NoAccount,
    /// The account's session ended (refresh token expired or revoked).
    SessionExpired,
    /// The scopes asked for have not been consented to yet.
    ConsentRequired,
    /// MFA or Conditional Access wants the user for this request.
    InteractionRequired,
}

/// What the user must do to complete a sign-in. `Debug` leaves out a browser URL's `state`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "flow", rename_all = "snake_case")]
pub enum SignInPrompt {
    /// Open `verification_uri` and enter `user_code`.
    Device {
        verification_uri: String,
        user_code: String,
        /// The platform's own sentence for the user.
        message: String,
        /// When the code stops working.
        expires_at: EpochSeconds,
    },
    /// Open `url` in a browser.
    Browser {
        url: String,
        /// When the sign-in stops waiting for the browser.
        expires_at: EpochSeconds,
    },
}

impl std::fmt::Debug for SignInPrompt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Device { verification_uri, user_code, message, expires_at } => f
                .debug_struct("Device")
                .field("verification_uri", verification_uri)
                .field("user_code", user_code)
                .field("message", message)
                .field("expires_at", expires_at)
                .finish(),
            Self::Browser { url, expires_at } => {
                f.debug_struct("Browser").field("url", &crate::redact_url(url)).field("expires_at", expires_at).finish()
            }
        }
    }
}

impl SignInPrompt {
    /// The instruction to show a person on a line of its own: the platform's own sentence for a device code;
    /// for a browser, the URL last, so that it can be copied (or opened by a terminal) whole.
    pub fn instruction(&self) -> String {
        match self {
            Self::Device { message, .. } => message.clone(),
            Self::Browser { url, .. } => format!("To sign in, open this page in a browser: {url}"),
        }
    }

    /// What the user does, in a few words, to go inside a sentence ("…: open … and enter the code …, then …").
    /// Every message that mentions a prompt is written with this.
    pub fn action(&self) -> String {
        match self {
            Self::Device { verification_uri, user_code, .. } => {
                format!("open {verification_uri} and enter the code {user_code}")
            }
            Self::Browser { url, .. } => format!("open {url} in a browser and sign in"),
        }
    }

    /// When the prompt stops working.
    pub fn expires_at(&self) -> EpochSeconds {
        match self {
            Self::Device { expires_at, .. } | Self::Browser { expires_at, .. } => *expires_at,
        }
    }
}

/// `POST /v1/signin`: the sign-in now under way (or the account already signed in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignInResponse {
    pub profile: String,
    pub state: SignInState,
    /// Present while `state` is `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signin: Option<SignInPrompt>,
    /// Present when `state` is `signed_in`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountInfo>,
}

/// Where a sign-in stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInState {
    Pending,
    SignedIn,
}

/// `POST /v1/signout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignoutResponse {
    pub profile: String,
    /// The account that was forgotten, if there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AccountInfo>,
    /// How many cached access tokens were dropped.
    pub tokens_dropped: usize,
}

/// Where a profile keeps its refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The OS keychain (Secret Service, macOS Keychain).
    Keyring,
    /// Process memory only: lost when the daemon stops. An explicit opt-in.
    Memory,
    /// The Linux kernel keyring (the user keyring, possessor-only keys): survives a daemon restart, not a reboot.
    Keyutils,
    /// The default setting: the keychain when one answers, else the kernel keyring (Linux); decided per profile.
    /// In a status it means the choice is not made yet.
    Auto,
}

impl StoreKind {
    /// Every store, in declaration order, as serde's errors list the allowed values.
    pub const ALL: [Self; 4] = [Self::Keyring, Self::Memory, Self::Keyutils, Self::Auto];

    /// The store as it is spelled on the wire and in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Keyring => "keyring",
            Self::Memory => "memory",
            Self::Keyutils => "keyutils",
            Self::Auto => "auto",
        }
    }
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Parses the [`StoreKind::as_str`] spelling; the error is serde's, naming every allowed value.
impl FromStr for StoreKind {
    type Err = serde::de::value::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::deserialize(s.into_deserializer())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::ProfileStatus;

    #[test]
    fn scopes_split_on_spaces_and_commas() {
        assert_eq!(
            split_scopes("User.Read, Mail.Read  Calendars.Read,,"),
            ["User.Read", "Mail.Read", "Calendars.Read"]
        );
        assert!(split_scopes(" , ").is_empty());
        // Byte by byte for ASCII, as `char::is_whitespace` splits: every ASCII separator, and nothing else.
        let by_chars = |list: &str| -> Vec<String> {
            list.split(|c: char| c == ',' || c.is_whitespace()).filter(|s| !s.is_empty()).map(str::to_owned).collect()
        };
        for byte in 0..=127u8 {
            let list = format!("a{}b{}{}", byte as char, byte as char, byte as char);
            assert_eq!(split_scopes(&list), by_chars(&list), "{byte:#x}");
        }
        assert_eq!(split_scopes("a\u{a0}b\u{2003}c,d"), ["a", "b", "c", "d"], "Unicode spaces split too");
    }

    #[test]
    fn debug_never_prints_a_sign_in_state() {
        let prompt = SignInPrompt::Browser {
            url: "https://login.example/authorize?client_id=c&state=the-state-value&redirect_uri=x".into(),
            expires_at: EpochSeconds(1),
        };
        let shown = format!("{prompt:?}");
        assert!(!shown.contains("the-state-value") && shown.contains("client_id=c"), "{shown}");
    }

    #[test]
    fn debug_never_prints_token_values() {
        let token = TokenResponse {
            token_type: "Bearer".into(),
            access_token: "eyJ-secret-value".into(),
            expires_at: EpochSeconds(1_795_000_000),
            expires_in: 3541,
            scopes: vec!["https://graph.microsoft.com/User.Read".into()],
            profile: "work".into(),
            account: AccountInfo {
                username: "adele@contoso.com".into(),
                home_account_id: "a.b".into(),
                tenant_id: "b".into(),
            },
        };
        let header =
            HeaderResponse { authorization: "Bearer eyJ-secret-value".into(), content_type: "application/json".into() };
        assert!(!format!("{token:?}").contains("eyJ-secret-value"));
        assert!(!format!("{header:?}").contains("eyJ-secret-value"));
        assert!(format!("{token:?}").contains("adele@contoso.com"));
    }

    #[test]
    fn header_uses_http_header_names() {
        let header = HeaderResponse { authorization: "Bearer x".into(), content_type: "application/json".into() };
        assert_eq!(
            serde_json::to_string(&header).unwrap(),
            r#"{"Authorization":"Bearer x","Content-Type":"application/json"}"#
        );
    }

    #[test]
    fn prompts_are_tagged_by_flow() {
        let prompt = SignInPrompt::Device {
            verification_uri: "https://microsoft.com/devicelogin".into(),
            user_code: "ABCD1234".into(),
            message: "To sign in, …".into(),
            expires_at: EpochSeconds(1_795_000_000),
        };
        let json = serde_json::to_value(&prompt).unwrap();
        assert_eq!(json["flow"], "device");
        assert_eq!(json["user_code"], "ABCD1234");
        assert_eq!(serde_json::from_value::<SignInPrompt>(json).unwrap(), prompt);
    }

    #[test]
    fn flows_round_trip_with_their_wire_spelling() {
        for flow in SignInFlow::ALL {
            let json = serde_json::to_string(&flow).unwrap();
            assert_eq!(json, format!("\"{}\"", flow.as_str()));
            assert_eq!(flow.to_string(), flow.as_str());
            assert_eq!(flow.as_str().parse::<SignInFlow>().unwrap(), flow);
            assert_eq!(serde_json::from_str::<SignInFlow>(&json).unwrap(), flow);
        }
        let err = "sideways".parse::<SignInFlow>().unwrap_err();
        assert_eq!(err.to_string(), "unknown variant `sideways`, expected one of `device`, `browser`, `auto`");
    }

    #[test]
    fn stores_round_trip_with_their_wire_spelling() {
        for store in StoreKind::ALL {
            let json = serde_json::to_string(&store).unwrap();
            assert_eq!(json, format!("\"{}\"", store.as_str()));
            assert_eq!(store.to_string(), store.as_str());
            assert_eq!(store.as_str().parse::<StoreKind>().unwrap(), store);
            assert_eq!(serde_json::from_str::<StoreKind>(&json).unwrap(), store);
        }
        let err = "file".parse::<StoreKind>().unwrap_err();
        assert_eq!(err.to_string(), "unknown variant `file`, expected one of `keyring`, `memory`, `keyutils`, `auto`");
    }

    #[test]
    fn a_profile_status_without_a_store_reason_still_parses() {
        let older = r#"{"name":"work","authority":"a","client_id":"c","flow":"auto","store":"keyring","tokens":[]}"#;
        let status: ProfileStatus = serde_json::from_str(older).unwrap();
        assert_eq!(status.store_reason, None);
        let shown = serde_json::to_string(&status).unwrap();
        assert!(!shown.contains("store_reason"), "{shown}");
    }

    #[test]
    fn token_query_refuses_unknown_parameters() {
        let err = serde_json::from_str::<TokenQuery>(r#"{"scope":"User.Read"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
