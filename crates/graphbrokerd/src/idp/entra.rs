//! [`EntraPlatform`]: Entra ID's v2.0 endpoints through the `oauth2` crate, with Entra's token fields and error
//! shape as typed data.

use std::time::Duration;

use base64::Engine as _;
use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationResponse, DeviceAuthorizationUrl,
    DeviceCodeErrorResponseType, EndpointNotSet, EndpointSet, ErrorResponse, ExtraDeviceAuthorizationFields,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse as _, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize as _;

use super::bounds;
use super::classify::aadsts_code;
use super::http::{Http, HttpError};
use super::{AuthorizeRequest, BoxFuture, DeviceCode, EntraError, Identity, Platform, PlatformError, Tokens, classify};
use crate::config::Profile;
use crate::metrics::IdpLatency;
use crate::scopes::ScopeSet;

/// Lifetime assumed when a token response omits `expires_in` (it never should): short, so it is refreshed soon.
const FALLBACK_EXPIRES_IN: Duration = Duration::from_secs(300);

/// Entra's additions to the token response, next to the standard fields the `oauth2` crate parses.
#[derive(Clone, Default, Deserialize, Serialize)]
pub struct EntraTokenFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    /// base64url JSON `{"uid": …, "utid": …}`, present when the request carried `client_info=1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_info: Option<String>,
    /// Sent as a number, and as a string by some endpoints; kept loose for that reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_expires_in: Option<serde_json::Value>,
    /// Seconds after which the platform advises refreshing, ahead of expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_in: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub foci: Option<String>,
}

impl std::fmt::Debug for EntraTokenFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntraTokenFields")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("client_info", &self.client_info.is_some())
            .field("ext_expires_in", &self.ext_expires_in)
            .field("refresh_in", &self.refresh_in)
            .finish()
    }
}

impl ExtraTokenFields for EntraTokenFields {}

/// A token response as Entra sends it.
pub type EntraTokenResponse = StandardTokenResponse<EntraTokenFields, BasicTokenType>;

/// Entra's addition to the device authorization response: the sentence to show the user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EntraDeviceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for EntraDeviceFields {}

type DeviceGrant = DeviceAuthorizationResponse<EntraDeviceFields>;

/// A device code's polling handle: the platform's answer, and the `claims` the sign-in was started with, which
/// its token request repeats.
struct PendingDevice {
    details: DeviceGrant,
    claims: Option<String>,
}

type EntraClient = oauth2::Client<
    EntraError,
    EntraTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The client for Entra's v2.0 endpoints.
#[derive(Debug, Clone)]
pub struct EntraPlatform {
    http: Http,
}

