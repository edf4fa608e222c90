//! Entry points for the fuzz targets in `fuzz/` (run by `scripts/fuzz`): one function per parser of untrusted
//! input, taking raw bytes. Each calls the daemon's own parsing code — nothing here re-implements it — and panics
//! only when a property the daemon relies on does not hold, so a panic is a finding:
//!
//! - [`query`]: a socket request's query string → a checked `TokenRequest` or a `bad_request`, within bounds.
//! - [`scopes`]: a scope list → one resource's [`ScopeSet`] or a [`ScopeError`]; normalizing is idempotent and
//!   neither order nor duplicates change the cache key.
//! - [`config`]: TOML text → a resolved [`Config`] whose default profile exists, or an error naming the file.
//! - [`idp_answer`]: an identity-platform body → a token response, an error body (classified), a device-code
//!   answer, a claims challenge; secrets from the body never show in `Debug`.
//! - [`graph_proxy`]: a Graph proxy request path → a URL on the Graph origin under `/{version}/`, or a refusal;
//!   `WWW-Authenticate` values → a claims challenge or none.
//!
//! Built only with the `fuzzing` feature (the fuzz crate turns it on) and in unit tests, which replay the
//! committed corpus (`fuzz/corpus/`) through every target so that a finding, once fixed, stays fixed on stable.

use std::path::Path;
use std::time::Duration;

use axum::response::IntoResponse as _;
use graphbroker_protocol::{ErrorCode, ProfileQuery, SignInQuery, TokenQuery, split_scopes};
use oauth2::TokenResponse as _;
use secrecy::ExposeSecret as _;

use crate::broker::{CachedToken, MAX_WAIT};
use crate::clock::{BootTime, Now};
use crate::config::{Config, MAX_HTTP_TIMEOUT, MAX_MIN_VALID};
use crate::error::ApiError;
use crate::idp::bounds;
use crate::idp::{
    ClaimsChallenge, DeviceCode, EntraDeviceFields, EntraError, EntraTokenResponse, classify, request_claims,
};
use crate::scopes::{ScopeError, ScopeSet};
use crate::server::request::{parse_query, token_query, token_request};

/// What short scope names mean in the fuzzed scope lists: Microsoft Graph, as for the public cloud.
const GRAPH: &str = "https://graph.microsoft.com";

/// Secrets shorter than this may turn up in a `Debug` by coincidence (a number, a scope), so are not checked.
const CHECKED_SECRET_LEN: usize = 16;

/// The socket API's query parser: what `GET /v1/token`, `/v1/header`, `/v1/signin` and `/v1/signout` do with
/// their raw query string. Anything is either a request within the documented bounds or a `bad_request` whose
/// JSON body can be written.
pub fn query(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let through_serde = parse_query::<TokenQuery>(Some(raw)).and_then(token_request);
    let served = token_query(Some(raw));
    // The token routes parse by hand; the answer must be serde's, field for field or refusal for refusal.
    match (&through_serde, &served) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.profile, b.profile, "{raw:?}");
            assert_eq!(a.scopes, b.scopes, "{raw:?}");
            assert_eq!((a.min_valid, a.wait), (b.min_valid, b.wait), "{raw:?}");
            assert_eq!(a.claims.is_some(), b.claims.is_some(), "{raw:?}");
        }
        (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{raw:?}: {a:?} / {b:?}"),
        _ => panic!("the token query parsers disagree on {raw:?}: {through_serde:?} / {served:?}"),
    }
    match served {
        Ok(request) => {
            assert!(request.wait <= MAX_WAIT, "wait {:?} above the cap", request.wait);
            assert!(request.min_valid.is_none_or(|m| m <= MAX_MIN_VALID), "min_valid {:?}", request.min_valid);
            if let Some(scopes) = &request.scopes {
                assert!(!scopes.is_empty(), "an empty scope list must mean the profile's");
                for scope in scopes {
                    assert!(!scope.is_empty() && !scope.contains(',') && !scope.contains(char::is_whitespace));
                }
            }
        }
        Err(error) => bad_request(error),
    }
    if let Err(error) = parse_query::<SignInQuery>(Some(raw)) {
        bad_request(error);
    }
    if let Err(error) = parse_query::<ProfileQuery>(Some(raw)) {
        bad_request(error);
    }
}

fn bad_request(error: ApiError) {
    assert_eq!(error.code(), ErrorCode::BadRequest, "{error:?}");
    assert!(!error.0.message.trim().is_empty(), "an error must say what to do");
    assert_eq!(error.into_response().status(), 400);
}

/// Scope normalization, on the list split as the socket API splits it and on one scope per line (so that
/// whitespace and control characters inside a scope reach the checks).
pub fn scopes(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    scope_list(&split_scopes(text));
    scope_list(&text.lines().collect::<Vec<_>>());
}

