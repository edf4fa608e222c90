//! The identity-platform client: Entra ID's v2.0 endpoints through the `oauth2` crate, with Entra's token fields
//! and error shape as typed data, error classification (after Microsoft's AADSTS error reference and the MSAL
//! libraries' rules) and bounded retries.
//!
//! Only this module talks to the identity platform. It never logs a request or response body: bodies carry
//! tokens. Errors keep the platform's `error`, `suberror`, AADSTS numbers and the first line of the description.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use graphbroker_protocol::SignInReason;
use oauth2::basic::{BasicRevocationErrorResponse, BasicTokenIntrospectionResponse, BasicTokenType};
use oauth2::{
    AsyncHttpClient, AuthUrl, AuthorizationCode, ClientId, CsrfToken, DeviceAuthorizationResponse,
    DeviceAuthorizationUrl, DeviceCodeErrorResponseType, EndpointNotSet, EndpointSet, ErrorResponse,
    ExtraDeviceAuthorizationFields, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken, StandardTokenResponse,
    TokenResponse as _, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::config::Profile;
use crate::scopes::ScopeSet;

/// How many times one platform call is tried when it fails transiently (network, 5xx, 429,
/// `temporarily_unavailable`). Four tries ride out a short outage without making a waiting user wait long.
pub const MAX_ATTEMPTS: u32 = 4;
/// First backoff step; doubled per try, with ±50% jitter so that many daemons do not retry in step.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// The longest single wait between tries. A `Retry-After` beyond it ends the retries at once: holding a client
/// longer is worse than telling it when to come back.
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(10);
/// The most one call may spend across its tries before the failure is reported, so that a waiting client hears
/// back well within its own patience.
pub const RETRY_BUDGET: Duration = Duration::from_secs(30);
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

/// Entra's error body (`error`, `error_description`, `error_codes`, `suberror`, `claims`, trace ids), kept typed so classification never parses strings it need not.
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
    /// The description's first line (`AADSTSnnnn: …`), without the trace and correlation lines.
    pub fn summary(&self) -> String {
        let description = self.error_description.as_deref().unwrap_or("");
        let first = description.lines().next().unwrap_or("").trim();
        if first.is_empty() { self.error.clone() } else { format!("{}: {first}", self.error) }
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

/// What went wrong with a platform call, classified by what the daemon must do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The refresh token is dead (expired, revoked, password changed): forget it; a full sign-in is needed.
    AccountDead { detail: String, codes: Vec<u64> },
    /// The user must act for this request (consent, MFA, Conditional Access); the refresh token stays good
    /// for everything else.
    NeedsUser { reason: SignInReason, claims: Option<String>, detail: String, codes: Vec<u64> },
    /// The user declined a device-code sign-in.
    Declined,
    /// The device code expired before the user completed the sign-in.
    Expired,
    /// Worth retrying later: network, 5xx, 429, throttling, an answer that could not be read.
    Transient { retry_after: Option<Duration>, detail: String },
    /// A refusal that retrying will not fix: configuration (client id, tenant, scopes) or policy.
    Refused { detail: String, codes: Vec<u64>, hint: Option<&'static str> },
}

/// AADSTS numbers that mean the refresh token can never work again (Microsoft's error reference: expired,
/// revoked, inactive, reused code, sign-in frequency).
const DEAD_GRANT_CODES: &[u64] = &[70008, 700082, 50173, 70000, 50089, 700084, 54005, 9002313, 70043];
/// AADSTS numbers that mean "ask the user", keeping the account.
const INTERACTION_CODES: &[u64] = &[50076, 50079, 50078, 50058, 50072, 50074];
/// AADSTS numbers for throttling and passing platform faults.
const TRANSIENT_CODES: &[u64] = &[50196, 90055, 50033, 50087, 90006, 90024];

/// Classifies an error body from the token or device-code endpoint.
pub fn classify(error: &EntraError) -> Failure {
    let detail = error.summary();
    let codes = error.error_codes.clone();
    let suberror = error.suberror.as_deref().unwrap_or("");
    let needs_user = |reason| Failure::NeedsUser {
        reason,
        claims: error.claims.clone(),
        detail: detail.clone(),
        codes: codes.clone(),
    };
    if error.has_code(TRANSIENT_CODES) || matches!(error.error.as_str(), "temporarily_unavailable" | "server_error") {
        return Failure::Transient { retry_after: None, detail };
    }
    if error.has_code(&[65001]) || suberror == "consent_required" || error.error == "consent_required" {
        return needs_user(SignInReason::ConsentRequired);
    }
    match error.error.as_str() {
        "invalid_grant" | "interaction_required" | "login_required" => {
            if error.has_code(DEAD_GRANT_CODES) || suberror == "bad_token" {
                Failure::AccountDead { detail, codes }
            } else if error.has_code(INTERACTION_CODES) || error.claims.is_some() || error.error != "invalid_grant" {
                needs_user(SignInReason::InteractionRequired)
            } else {
                // An invalid_grant we cannot place may come from a per-resource policy while the refresh token
                // still works elsewhere (MSAL keeps the token too): ask the user for this request only.
                needs_user(SignInReason::InteractionRequired)
            }
        }
        "invalid_client" | "unauthorized_client" => Failure::Refused {
            detail,
            hint: Some(if error.has_code(&[7000218]) {
                "allow public client flows in the app registration (Authentication → Advanced settings)"
            } else {
                "check client_id in the profile: the app must exist in the tenant and be a public client"
            }),
            codes,
        },
        "invalid_scope" => Failure::Refused { detail, codes, hint: Some("check the scopes asked for") },
        _ if error.has_code(&[90002, 50194, 9002332]) => {
            Failure::Refused { detail, codes, hint: Some("check tenant (or authority) in the profile") }
        }
        _ => Failure::Refused { detail, codes, hint: None },
    }
}

/// Why an HTTP exchange with the platform did not produce a response oauth2 should parse.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the identity platform answered HTTP {status}")]
    Status { status: u16, retry_after: Option<Duration> },
    #[error("could not reach the identity platform: {0}")]
    Network(String),
}

/// The HTTP stack under oauth2: reqwest with no redirects and a timeout, plus two Entra quirks handled at the
/// byte level — 429/5xx become [`HttpError::Status`] with their `Retry-After` (oauth2 would lose the header),
/// and an error body sent with HTTP 200 (seen on `/devicecode`) is given a 400 so oauth2 parses it as an error.
#[derive(Debug, Clone)]
struct Http {
    client: oauth2::reqwest::Client,
}

impl Http {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let request = oauth2::reqwest::Request::try_from(request).map_err(|e| HttpError::Network(e.to_string()))?;
        let response = self.client.execute(request).await.map_err(|e| HttpError::Network(describe_reqwest(&e)))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(oauth2::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        if status.as_u16() == 429 || status.is_server_error() {
            return Err(HttpError::Status { status: status.as_u16(), retry_after });
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(|e| HttpError::Network(describe_reqwest(&e)))?.to_vec();
        let status =
            if status.as_u16() == 200 && body_is_error(&body) { oauth2::http::StatusCode::BAD_REQUEST } else { status };
        let mut out = HttpResponse::new(body);
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// reqwest's messages name the URL, which carries no secret (tokens travel in bodies), and the cause.
fn describe_reqwest(error: &oauth2::reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn body_is_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("error").is_some_and(|e| e.is_string()) && v.get("access_token").is_none())
}

/// `Retry-After` in seconds (decimals seen from Graph are rounded up); HTTP dates are not used by Entra.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let seconds: f64 = value.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs(seconds.ceil() as u64))
}

/// The identity of the signed-in user, from the id token and `client_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub username: String,
    pub home_account_id: String,
    pub tenant_id: String,
}

/// A successful token response, with secrets in secret types.
#[derive(Debug)]
pub struct Tokens {
    pub access_token: SecretString,
    pub expires_in: Duration,
    /// When the platform advises refreshing, if it said.
    pub refresh_in: Option<Duration>,
    /// The rotated refresh token (Entra sends a new one on every grant).
    pub refresh_token: Option<SecretString>,
    /// The scopes granted, as the platform wrote them.
    pub granted: Vec<String>,
    pub identity: Option<Identity>,
}

impl Tokens {
    fn from_response(response: EntraTokenResponse) -> Self {
        let extra = response.extra_fields();
        let identity = identity_from(extra.id_token.as_deref(), extra.client_info.as_deref());
        let refresh_in = extra.refresh_in.as_ref().and_then(loose_seconds);
        Self {
            access_token: SecretString::from(response.access_token().secret().clone()),
            expires_in: response.expires_in().unwrap_or(FALLBACK_EXPIRES_IN),
            refresh_in,
            refresh_token: response.refresh_token().map(|rt| SecretString::from(rt.secret().clone())),
            granted: response.scopes().map(|s| s.iter().map(|s| s.to_string()).collect()).unwrap_or_default(),
            identity,
        }
    }
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

/// Entra's addition to the device authorization response: the sentence to show the user.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct EntraDeviceFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl ExtraDeviceAuthorizationFields for EntraDeviceFields {}

/// A device-code sign-in started at the platform.
#[derive(Debug)]
pub struct DeviceStart {
    details: DeviceAuthorizationResponse<EntraDeviceFields>,
}

impl DeviceStart {
    pub fn verification_uri(&self) -> String {
        self.details.verification_uri().to_string()
    }

    pub fn user_code(&self) -> String {
        self.details.user_code().secret().clone()
    }

    pub fn expires_in(&self) -> Duration {
        self.details.expires_in()
    }

    /// The platform's sentence for the user, or one in its style when it sent none.
    pub fn message(&self) -> String {
        self.details.extra_fields().message.clone().unwrap_or_else(|| {
            format!(
                "To sign in, use a web browser to open the page {} and enter the code {} to authenticate.",
                self.verification_uri(),
                self.user_code()
            )
        })
    }
}

/// The client for Entra's v2.0 endpoints.
#[derive(Debug, Clone)]
pub struct IdentityPlatform {
    http: Http,
}

impl IdentityPlatform {
    /// `timeout` bounds each HTTP exchange (connect + answer).
    pub fn new(timeout: Duration) -> anyhow::Result<Self> {
        let client = oauth2::reqwest::ClientBuilder::new()
            // Following redirects would open the door to SSRF-style surprises; Entra's token endpoints never
            // redirect (oauth2's own advice).
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { http: Http { client } })
    }

    fn client(profile: &Profile) -> Result<EntraClient, Failure> {
        let refused = |what: &str, e: oauth2::url::ParseError| Failure::Refused {
            detail: format!("the {what} endpoint URL is invalid: {e}"),
            codes: vec![],
            hint: Some("check authority in the profile"),
        };
        Ok(oauth2::Client::new(ClientId::new(profile.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(profile.authorize_endpoint()))
            .set_device_authorization_url(
                DeviceAuthorizationUrl::new(profile.device_code_endpoint().to_string())
                    .map_err(|e| refused("device code", e))?,
            )
            .set_token_uri(TokenUrl::new(profile.token_endpoint().to_string()).map_err(|e| refused("token", e))?))
    }

    /// Redeems a refresh token for `scopes`, retrying transient failures.
    pub async fn refresh(
        &self,
        profile: &Profile,
        refresh_token: &SecretString,
        scopes: &ScopeSet,
        claims: Option<&str>,
    ) -> Result<Tokens, Failure> {
        let client = Self::client(profile)?;
        let refresh_token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        with_retries(|| async {
            let mut request = client
                .exchange_refresh_token(&refresh_token)
                .add_scopes(scopes.request_scopes().into_iter().map(Scope::new))
                .add_extra_param("client_info", "1");
            if let Some(claims) = claims {
                request = request.add_extra_param("claims", claims);
            }
            request.request_async(&self.http).await.map(Tokens::from_response).map_err(token_failure)
        })
        .await
    }

    /// Starts a device-code sign-in for `scopes`, retrying transient failures.
    pub async fn start_device(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        claims: Option<&str>,
    ) -> Result<DeviceStart, Failure> {
        let client = Self::client(profile)?;
        with_retries(|| async {
            let mut request =
                client.exchange_device_code().add_scopes(scopes.request_scopes().into_iter().map(Scope::new));
            if let Some(claims) = claims {
                request = request.add_extra_param("claims", claims);
            }
            request.request_async(&self.http).await.map(|details| DeviceStart { details }).map_err(token_failure)
        })
        .await
    }

    /// The authorize URL of a browser sign-in, with PKCE (S256) and a random `state`; returns the URL, the state
    /// to expect on the redirect and the verifier for [`IdentityPlatform::redeem_code`].
    pub fn authorize_url(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        claims: Option<&str>,
        redirect_uri: &str,
    ) -> Result<(String, String, PkceCodeVerifier), Failure> {
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
        Ok((url.to_string(), state.secret().clone(), verifier))
    }

    /// Redeems an authorization code from the loopback redirect (one try: a code is single-use, so a retry
    /// after a lost answer could only fail).
    pub async fn redeem_code(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        code: &str,
        verifier: PkceCodeVerifier,
        redirect_uri: &str,
    ) -> Result<Tokens, Failure> {
        let client = Self::client(profile)?.set_redirect_uri(redirect_url(redirect_uri)?);
        client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(verifier)
            // `scope` on the code grant is Microsoft's extension (RFC 6749 has none there; oauth2 has no setter):
            // Entra wants the one resource the token is for, and refuses an empty one (AADSTS28003).
            .add_extra_param("scope", scopes.request_scopes().join(" "))
            .add_extra_param("client_info", "1")
            .request_async(&self.http)
            .await
            .map(Tokens::from_response)
            .map_err(token_failure)
    }

    /// Polls until the user completes (or declines) the device-code sign-in or the code expires. oauth2 honours
    /// `interval` and `slow_down`, and backs off on transport errors while the code is valid.
    pub async fn poll_device(&self, profile: &Profile, start: &DeviceStart) -> Result<Tokens, Failure> {
        let client = Self::client(profile)?;
        let result = client
            .exchange_device_access_token(&start.details)
            .add_extra_param("client_info", "1")
            .set_max_backoff_interval(Duration::from_secs(10))
            .request_async(&self.http, tokio::time::sleep, Some(start.expires_in()))
            .await;
        match result {
            Ok(response) => Ok(Tokens::from_response(response)),
            Err(RequestTokenError::ServerResponse(error)) => Err(match error.error() {
                DeviceCodeErrorResponseType::AccessDenied => Failure::Declined,
                DeviceCodeErrorResponseType::ExpiredToken => Failure::Expired,
                DeviceCodeErrorResponseType::Basic(oauth2::basic::BasicErrorResponseType::Extension(e))
                    if e == "authorization_declined" =>
                {
                    Failure::Declined
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
                    if as_entra.error == "bad_verification_code" { Failure::Expired } else { classify(&as_entra) }
                }
            }),
            Err(other) => Err(request_failure(other)),
        }
    }
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, Failure> {
    RedirectUrl::new(uri.to_owned()).map_err(|e| Failure::Refused {
        detail: format!("the loopback redirect URI is invalid: {e}"),
        codes: vec![],
        hint: None,
    })
}

/// The AADSTS number at the start of a description, for errors whose body oauth2 parsed into its own type.
fn aadsts_code(description: Option<&str>) -> Vec<u64> {
    description
        .and_then(|d| d.strip_prefix("AADSTS"))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|digits| digits.parse().ok())
        .into_iter()
        .collect()
}

fn token_failure(error: RequestTokenError<HttpError, EntraError>) -> Failure {
    match error {
        RequestTokenError::ServerResponse(e) => classify(&e),
        other => request_failure(other),
    }
}

fn request_failure<E: ErrorResponse>(error: RequestTokenError<HttpError, E>) -> Failure {
    match error {
        RequestTokenError::ServerResponse(e) => Failure::Refused { detail: e.to_string(), codes: vec![], hint: None },
        RequestTokenError::Request(HttpError::Status { status, retry_after }) => {
            Failure::Transient { retry_after, detail: format!("the identity platform answered HTTP {status}") }
        }
        RequestTokenError::Request(HttpError::Network(message)) => {
            Failure::Transient { retry_after: None, detail: message }
        }
        // The body is not quoted: a half-valid answer could hold a token.
        RequestTokenError::Parse(_, body) => Failure::Transient {
            retry_after: None,
            detail: format!(
                "the identity platform's answer could not be read ({} bytes, not a token response)",
                body.len()
            ),
        },
        RequestTokenError::Other(message) => Failure::Transient {
            retry_after: None,
            detail: format!("the identity platform's answer was unusable: {message}"),
        },
    }
}

/// Runs `call` up to [`MAX_ATTEMPTS`] times while it fails transiently, backing off with jitter and honouring
/// `Retry-After` up to [`MAX_RETRY_WAIT`].
async fn with_retries<T, F, Fut>(mut call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(Failure::Transient { retry_after, detail }) if attempt < MAX_ATTEMPTS => {
                let wait = backoff(attempt, retry_after);
                if wait > MAX_RETRY_WAIT || started.elapsed() + wait > RETRY_BUDGET {
                    return Err(Failure::Transient { retry_after, detail });
                }
                tracing::warn!(
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "identity platform failed transiently: {detail}"
                );
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

fn backoff(attempt: u32, retry_after: Option<Duration>) -> Duration {
    let exponential = BACKOFF_BASE * 2u32.pow(attempt.saturating_sub(1).min(8));
    let jitter: f64 = rand::random_range(0.5..1.5);
    let jittered = exponential.mul_f64(jitter);
    match retry_after {
        Some(server) => server.max(jittered.min(server + BACKOFF_BASE)),
        None => jittered,
    }
}

/// The `claims` parameter for a request: a resource's challenge (JSON, or the base64 form of a
/// `WWW-Authenticate` header) merged with the client capability `cp1` when the profile declares CAE.
pub fn request_claims(challenge: Option<&str>, cae: bool) -> Result<Option<String>, String> {
    let mut merged = match challenge.map(str::trim).filter(|c| !c.is_empty()) {
        None => serde_json::Value::Object(Default::default()),
        Some(text) => {
            let json = if text.starts_with(['{', '[']) {
                text.as_bytes().to_vec()
            } else {
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('=')))
                    .map_err(|_| "claims is neither JSON nor base64-encoded JSON".to_owned())?
            };
            let value: serde_json::Value =
                serde_json::from_slice(&json).map_err(|_| "claims is not valid JSON".to_owned())?;
            if !value.is_object() {
                return Err("claims must be a JSON object".into());
            }
            value
        }
    };
    if cae {
        let access_token = merged
            .as_object_mut()
            .map(|o| o.entry("access_token").or_insert_with(|| serde_json::json!({})))
            .and_then(|v| v.as_object_mut());
        if let Some(access_token) = access_token {
            access_token.insert("xms_cc".into(), serde_json::json!({"values": ["cp1"]}));
        }
    }
    Ok(merged.as_object().filter(|o| !o.is_empty()).map(|_| merged.to_string()))
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
            assert!(matches!(classify(&entra("invalid_grant", &[code], None)), Failure::AccountDead { .. }), "{code}");
        }
        assert!(matches!(classify(&entra("invalid_grant", &[1], Some("bad_token"))), Failure::AccountDead { .. }));
        assert!(matches!(classify(&entra("interaction_required", &[70043], None)), Failure::AccountDead { .. }));
    }

    #[test]
    fn consent_and_mfa_keep_the_account() {
        let consent = classify(&entra("invalid_grant", &[65001], Some("consent_required")));
        assert!(matches!(consent, Failure::NeedsUser { reason: SignInReason::ConsentRequired, .. }));
        let mut mfa = entra("interaction_required", &[50076], Some("basic_action"));
        mfa.claims = Some(r#"{"access_token":{"capolids":{"essential":true,"values":["1"]}}}"#.into());
        match classify(&mfa) {
            Failure::NeedsUser { reason: SignInReason::InteractionRequired, claims: Some(c), .. } => {
                assert!(c.contains("capolids"))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn throttling_and_outages_are_transient() {
        assert!(matches!(classify(&entra("temporarily_unavailable", &[], None)), Failure::Transient { .. }));
        assert!(matches!(classify(&entra("invalid_grant", &[50196], None)), Failure::Transient { .. }));
        assert!(matches!(classify(&entra("server_error", &[], None)), Failure::Transient { .. }));
    }

    #[test]
    fn configuration_errors_name_the_setting() {
        match classify(&entra("unauthorized_client", &[700016], None)) {
            Failure::Refused { hint: Some(hint), codes, detail } => {
                assert!(hint.contains("client_id"));
                assert_eq!(codes, [700016]);
                assert!(detail.starts_with("unauthorized_client: AADSTS700016"), "{detail}");
                assert!(!detail.contains("Trace ID"), "{detail}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            classify(&entra("invalid_request", &[90002], None)),
            Failure::Refused { hint: Some(h), .. } if h.contains("tenant")
        ));
    }

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
    fn retry_after_parses_seconds_and_decimals() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("2.128"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[test]
    fn backoff_honours_retry_after_and_grows() {
        assert!(backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert!(backoff(1, None) <= Duration::from_millis(300));
        assert!(backoff(3, None) >= Duration::from_millis(400));
    }

    #[test]
    fn errors_with_http_200_are_recognised() {
        assert!(body_is_error(br#"{"error":"authorization_pending"}"#));
        assert!(!body_is_error(br#"{"device_code":"x","user_code":"y"}"#));
        assert!(!body_is_error(b"not json"));
    }

    #[test]
    fn claims_merge_challenge_and_capability() {
        assert_eq!(request_claims(None, false).unwrap(), None);
        assert_eq!(request_claims(None, true).unwrap().unwrap(), r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#);
        // The base64 form a resource sends in WWW-Authenticate.
        let challenge = base64::engine::general_purpose::STANDARD
            .encode(r#"{"access_token":{"nbf":{"essential":true,"value":"1604106651"}}}"#);
        let merged: serde_json::Value =
            serde_json::from_str(&request_claims(Some(&challenge), true).unwrap().unwrap()).unwrap();
        assert_eq!(merged["access_token"]["nbf"]["value"], "1604106651");
        assert_eq!(merged["access_token"]["xms_cc"]["values"][0], "cp1");
        assert!(request_claims(Some("[1,2]"), false).is_err());
        assert!(request_claims(Some("%%%"), false).is_err());
    }

    #[test]
    fn aadsts_numbers_are_read_from_descriptions() {
        assert_eq!(aadsts_code(Some("AADSTS70020: This device code has expired.")), [70020]);
        assert!(aadsts_code(Some("nothing")).is_empty());
    }
}