impl EntraPlatform {
    /// `timeout` bounds each HTTP exchange (connect + answer).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self { http: Http::new(timeout)? })
    }

    /// Observes the duration of every HTTP exchange into `latency` (`GET /metrics`).
    pub fn with_latency(self, latency: IdpLatency) -> Self {
        Self { http: self.http.observed_by(latency) }
    }

    fn client(profile: &Profile) -> Result<EntraClient, PlatformError> {
        let local = |what: &str, e: oauth2::url::ParseError| PlatformError::Local {
            detail: format!("the {what} endpoint URL cannot be built from the profile's authority: {e}"),
        };
        Ok(oauth2::Client::new(ClientId::new(profile.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(profile.authorize_endpoint()))
            .set_device_authorization_url(
                DeviceAuthorizationUrl::new(profile.device_code_endpoint().to_string())
                    .map_err(|e| local("device code", e))?,
            )
            .set_token_uri(TokenUrl::new(profile.token_endpoint().to_string()).map_err(|e| local("token", e))?))
    }

    async fn refresh_once(
        &self,
        profile: &Profile,
        refresh_token: &SecretString,
        scopes: &ScopeSet,
        claims: Option<&str>,
    ) -> Result<Tokens, PlatformError> {
        let client = Self::client(profile)?;
        let refresh_token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let mut request = client
            .exchange_refresh_token(&refresh_token)
            .add_scopes(scopes.request_scopes().into_iter().map(Scope::new))
            .add_extra_param("client_info", "1");
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        let answer = request.request_async(&self.http).await;
        // oauth2's secret types do not zeroize; this copy of the refresh token is wiped by hand.
        refresh_token.into_secret().zeroize();
        answer.map(tokens_from).map_err(token_failure)
    }

    async fn start_device_once(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        claims: Option<&str>,
    ) -> Result<DeviceCode, PlatformError> {
        let client = Self::client(profile)?;
        let mut request = client.exchange_device_code().add_scopes(scopes.request_scopes().into_iter().map(Scope::new));
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        let details: DeviceGrant = request.request_async(&self.http).await.map_err(token_failure)?;
        let details = bounded_device_grant(details)?;
        Ok(DeviceCode::new(
            details.verification_uri().to_string(),
            details.user_code().secret().clone(),
            details.extra_fields().message.clone(),
            details.expires_in(),
            PendingDevice { details, claims: claims.map(str::to_owned) },
        ))
    }

    async fn poll_device_once(&self, profile: &Profile, code: &DeviceCode) -> Result<Tokens, PlatformError> {
        let Some(PendingDevice { details, claims }) = code.grant::<PendingDevice>() else {
            return Err(PlatformError::Local { detail: "the device code was not issued by this platform".into() });
        };
        let client = Self::client(profile)?;
        let mut request = client.exchange_device_access_token(details).add_extra_param("client_info", "1");
        // The capabilities and challenge of the sign-in go on its token request too (entra-protocol.md §6).
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims.clone());
        }
        // The grant's `expires_in` and `interval` were bounded when it came (`bounded_device_grant`); a `slow_down`
        // adds 5 s to the interval each time, so the sleep is bounded again. The poll ends at the code's life (on
        // the wall clock, oauth2's `time_fn`); the sign-in task bounds it on the boot clock too.
        let life = code.expires_in;
        let result = request
            .set_max_backoff_interval(Duration::from_secs(10))
            .request_async(&self.http, |wait| tokio::time::sleep(bounds::poll_interval(wait, life)), Some(life))
            .await;
        match result {
            Ok(response) => Ok(tokens_from(response)),
            Err(RequestTokenError::ServerResponse(error)) => Err(match error.error() {
                DeviceCodeErrorResponseType::AccessDenied => PlatformError::Declined,
                DeviceCodeErrorResponseType::ExpiredToken => PlatformError::Expired,
                DeviceCodeErrorResponseType::Basic(oauth2::basic::BasicErrorResponseType::Extension(e))
                    if e == "authorization_declined" =>
                {
                    PlatformError::Declined
                }
                other => {
                    let as_entra = EntraError {
                        error: serde_json::to_value(other)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_else(|| "unknown_error".into()),
                        error_description: error.error_description().cloned(),
                        error_codes: aadsts_code(error.error_description().map(String::as_str)),
                        ..EntraError::default()
                    };
                    if as_entra.error == "bad_verification_code" { PlatformError::Expired } else { classify(&as_entra) }
                }
            }),
            Err(other) => Err(request_failure(other)),
        }
    }

    async fn redeem_code_once(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        redirect_uri: &str,
        claims: Option<&str>,
    ) -> Result<Tokens, PlatformError> {
        let client = Self::client(profile)?.set_redirect_uri(redirect_url(redirect_uri)?);
        let mut request = client.exchange_code(code);
        // The sign-in's capabilities and challenge go on its token request too (entra-protocol.md §6).
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        request
            .set_pkce_verifier(verifier)
            // `scope` on the code grant is Microsoft's extension (RFC 6749 has none there; oauth2 has no setter):
            // Entra wants the one resource the token is for, and refuses an empty one (AADSTS28003).
            .add_extra_param("scope", scopes.request_scopes().join(" "))
            .add_extra_param("client_info", "1")
            .request_async(&self.http)
            .await
            .map(tokens_from)
            .map_err(token_failure)
    }
}