fn scope_list<S: AsRef<str>>(requested: &[S]) {
    let set = match ScopeSet::normalize(requested, GRAPH) {
        Ok(set) => set,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            if let ScopeError::TwoResources(a, b) = &error {
                assert!(!a.eq_ignore_ascii_case(b), "two resources that are one: {error}");
            }
            return;
        }
    };
    // Idempotence: the normalized form is its own normal form (the resource keeps the case it was first
    // written in, which may differ: it is compared case-insensitively everywhere).
    let again = ScopeSet::normalize(set.scopes(), GRAPH)
        .unwrap_or_else(|e| panic!("normalized scopes {:?} are refused: {e}", set.scopes()));
    assert_eq!(again.scopes(), set.scopes(), "normalizing twice changed the scopes");
    assert_eq!(again.key(), set.key(), "normalizing twice changed the key");
    assert!(again.resource().eq_ignore_ascii_case(set.resource()));
    // Neither order nor repetition changes the key.
    let reversed: Vec<&str> = requested.iter().rev().map(AsRef::as_ref).collect();
    let reversed = ScopeSet::normalize(&reversed, GRAPH).expect("the same scopes in reverse order are refused");
    assert_eq!(reversed.key(), set.key(), "order changed the key");
    // (The cap on scopes counts what was asked for, repetitions included: it bounds the work of one request.)
    if requested.len() * 2 <= crate::scopes::MAX_SCOPES {
        let doubled: Vec<&str> = requested.iter().chain(requested).map(AsRef::as_ref).collect();
        assert_eq!(ScopeSet::normalize(&doubled, GRAPH).expect("doubled scopes are refused").key(), set.key());
    }
    // The shape the cache and the platform request rely on.
    let lower: Vec<String> = set.scopes().iter().map(|s| s.to_ascii_lowercase()).collect();
    assert!(lower.windows(2).all(|w| w[0] < w[1]), "scopes not sorted and unique: {:?}", set.scopes());
    assert_eq!(set.key(), lower.join(" "));
    assert_eq!(set.request_scopes().len(), set.scopes().len() + 3);
    for scope in set.scopes() {
        assert!(scope.to_ascii_lowercase().starts_with(&set.resource().to_ascii_lowercase()), "{scope}");
    }
    let granted: Vec<String> = requested.iter().map(|s| s.as_ref().to_owned()).collect();
    assert!(!set.granted_from_response(&granted, GRAPH).is_empty());
}

/// The config file parser: TOML text → a resolved configuration or an error that names the file.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let origin = Path::new("fuzz.toml");
    match Config::parse(text, origin) {
        Ok(config) => {
            assert!(config.profile(None).is_some(), "the default profile {:?} is missing", config.default_profile);
            assert!(!config.http_timeout.is_zero() && config.http_timeout <= MAX_HTTP_TIMEOUT);
            for profile in config.profiles.values() {
                assert!(profile.min_valid <= MAX_MIN_VALID);
                assert!(!profile.scopes.is_empty(), "profile {} has no scopes", profile.name);
                assert!(profile.scopes.iter().all(|s| !s.is_empty() && !s.contains(char::is_whitespace)));
                for url in [profile.token_endpoint(), profile.device_code_endpoint(), profile.authorize_endpoint()] {
                    assert!(matches!(url.scheme(), "https" | "http"), "{url}");
                }
            }
        }
        Err(error) => {
            let message = error.to_string();
            assert!(message.starts_with("fuzz.toml"), "the error does not name the file: {message}");
        }
    }
}

/// Readings of both clocks at their extremes: at boot, at the epoch, and near the end of representable time.
fn extreme_times() -> [Now; 3] {
    let boot = |secs| BootTime::from_duration(Duration::from_secs(secs));
    [
        Now { wall: std::time::UNIX_EPOCH, boot: boot(0) },
        Now { wall: std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000), boot: boot(86_400) },
        Now {
            wall: std::time::UNIX_EPOCH + Duration::from_secs(253_402_300_000),
            boot: BootTime::from_duration(Duration::MAX),
        },
    ]
}

