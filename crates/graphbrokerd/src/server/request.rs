//! Query strings (and the Graph proxy's headers) → validated domain requests: strict parsing (unknown parameters
//! and bad values are a `bad_request` naming the problem, not axum's plain-text rejection) and every check that
//! needs no profile.

use std::borrow::Cow;
use std::time::Duration;

use axum::http::HeaderMap;
use graphbroker_protocol::{ErrorCode, TERMINAL_HEADER, TokenQuery, proxy as names, split_scopes};
use serde::de::DeserializeOwned;

use crate::broker::{MAX_WAIT, TokenRequest};
use crate::config::MAX_MIN_VALID;
use crate::error::ApiError;
use crate::idp::ClaimsChallenge;
use crate::scopes::MAX_SCOPES_VALUE_LEN;
use url::form_urlencoded;

/// Parses a query string into `T`; no query means `T::default()`.
pub fn parse_query<T: DeserializeOwned + Default>(raw: Option<&str>) -> Result<T, ApiError> {
    match raw {
        None | Some("") => Ok(T::default()),
        Some(q) => serde_urlencoded::from_str(q).map_err(|e| {
            ApiError::bad_request(format!("bad query parameter{}: {e}; see docs/api.md", failing_parameter::<T>(q)))
        }),
    }
}

/// ` name` of the first parameter of `query` that fails to parse on its own (serde's message for a value that is
/// not a number does not say whose value it was), or nothing when none fails alone.
fn failing_parameter<T: DeserializeOwned>(query: &str) -> String {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .find(|pair| serde_urlencoded::from_str::<T>(pair).is_err())
        .map(|pair| pair.split_once('=').map_or(pair, |(name, _)| name))
        .map(|name| format!(" {name:?}"))
        .unwrap_or_default()
}

/// The parameters of a token query, borrowed from the query string where they need no decoding.
#[derive(Debug, Default)]
struct TokenParams<'a> {
    scopes: Option<Cow<'a, str>>,
    profile: Option<Cow<'a, str>>,
    min_valid: Option<u64>,
    wait: Option<u64>,
    claims: Option<Cow<'a, str>>,
}

/// The checked request of `GET /v1/token`'s (and `/v1/header`'s) raw query string; no query means the profile's
/// defaults. It reads what [`parse_query`] would read into a [`TokenQuery`] (the same decoding, the same refusals
/// of unknown and repeated parameters; the fuzz target `query` holds the two to that), without serde's machinery
/// or a copy of the values that need no decoding: this runs on every cached request.
pub fn token_query(raw: Option<&str>) -> Result<TokenRequest, ApiError> {
    checked(token_params(raw.unwrap_or_default())?)
}

fn token_params(query: &str) -> Result<TokenParams<'_>, ApiError> {
    let mut params = TokenParams::default();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = if pair.contains(['%', '+']) {
            // The slow path is the very decoder `serde_urlencoded` uses, on this one pair.
            form_urlencoded::parse(pair.as_bytes()).next().unwrap_or_default()
        } else {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (Cow::Borrowed(name), Cow::Borrowed(value))
        };
        let duplicate = match &*name {
            "scopes" => params.scopes.replace(value).is_some(),
            "profile" => params.profile.replace(value).is_some(),
            "claims" => params.claims.replace(value).is_some(),
            "min_valid" => params.min_valid.replace(seconds(&name, &value)?).is_some(),
            "wait" => params.wait.replace(seconds(&name, &value)?).is_some(),
            _ => {
                return Err(bad_parameter(
                    &name,
                    "unknown parameter, expected one of `scopes`, `profile`, `min_valid`, `wait`, `claims`",
                ));
            }
        };
        if duplicate {
            return Err(bad_parameter(&name, format_args!("duplicate field `{name}`")));
        }
    }
    Ok(params)
}

/// A whole number of seconds, as serde reads a `u64` (a leading `+` allowed, nothing else).
fn seconds(name: &str, value: &str) -> Result<u64, ApiError> {
    value.parse().map_err(|e| bad_parameter(name, e))
}

/// The `bad_request` of a query parameter, worded as [`parse_query`] words it.
fn bad_parameter(name: &str, error: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!("bad query parameter {name:?}: {error}; see docs/api.md"))
}