impl Platform for EntraPlatform {
    fn refresh<'a>(
        &'a self,
        profile: &'a Profile,
        refresh_token: &'a SecretString,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        Box::pin(self.refresh_once(profile, refresh_token, scopes, claims))
    }

    fn start_device<'a>(
        &'a self,
        profile: &'a Profile,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<DeviceCode, PlatformError>> {
        Box::pin(self.start_device_once(profile, scopes, claims))
    }

    fn poll_device<'a>(
        &'a self,
        profile: &'a Profile,
        code: &'a DeviceCode,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        Box::pin(self.poll_device_once(profile, code))
    }

    fn authorize_url(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        claims: Option<&str>,
        redirect_uri: &str,
    ) -> Result<AuthorizeRequest, PlatformError> {
        let client = Self::client(profile)?.set_redirect_uri(redirect_url(redirect_uri)?);
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes.request_scopes().into_iter().map(Scope::new))
            .set_pkce_challenge(challenge);
        if let Some(hint) = &profile.login_hint {
            request = request.add_extra_param("login_hint", hint.as_str());
        }
        if let Some(prompt) = &profile.prompt {
            request = request.add_extra_param("prompt", prompt.as_str());
        }
        if let Some(claims) = claims {
            request = request.add_extra_param("claims", claims);
        }
        let (url, state) = request.url();
        Ok(AuthorizeRequest { url: url.to_string(), csrf_state: SecretString::from(state.secret().as_str()), verifier })
    }

    fn redeem_code<'a>(
        &'a self,
        profile: &'a Profile,
        scopes: &'a ScopeSet,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        redirect_uri: &'a str,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>> {
        Box::pin(self.redeem_code_once(profile, scopes, code, verifier, redirect_uri, claims))
    }
}

pub(crate) fn tokens_from(response: EntraTokenResponse) -> Tokens {
    let extra = response.extra_fields();
    let identity = identity_from(extra.id_token.as_deref(), extra.client_info.as_deref());
    let expires_in = bounds::token_lifetime(response.expires_in().unwrap_or(FALLBACK_EXPIRES_IN));
    let refresh_in = extra.refresh_in.as_ref().and_then(loose_seconds).map(|said| bounds::refresh_in(said, expires_in));
    Tokens {
        access_token: SecretString::from(response.access_token().secret().as_str()),
        expires_in,
        refresh_in,
        refresh_token: response.refresh_token().map(|rt| SecretString::from(rt.secret().as_str())),
        granted: response.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
        identity,
    }
}

/// The device authorization answer with its `expires_in` and `interval` bounded (`idp::bounds`). oauth2 keeps both
/// fields private, so the answer goes through its own serde shape once.
pub(crate) fn bounded_device_grant(details: DeviceGrant) -> Result<DeviceGrant, PlatformError> {
    let life = bounds::device_code_life(details.expires_in());
    let interval = bounds::poll_interval(details.interval(), life);
    let local =
        |e: serde_json::Error| PlatformError::Local { detail: format!("the device code could not be kept: {e}") };
    let mut fields = serde_json::to_value(&details).map_err(local)?;
    if let Some(fields) = fields.as_object_mut() {
        fields.insert("expires_in".into(), life.as_secs().into());
        fields.insert("interval".into(), interval.as_secs().into());
    }
    serde_json::from_value(fields).map_err(local)
}

/// `ext_expires_in`, bounded (`idp::bounds::ext_lifetime`): read only by the fuzz target, never acted on (a token
/// is served only within `expires_in`).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn ext_lifetime(response: &EntraTokenResponse) -> Option<Duration> {
    let lifetime = bounds::token_lifetime(response.expires_in().unwrap_or(FALLBACK_EXPIRES_IN));
    let said = response.extra_fields().ext_expires_in.as_ref().and_then(loose_seconds)?;
    Some(bounds::ext_lifetime(said, lifetime))
}

fn loose_seconds(value: &serde_json::Value) -> Option<Duration> {
    match value {
        serde_json::Value::Number(n) => n.as_u64().map(Duration::from_secs),
        serde_json::Value::String(s) => s.trim().parse().ok().map(Duration::from_secs),
        _ => None,
    }
}

