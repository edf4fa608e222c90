//! Minting token responses: JWT-shaped access and ID tokens with random signatures, opaque refresh
//! tokens, and the consent check every issuance passes through.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::errors::EntraError;
use crate::ids::random_b64url;
use crate::scopes::{self, GRAPH_APP_ID, GRAPH_RESOURCE, RequestedScopes};
use crate::state::{AccessTokenRecord, RefreshTokenRecord, State, UserInfo};

/// The ID token lives an hour, as Entra's do; nothing in the fake validates it.
const ID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// Who gets a token, for which client, and what the request asked for.
#[derive(Debug)]
pub(crate) struct Issuance<'a> {
    pub(crate) user: &'a UserInfo,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) scopes: &'a RequestedScopes,
    pub(crate) nonce: Option<&'a str>,
    /// The request carried `client_info=1`.
    pub(crate) client_info: bool,
    /// The request (or the authorize/devicecode request it completes) declared cp1.
    pub(crate) cae: bool,
}

/// The resource a token request is for, and the permissions that will be granted.
#[derive(Debug)]
pub(crate) struct Grant {
    pub(crate) resource: String,
    pub(crate) permissions: Vec<String>,
}

/// Resolves the single resource and checks consent. `.default` expands to everything consented for
/// the resource; any named permission not consented gives AADSTS65001 `consent_required`.
pub(crate) fn resolve_grant(state: &State, issuance: &Issuance<'_>) -> Result<Grant, EntraError> {
    let group = issuance.scopes.single_resource().map_err(|e| EntraError::from_scope_error(&e, issuance.scope))?;
    let Some(group) = group else {
        // Only OIDC scopes: Entra still issues a Graph token, carrying no Graph permission.
        return Ok(Grant { resource: GRAPH_RESOURCE.to_owned(), permissions: Vec::new() });
    };
    let key = (issuance.user.oid.clone(), issuance.client_id.to_owned());
    let consented = state.consents.get(&key).cloned().unwrap_or_default();
    let permissions = if group.is_default() {
        scopes::consented_permissions(&consented, &group.resource)
    } else {
        let all_consented =
            group.permissions.iter().all(|p| consented.contains_key(&scopes::consent_key(&group.resource, p)));
        if all_consented { group.permissions.clone() } else { Vec::new() }
    };
    if permissions.is_empty() {
        return Err(consent_required(issuance.client_id));
    }
    Ok(Grant { resource: group.resource.clone(), permissions })
}

fn consent_required(client_id: &str) -> EntraError {
    EntraError::new(
        "invalid_grant",
        65001,
        format!(
            "The user or administrator has not consented to use the application with ID '{client_id}' named \
             '{client_id}'. Send an interactive authorization request for this user and resource."
        ),
    )
    .with_suberror("consent_required")
}

/// Issues the tokens for a resolved grant and remembers them. Returns the token response body.
pub(crate) fn issue(state: &mut State, issuance: &Issuance<'_>, grant: Grant) -> Value {
    let now = state.now();
    let lifetime = state.access_token_lifetime;
    let user = issuance.user;
    let requested = issuance.scopes;

    let mut scp: Vec<String> = grant.permissions.clone();
    if scp.is_empty() {
        scp = requested.oidc_names().into_iter().filter(|s| *s != "offline_access").map(str::to_owned).collect();
    }
    let audience = if grant.resource == GRAPH_RESOURCE { GRAPH_APP_ID.to_owned() } else { grant.resource.clone() };
    let access_token = jwt(&json!({
        "aud": audience,
        "iss": format!("https://sts.windows.net/{}/", user.tenant_id),
        "iat": unix(now),
        "nbf": unix(now),
        "exp": unix(now + lifetime),
        "appid": issuance.client_id,
        "name": user.display_name,
        "oid": user.oid,
        "scp": scp.join(" "),
        "tid": user.tenant_id,
        "upn": user.email,
        "uti": random_b64url(16),
        "ver": "1.0",
    }));
    state.access_tokens.insert(
        access_token.clone(),
        AccessTokenRecord {
            resource: grant.resource.clone(),
            oid: user.oid.clone(),
            permissions: grant.permissions.clone(),
            issued_at: now,
            expires_at: now + lifetime,
            cae: issuance.cae,
        },
    );

    // Graph tokens list short names plus the OIDC scopes; other resources' tokens list only their own.
    let mut scope: Vec<String> = grant.permissions.iter().map(|p| scopes::display_scope(&grant.resource, p)).collect();
    if grant.resource == GRAPH_RESOURCE {
        scope.extend(requested.oidc_names().into_iter().map(str::to_owned));
    }
    let seconds = lifetime.as_secs();
    let mut body = json!({
        "token_type": "Bearer",
        "scope": scope.join(" "),
        "expires_in": seconds,
        "ext_expires_in": seconds,
        "access_token": access_token,
    });
    if requested.offline_access {
        let refresh_token = format!("1.AXoA{}", random_b64url(96));
        state.refresh_tokens.insert(
            refresh_token.clone(),
            RefreshTokenRecord {
                oid: user.oid.clone(),
                client_id: issuance.client_id.to_owned(),
                issued_at: now,
                last_used: now,
                revoked: false,
            },
        );
        body["refresh_token"] = json!(refresh_token);
    }
    if requested.openid {
        body["id_token"] = json!(id_token(issuance, now));
    }
    if issuance.client_info {
        body["client_info"] = json!(client_info(&user.oid, &user.tenant_id));
    }
    body
}

fn id_token(issuance: &Issuance<'_>, now: SystemTime) -> String {
    let user = issuance.user;
    // `sub` is pairwise: stable per user and app, different across apps.
    let sub = URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{}/{}", user.oid, issuance.client_id)));
    let mut claims = json!({
        "aud": issuance.client_id,
        "iss": format!("https://login.microsoftonline.com/{}/v2.0", user.tenant_id),
        "iat": unix(now),
        "nbf": unix(now),
        "exp": unix(now + ID_TOKEN_LIFETIME),
        "sub": sub,
        "tid": user.tenant_id,
        "uti": random_b64url(16),
        "ver": "2.0",
    });
    if issuance.scopes.profile {
        claims["oid"] = json!(user.oid);
        claims["name"] = json!(user.display_name);
        claims["preferred_username"] = json!(user.email);
    }
    if issuance.scopes.email {
        claims["email"] = json!(user.email);
    }
    if let Some(nonce) = issuance.nonce {
        claims["nonce"] = json!(nonce);
    }
    jwt(&claims)
}

/// `base64url({"uid":oid,"utid":tid})` without padding; MSAL builds `home_account_id` from it.
pub(crate) fn client_info(oid: &str, tenant_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(json!({"uid": oid, "utid": tenant_id}).to_string())
}

/// A JWT-shaped token whose signature is random bytes: clients must treat tokens as opaque, and the
/// fake recognises its own tokens by remembering them, not by verifying signatures.
fn jwt(claims: &Value) -> String {
    let header = json!({"typ": "JWT", "alg": "RS256", "kid": "fake"});
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        random_b64url(256)
    )
}

fn unix(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_info_decodes_to_uid_and_utid() {
        let encoded = client_info("abc", crate::TENANT_ID);
        assert!(!encoded.contains('='));
        let decoded: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap();
        assert_eq!(decoded, json!({"uid": "abc", "utid": crate::TENANT_ID}));
    }

    #[test]
    fn jwt_has_three_segments_and_the_fake_header() {
        let token = jwt(&json!({"a": 1}));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"typ": "JWT", "alg": "RS256", "kid": "fake"}));
    }
}