/// A token query, checked: `scopes` split (none, or an empty list, means the profile's), `min_valid` within
/// bounds, `wait` capped at [`MAX_WAIT`], `claims` decoded. The count and length of single scopes are checked
/// where they are normalized (`ScopeSet::normalize`); the whole value's length here, before it is split.
pub fn token_request(query: TokenQuery) -> Result<TokenRequest, ApiError> {
    checked(TokenParams {
        scopes: query.scopes.map(Cow::Owned),
        profile: query.profile.map(Cow::Owned),
        min_valid: query.min_valid,
        wait: query.wait,
        claims: query.claims.map(Cow::Owned),
    })
}

fn checked(query: TokenParams<'_>) -> Result<TokenRequest, ApiError> {
    let scopes = scopes(query.scopes.as_deref())?;
    let min_valid = match query.min_valid.map(Duration::from_secs) {
        Some(asked) if asked > MAX_MIN_VALID => {
            return Err(ApiError::bad_request(format!(
                "min_valid may be at most {} seconds; no token lives longer than a day",
                MAX_MIN_VALID.as_secs()
            )));
        }
        asked => asked,
    };
    let wait = capped_wait(query.wait);
    let claims = match query.claims.as_deref() {
        None => None,
        Some(text) => ClaimsChallenge::parse(text)
            .map_err(|e| ApiError::bad_request(format!("{e}: pass the claims challenge as sent by the resource")))?,
    };
    let profile = query.profile.map(Cow::into_owned);
    Ok(TokenRequest { profile, scopes, min_valid, wait, claims, challenged: None, attended: false })
}

/// The token request a Graph proxy call's headers make ([`names::SCOPES_HEADER`], [`names::PROFILE_HEADER`],
/// [`names::WAIT_HEADER`], [`TERMINAL_HEADER`]), under the same rules as `/v1/token`'s query.
pub fn proxy_request(headers: &HeaderMap) -> Result<TokenRequest, ApiError> {
    let text = |name: &str| -> Result<Option<&str>, ApiError> {
        headers
            .get(name)
            .map(|v| v.to_str().map_err(|_| ApiError::bad_request(format!("the {name} header is not text"))))
            .transpose()
    };
    let wait = match text(names::WAIT_HEADER)? {
        None => None,
        Some(seconds) => Some(seconds.trim().parse::<u64>().map_err(|_| {
            ApiError::bad_request(format!("{} must be a number of seconds, not {seconds:?}", names::WAIT_HEADER))
        })?),
    };
    Ok(TokenRequest {
        profile: text(names::PROFILE_HEADER)?.map(str::to_owned),
        scopes: scopes(text(names::SCOPES_HEADER)?)?,
        min_valid: None,
        wait: capped_wait(wait),
        claims: None,
        challenged: None,
        attended: attended(headers),
    })
}

/// Whether the asker says it shows a sign-in's prompt on a terminal ([`TERMINAL_HEADER`] is `1`).
pub fn attended(headers: &HeaderMap) -> bool {
    headers.get(TERMINAL_HEADER).is_some_and(|value| value.as_bytes() == b"1")
}

/// A `scopes` value split; `None` for none or an empty list (the profile's). The whole value's length is checked
/// here, before it is split.
fn scopes(value: Option<&str>) -> Result<Option<Vec<String>>, ApiError> {
    if let Some(value) = value
        && value.len() > MAX_SCOPES_VALUE_LEN
    {
        return Err(ApiError::new(
            ErrorCode::InvalidScopes,
            format!(
                "the scopes value is {} bytes; it may be at most {MAX_SCOPES_VALUE_LEN}: ask for fewer scopes",
                value.len()
            ),
        ));
    }
    Ok(value.map(split_scopes).filter(|list| !list.is_empty()))
}