fn decode_b64url_json(segment: &str) -> Option<serde_json::Value> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(segment.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `home_account_id` is `{uid}.{utid}` from `client_info` (as MSAL keys accounts), else the id token's `sub`;
/// the username is `preferred_username`; the tenant is the id token's `tid`, else `utid`.
fn identity_from(id_token: Option<&str>, client_info: Option<&str>) -> Option<Identity> {
    let claims = id_token.and_then(|t| t.split('.').nth(1)).and_then(decode_b64url_json);
    let info = client_info.and_then(decode_b64url_json);
    if claims.is_none() && info.is_none() {
        return None;
    }
    let claim = |name: &str| claims.as_ref().and_then(|c| c.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    let info_field = |name: &str| info.as_ref().and_then(|c| c.get(name)).and_then(|v| v.as_str()).map(str::to_owned);
    let home_account_id = match (info_field("uid"), info_field("utid")) {
        (Some(uid), Some(utid)) => format!("{uid}.{utid}"),
        _ => claim("sub").or_else(|| claim("oid")).unwrap_or_default(),
    };
    Some(Identity {
        username: claim("preferred_username").or_else(|| claim("upn")).unwrap_or_else(|| "unknown".into()),
        tenant_id: claim("tid").or_else(|| info_field("utid")).unwrap_or_default(),
        home_account_id,
    })
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, PlatformError> {
    RedirectUrl::new(uri.to_owned())
        .map_err(|e| PlatformError::Local { detail: format!("the loopback redirect URI is invalid: {e}") })
}

fn token_failure(error: RequestTokenError<HttpError, EntraError>) -> PlatformError {
    match error {
        RequestTokenError::ServerResponse(e) => classify(&e),
        other => request_failure(other),
    }
}

fn request_failure<E: ErrorResponse>(error: RequestTokenError<HttpError, E>) -> PlatformError {
    match error {
        RequestTokenError::ServerResponse(e) => {
            PlatformError::Refused { detail: e.to_string(), codes: vec![], hint: None }
        }
        RequestTokenError::Request(HttpError::Status { status, retry_after }) => {
            PlatformError::Transient { retry_after, detail: format!("the identity platform answered HTTP {status}") }
        }
        RequestTokenError::Request(HttpError::Network(message)) => {
            PlatformError::Transient { retry_after: None, detail: message }
        }
        RequestTokenError::Request(too_large @ HttpError::TooLarge) => {
            PlatformError::Transient { retry_after: None, detail: too_large.to_string() }
        }
        // The body is not quoted: a half-valid answer could hold a token.
        RequestTokenError::Parse(_, body) => PlatformError::Transient {
            retry_after: None,
            detail: format!(
                "the identity platform's answer could not be read ({} bytes, not a token response)",
                body.len()
            ),
        },
        RequestTokenError::Other(message) => PlatformError::Transient {
            retry_after: None,
            detail: format!("the identity platform's answer was unusable: {message}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_comes_from_client_info_and_id_token() {
        let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let id_token = format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg":"none"})),
            b64(serde_json::json!({"preferred_username":"alice@contoso.com","tid":"t1","sub":"s","oid":"o"}))
        );
        let info = b64(serde_json::json!({"uid":"u1","utid":"t0"}));
        let identity = identity_from(Some(&id_token), Some(&info)).unwrap();
        assert_eq!(identity.username, "alice@contoso.com");
        assert_eq!(identity.home_account_id, "u1.t0");
        assert_eq!(identity.tenant_id, "t1");
        let without_info = identity_from(Some(&id_token), None).unwrap();
        assert_eq!(without_info.home_account_id, "s");
        assert_eq!(identity_from(None, None), None);
    }

    #[test]
    fn a_device_code_from_elsewhere_is_a_local_error() {
        let code = DeviceCode::new("https://x".into(), "ABC".into(), None, Duration::from_secs(60), 7u8);
        assert!(code.message.contains("https://x") && code.message.contains("ABC"), "{}", code.message);
        assert!(code.grant::<DeviceGrant>().is_none());
        assert_eq!(code.grant::<u8>(), Some(&7));
    }
}