/// The identity platform's answers, as the daemon reads them: a token response (through the same types oauth2
/// parses it into, then [`crate::idp`]'s reading of it), an error body and its classification, a device-code
/// answer, the error-with-HTTP-200 check, `Retry-After`, and a claims challenge.
pub fn idp_answer(data: &[u8]) {
    if let Ok(response) = serde_json::from_slice::<EntraTokenResponse>(data) {
        let tokens = crate::idp::tokens_from(response.clone());
        let debug = format!("{tokens:?}");
        let shown =
            format!("{:?} {:?} {:?} {:?}", tokens.granted, tokens.identity, tokens.expires_in, tokens.refresh_in);
        let secrets =
            [Some(tokens.access_token.expose_secret()), tokens.refresh_token.as_ref().map(|t| t.expose_secret())];
        for secret in secrets.into_iter().flatten() {
            if secret.len() >= CHECKED_SECRET_LEN && !shown.contains(secret) {
                assert!(!debug.contains(secret), "a token shows in Debug: {debug}");
            }
        }
        assert_eq!(tokens.access_token.expose_secret(), response.access_token().secret());
        // Every duration bounded, and a token cached from it at any time has deadlines that do not overflow.
        assert!(tokens.expires_in <= bounds::MAX_TOKEN_LIFETIME, "{:?}", tokens.expires_in);
        assert!(tokens.refresh_in.is_none_or(|r| r <= tokens.expires_in), "{:?}", tokens.refresh_in);
        if let Some(ext) = crate::idp::ext_lifetime(&response) {
            assert!(ext >= tokens.expires_in && ext <= bounds::MAX_TOKEN_LIFETIME, "{ext:?}");
        }
        for now in extreme_times() {
            let token = CachedToken::issued(
                tokens.access_token.clone(),
                vec![],
                tokens.expires_in,
                tokens.refresh_in,
                Duration::MAX,
                now,
            );
            assert!(token.remaining(now) <= tokens.expires_in);
            let _ = (token.refresh_due(now), token.expires_at(now));
        }
    }
    if let Ok(error) = serde_json::from_slice::<EntraError>(data) {
        let class = classify(&error);
        assert!(!error.summary().is_empty());
        let api = ApiError::from_platform(class, "default");
        assert!(!api.0.message.trim().is_empty());
        let _ = api.into_response();
    }
    if let Ok(grant) = serde_json::from_slice::<oauth2::DeviceAuthorizationResponse<EntraDeviceFields>>(data) {
        let secret = grant.device_code().secret().clone();
        // What the poll runs on: the answer with its life and interval bounded.
        let grant = crate::idp::bounded_device_grant(grant).expect("a parsed grant serializes again");
        assert!(grant.expires_in() <= bounds::MAX_DEVICE_CODE_LIFE, "{:?}", grant.expires_in());
        let interval = grant.interval();
        assert!((bounds::MIN_POLL_INTERVAL..=bounds::MAX_POLL_INTERVAL).contains(&interval), "{interval:?}");
        let code = DeviceCode::new(
            grant.verification_uri().to_string(),
            grant.user_code().secret().clone(),
            grant.extra_fields().message.clone(),
            grant.expires_in(),
            grant,
        );
        let shown = format!("{} {} {}", code.verification_uri, code.user_code, code.expires_in.as_secs());
        if secret.len() >= CHECKED_SECRET_LEN && !shown.contains(&secret) {
            assert!(!format!("{code:?}").contains(&secret), "the device code shows in Debug");
        }
        assert!(!code.message.is_empty());
    }
    let _ = crate::idp::body_is_error(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(after) = crate::idp::parse_retry_after(text) {
            assert!(after <= bounds::MAX_RETRY_AFTER, "{after:?}");
        }
        if let Ok(Some(challenge)) = ClaimsChallenge::parse(text) {
            let merged = request_claims(Some(&challenge), true).expect("a challenge with cp1 is something to send");
            let value: serde_json::Value = serde_json::from_str(&merged).expect("merged claims are JSON");
            assert!(value.is_object());
        }
    }
}

/// The Graph proxy's parsers of what a caller and Graph send: the first line is a request path (and query after
/// `?`), the rest `WWW-Authenticate` values, one per line. A path either makes a URL on the Graph host under
/// `/{version}/` or is refused; a challenge, when found, is never empty.
pub fn graph_proxy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (first, headers) = text.split_once('\n').unwrap_or((text, ""));
    let (path, query) = match first.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (first, None),
    };
    let base = url::Url::parse("https://graph.microsoft.com/").expect("a URL");
    let path = format!("/graph/{}", path.trim_start_matches('/'));
    if let Ok(url) = crate::server::proxy::target_url(&base, &path, query) {
        assert_eq!(url.origin(), base.origin(), "{path:?} left the Graph origin: {url}");
        let version = path.trim_start_matches("/graph/").split('/').next().unwrap_or_default();
        assert!(url.path().starts_with(&format!("/{version}/")), "{path:?} left /{version}/: {url}");
        assert!(!url.path().split('/').any(|segment| segment == ".."), "{url}");
    }
    if let Some(claims) = crate::server::proxy::challenge::insufficient_claims(headers.lines()) {
        assert!(!claims.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// The committed corpus of each target, replayed: what the fuzzer found once must not come back.
    fn replay(target: &str, run: fn(&[u8])) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut count = 0;
        for entry in entries {
            let path = entry.unwrap().path();
            run(&std::fs::read(&path).unwrap());
            count += 1;
        }
        assert!(count > 0, "no corpus in {}", dir.display());
    }

    #[test]
    fn the_query_corpus_replays() {
        replay("query", super::query);
    }

    #[test]
    fn the_scopes_corpus_replays() {
        replay("scopes", super::scopes);
    }

    #[test]
    fn the_config_corpus_replays() {
        replay("config", super::config);
    }

    #[test]
    fn the_idp_answer_corpus_replays() {
        replay("idp_answer", super::idp_answer);
    }

    #[test]
    fn the_graph_proxy_corpus_replays() {
        replay("graph_proxy", super::graph_proxy);
    }
}