/// `wait` seconds as a duration, at most [`MAX_WAIT`].
fn capped_wait(seconds: Option<u64>) -> Duration {
    seconds.map(Duration::from_secs).unwrap_or_default().min(MAX_WAIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Result<TokenRequest, ApiError> {
        token_query(Some(query))
    }

    #[test]
    fn a_full_query_becomes_a_request() {
        let claims = r#"{"access_token":{"nbf":{"essential":true,"value":"1"}}}"#;
        let query = format!(
            "scopes=User.Read,Mail.Read&profile=work&min_valid=60&wait=30&claims={}",
            url::form_urlencoded::byte_serialize(claims.as_bytes()).collect::<String>()
        );
        let request = request(&query).unwrap();
        assert_eq!(request.profile.as_deref(), Some("work"));
        assert_eq!(request.scopes.unwrap(), ["User.Read", "Mail.Read"]);
        assert_eq!(request.min_valid, Some(Duration::from_secs(60)));
        assert_eq!(request.wait, Duration::from_secs(30));
        assert!(request.claims.is_some());
    }

    #[test]
    fn absent_and_empty_values_mean_the_profiles() {
        let request = request("scopes=%20,%20").unwrap();
        assert_eq!(request.scopes, None);
        assert_eq!(request.min_valid, None);
        assert_eq!(request.wait, Duration::ZERO);
        assert_eq!(token_request(TokenQuery::default()).unwrap().profile, None);
    }

    #[test]
    fn wait_is_capped_and_bad_values_are_bad_requests() {
        assert_eq!(request("wait=100000").unwrap().wait, MAX_WAIT);
        for bad in ["min_valid=86401", "scope=User.Read", "wait=-1", "claims=%25%25", "min_valid=soon"] {
            let error = request(bad).unwrap_err();
            assert_eq!(error.code(), ErrorCode::BadRequest, "{bad}");
        }
        let message = request("claims=%5B1%5D").unwrap_err().0.message;
        assert!(message.contains("JSON object"), "{message}");
    }

    #[test]
    fn a_value_that_is_not_a_number_names_its_parameter() {
        let message = request("scopes=User.Read&wait=soon").unwrap_err().0.message;
        assert!(message.contains("\"wait\""), "{message}");
        let message = request("min_valid=-1").unwrap_err().0.message;
        assert!(message.contains("\"min_valid\""), "{message}");
    }

    #[test]
    fn repeated_and_unknown_parameters_are_refused_by_name() {
        let message = request("wait=1&scopes=User.Read&wait=2").unwrap_err().0.message;
        assert!(message.contains("\"wait\"") && message.contains("duplicate"), "{message}");
        let message = request("scopes=User.Read&Scopes=Mail.Read").unwrap_err().0.message;
        assert!(message.contains("\"Scopes\"") && message.contains("unknown"), "{message}");
    }

    /// The hand parser of the token routes reads every query as serde does through `TokenQuery`. The fuzz target
    /// `query` checks the same on generated input; these are the cases where the two could part.
    #[test]
    fn the_token_routes_parse_as_serde_does() {
        let serde = |q: &str| parse_query::<TokenQuery>(Some(q)).and_then(token_request);
        for query in [
            "",
            "&&",
            "scopes",
            "scopes=",
            "profile",
            "profile=&scopes=User.Read",
            "scopes=User.Read+Mail.Read",
            "scopes=User.Read%2CMail.Read&profile=w%6Frk",
            "scop%65s=User.Read",
            "scopes=%FF%FE",
            "wait=%2B5",
            "wait=+5",
            "wait=",
            "wait=18446744073709551616",
            "min_valid=60&min_valid=60",
            "scopes=a=b=c",
            "=x",
            "scopes=User.Read&claims=%7B%7D",
            "claims=%7B%22access_token%22%3A%7B%7D%7D",
            "a&b",
            "scopes=User.Read;profile=work",
        ] {
            match (serde(query), request(query)) {
                (Ok(a), Ok(b)) => {
                    assert_eq!((a.profile, a.scopes), (b.profile, b.scopes), "{query:?}");
                    assert_eq!((a.min_valid, a.wait, a.claims.is_some()), (b.min_valid, b.wait, b.claims.is_some()));
                }
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{query:?}: {a:?} / {b:?}"),
                (a, b) => panic!("{query:?}: serde {a:?}, the token routes {b:?}"),
            }
        }
    }

    #[test]
    fn an_overlong_scopes_value_is_invalid_scopes_naming_the_limit() {
        let value = vec!["User.Read"; MAX_SCOPES_VALUE_LEN / 9].join(",");
        let error = request(&format!("scopes={value}")).unwrap_err();
        assert_eq!(error.code(), ErrorCode::InvalidScopes);
        assert!(error.0.message.contains(&MAX_SCOPES_VALUE_LEN.to_string()), "{}", error.0.message);
        assert!(request(&format!("scopes={}", &value[..MAX_SCOPES_VALUE_LEN - 10])).is_ok());
    }
}
