//! The identity platform, behind one seam: [`Platform`] is what the broker asks of it (refresh, device code,
//! authorization code), [`EntraPlatform`] is Entra ID's v2.0 endpoints through the `oauth2` crate, and tests put
//! a scripted platform in its place.
//!
//! A [`Platform`] call is one exchange (device-code polling: one poll loop): retries are the caller's, through
//! [`crate::retry`]. Only [`EntraPlatform`] talks to the network. It never logs a request or response body:
//! bodies carry tokens. Errors keep the platform's `error`, `suberror`, AADSTS numbers and the first line of the
//! description, classified into [`PlatformError`] by [`classify`].

pub mod bounds;
mod claims;
mod classify;
mod entra;
mod http;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use claims::{ClaimsChallenge, ClaimsError, request_claims};
pub use classify::{EntraError, PlatformError, classify};
pub use entra::{EntraDeviceFields, EntraPlatform, EntraTokenFields, EntraTokenResponse};
pub use http::HttpError;
pub(crate) use http::describe_reqwest;
pub use oauth2::{AuthorizationCode, PkceCodeVerifier};
use secrecy::SecretString;
/// The answer parsers, for the fuzz targets ([`crate::fuzzing`]).
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use {
    entra::{bounded_device_grant, ext_lifetime, tokens_from},
    http::{body_is_error, parse_retry_after},
};

use crate::config::Profile;
use crate::scopes::ScopeSet;

/// A boxed future, so that [`Platform`] can be a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the broker asks of the identity platform. Each method is one exchange; see the module docs.
pub trait Platform: Send + Sync + fmt::Debug {
    /// Redeems `refresh_token` for an access token for `scopes` (plus the daemon's OIDC scopes).
    fn refresh<'a>(
        &'a self,
        profile: &'a Profile,
        refresh_token: &'a SecretString,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>>;

    /// Starts a device-code sign-in for `scopes`.
    fn start_device<'a>(
        &'a self,
        profile: &'a Profile,
        scopes: &'a ScopeSet,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<DeviceCode, PlatformError>>;

    /// Polls until the user completes (or declines) the device-code sign-in or the code expires, honouring
    /// `interval` and `slow_down`.
    fn poll_device<'a>(
        &'a self,
        profile: &'a Profile,
        code: &'a DeviceCode,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>>;

    /// The authorize URL of a browser sign-in to `redirect_uri`, with PKCE (S256) and a random `state`.
    fn authorize_url(
        &self,
        profile: &Profile,
        scopes: &ScopeSet,
        claims: Option<&str>,
        redirect_uri: &str,
    ) -> Result<AuthorizeRequest, PlatformError>;

    /// Redeems the authorization code the loopback redirect brought.
    fn redeem_code<'a>(
        &'a self,
        profile: &'a Profile,
        scopes: &'a ScopeSet,
        code: AuthorizationCode,
        verifier: PkceCodeVerifier,
        redirect_uri: &'a str,
        claims: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Tokens, PlatformError>>;
}

/// A browser sign-in's authorize request: the URL for the user, and what the redirect is checked and redeemed
/// with. `Debug` shows neither the state nor the verifier.
pub struct AuthorizeRequest {
    pub url: String,
    /// The `state` the redirect must carry back.
    pub csrf_state: SecretString,
    pub verifier: PkceCodeVerifier,
}

impl fmt::Debug for AuthorizeRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthorizeRequest")
            .field("url", &graphbroker_protocol::redact_url(&self.url))
            .finish_non_exhaustive()
    }
}

/// A device-code sign-in started at the platform: what the user is shown, and the platform's own handle for
/// polling (opaque to everyone but the [`Platform`] that made it).
pub struct DeviceCode {
    pub verification_uri: String,
    pub user_code: String,
    /// The platform's sentence for the user.
    pub message: String,
    /// How long the code lives from when it was issued, bounded ([`bounds::device_code_life`]).
    pub expires_in: Duration,
    grant: Arc<dyn Any + Send + Sync>,
}

impl DeviceCode {
    /// A code as `grant` (the platform's polling handle) describes it. Without a `message` from the platform, one
    /// in its style is written.
    pub fn new(
        verification_uri: String,
        user_code: String,
        message: Option<String>,
        expires_in: Duration,
        grant: impl Any + Send + Sync,
    ) -> Self {
        let message = message.unwrap_or_else(|| {
            format!(
                "To sign in, use a web browser to open the page {verification_uri} and enter the code {user_code} \
                 to authenticate."
            )
        });
        let expires_in = bounds::device_code_life(expires_in);
        Self { verification_uri, user_code, message, expires_in, grant: Arc::new(grant) }
    }

    /// The polling handle, if it is of type `T`.
    pub fn grant<T: Any>(&self) -> Option<&T> {
        self.grant.downcast_ref()
    }
}

impl fmt::Debug for DeviceCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceCode")
            .field("verification_uri", &self.verification_uri)
            .field("user_code", &self.user_code)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorize_request_prints_neither_state_nor_verifier() {
        let request = AuthorizeRequest {
            url: "https://login.example/authorize?client_id=c&state=state-value-1&code_challenge=ch".into(),
            csrf_state: SecretString::from("state-value-1"),
            verifier: PkceCodeVerifier::new("verifier-value-2".into()),
        };
        let shown = format!("{request:?}");
        assert!(!shown.contains("state-value-1") && !shown.contains("verifier-value-2"), "{shown}");
        assert!(shown.contains("client_id=c"), "{shown}");
    }
}
