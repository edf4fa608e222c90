//! The authorization-code grant's front half: `GET /{tenant}/oauth2/v2.0/authorize` with Entra's
//! redirect and PKCE checks, the sign-in/consent page and its form post, and approving or cancelling
//! a pending request from the control API. Redemption lives in `tokens.rs`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;

use crate::cae::parse_claims;
use crate::errors::{ControlError, EntraError, authorize_error_page};
use crate::form::Params;
use crate::ids::{random_b64url, random_guid};
use crate::pages::{self, ConsentPage};
use crate::pkce::{self, ChallengeMethod};
use crate::redirect;
use crate::scopes::{RequestedScopes, display_scope};
use crate::state::{AuthCode, PendingAuthorize, Shared, TenantSegment};

/// What Entra's docs show for a user who cancels (protocol notes §3).
const CANCEL_DESCRIPTION: &str = "the user canceled the authentication";

/// An authorize request whose sign-in page is showing, as the control API lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PendingAuthorization {
    /// Identifies the request in the consent form's hidden `request_id` field.
    pub request_id: String,
    pub state: Option<String>,
    pub client_id: String,
    pub redirect_uri: String,
    pub scopes: Vec<String>,
    pub login_hint: Option<String>,
}

/// An authorize outcome: either an error page (nothing trustworthy to redirect to) or a redirect.
enum Refusal {
    Page(EntraError),
    Redirect(String),
}

pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    Path(tenant): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    match begin(&shared, &tenant, &params) {
        Ok(html) => Html(html).into_response(),
        Err(Refusal::Page(error)) => authorize_error_page(&error),
        Err(Refusal::Redirect(location)) => found(&location),
    }
}

fn found(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

fn error_redirect(redirect_uri: &str, state: Option<&str>, error: &EntraError) -> Refusal {
    let description = error.short_description();
    Refusal::Redirect(error_location(redirect_uri, state, &error.error, &description))
}

fn error_location(redirect_uri: &str, state: Option<&str>, error: &str, description: &str) -> String {
    let mut params = vec![("error", error), ("error_description", description)];
    if let Some(state) = state {
        params.push(("state", state));
    }
    redirect::with_query(redirect_uri, &params).unwrap_or_else(|| redirect_uri.to_owned())
}

fn begin(shared: &Shared, tenant: &str, params: &Params) -> Result<String, Refusal> {
    // Until client and redirect URI are trusted, errors go to a page, never to a redirect.
    let tenant = shared.config.tenant_segment(tenant).map_err(Refusal::Page)?;
    let client_id = params.get("client_id").ok_or_else(|| Refusal::Page(EntraError::missing_parameter("client_id")))?;
    let client = shared.config.client(client_id).map_err(Refusal::Page)?;
    let redirect_uri =
        params.get("redirect_uri").ok_or_else(|| Refusal::Page(EntraError::missing_parameter("redirect_uri")))?;
    if !client.redirect_uris.iter().any(|registered| redirect::matches_registered(redirect_uri, registered)) {
        return Err(Refusal::Page(EntraError::new(
            "invalid_request",
            50011,
            format!(
                "The redirect URI '{redirect_uri}' specified in the request does not match the redirect URIs \
                 configured for the application '{client_id}'. Make sure the redirect URI sent in the request \
                 matches one added to your application in the Azure portal. Navigate to \
                 https://aka.ms/redirectUriMismatchError to learn more about how to fix this."
            ),
        )));
    }

    let state = params.get("state");
    let refuse = |error: EntraError| error_redirect(redirect_uri, state, &error);
    let response_type =
        params.get("response_type").ok_or_else(|| refuse(EntraError::missing_parameter("response_type")))?;
    if response_type != "code" {
        return Err(refuse(EntraError::new(
            "unsupported_response_type",
            700054,
            format!("response_type '{response_type}' is not enabled for the application."),
        )));
    }
    if let Some(mode) = params.get("response_mode").filter(|m| *m != "query") {
        return Err(refuse(EntraError::new(
            "invalid_request",
            90100,
            format!("response_mode '{mode}' is not supported by this stand-in; use 'query'."),
        )));
    }
    let scope = params.get("scope").ok_or_else(|| refuse(EntraError::missing_parameter("scope")))?;
    let scopes = RequestedScopes::parse(scope).map_err(|e| refuse(EntraError::from_scope_error(&e, scope)))?;
    if scopes.is_empty() {
        return Err(refuse(EntraError::missing_parameter("scope")));
    }
    let challenge =
        params.get("code_challenge").ok_or_else(|| refuse(EntraError::missing_parameter("code_challenge")))?;
    let method = ChallengeMethod::parse(params.get("code_challenge_method")).ok_or_else(|| {
        refuse(EntraError::new(
            "invalid_request",
            90100,
            "The code_challenge_method parameter is not valid. Supported methods are 'S256' and 'plain'.",
        ))
    })?;
    if !pkce::is_well_formed(challenge) {
        return Err(refuse(EntraError::new("invalid_request", 501491, "Invalid size of Code_Challenge parameter.")));
    }
    let claims = parse_claims(params.get("claims")).map_err(&refuse)?;
    // The fake keeps no browser session, so a silent request can never succeed.
    if params.get("prompt") == Some("none") {
        return Err(refuse(EntraError::new(
            "login_required",
            50058,
            "A silent sign-in request was sent but no user is signed in.",
        )));
    }

    let pending = PendingAuthorize {
        id: random_guid(),
        client_id: client_id.to_owned(),
        tenant,
        redirect_uri: redirect_uri.to_owned(),
        state: state.map(str::to_owned),
        scope: scope.to_owned(),
        scopes,
        challenge: challenge.to_owned(),
        method,
        login_hint: params.get("login_hint").map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        cae: claims.cp1,
    };
    let mut shown: Vec<String> = pending
        .scopes
        .resources
        .iter()
        .flat_map(|g| g.permissions.iter().map(|p| display_scope(&g.resource, p)))
        .collect();
    shown.extend(pending.scopes.oidc_names().into_iter().map(str::to_owned));
    let action =
        format!("/{tenant_segment}/oauth2/v2.0/authorize/consent", tenant_segment = params_tenant(shared, tenant));
    let html = pages::consent(&ConsentPage {
        action: &action,
        request_id: &pending.id,
        client_id,
        scopes: &shown,
        users: &shared.config.users,
        login_hint: pending.login_hint.as_deref(),
        message: None,
    });
    shared.lock().authorizations.push(pending);
    Ok(html)
}

/// The consent form posts back under the same kind of authority it came from.
fn params_tenant(shared: &Shared, tenant: TenantSegment) -> &str {
    match tenant {
        TenantSegment::Common => "common",
        TenantSegment::Organizations => "organizations",
        TenantSegment::Consumers => "consumers",
        TenantSegment::Tenant(_) => shared.config.issuer_tenant(tenant),
    }
}

/// `POST /{tenant}/oauth2/v2.0/authorize/consent`: the sign-in page's Accept or Cancel.
pub(crate) async fn consent_submit(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let params = Params::parse(&body);
    let request_id = params.get("request_id").unwrap_or_default();
    let decision = match params.get("action") {
        Some("cancel") => Decision::Cancel,
        _ => Decision::Accept(params.get("user").unwrap_or_default()),
    };
    let not_found = ControlError::BadRequest("this sign-in request is no longer pending; start again".to_owned());
    let result = finish(&shared, |p| p.id == request_id, decision, not_found);
    match result {
        Ok(location) => found(&location),
        Err(ControlError::UnknownUser(user)) => {
            let page = pages::error_page(
                "invalid_request",
                &format!(
                    "AADSTS50034: The user account {user} does not exist in the contoso.onmicrosoft.com directory."
                ),
            );
            (StatusCode::BAD_REQUEST, Html(page)).into_response()
        }
        Err(error) => {
            (StatusCode::BAD_REQUEST, Html(pages::error_page("invalid_request", &error.to_string()))).into_response()
        }
    }
}

enum Decision<'a> {
    Accept(&'a str),
    Cancel,
}

/// Completes the newest pending request matching `select`; returns where the browser goes next.
fn finish(
    shared: &Shared,
    select: impl Fn(&PendingAuthorize) -> bool,
    decision: Decision<'_>,
    not_found: ControlError,
) -> Result<String, ControlError> {
    let user = match decision {
        Decision::Accept(email) => Some(shared.config.user(email)?),
        Decision::Cancel => None,
    };
    let mut state = shared.lock();
    let index = state.authorizations.iter().rposition(select).ok_or(not_found)?;
    // A user of another tenant gets an error page and the request stays pending, as on Entra's sign-in page.
    if let Some(user) = user {
        shared.config.admit(state.authorizations[index].tenant, user)?;
    }
    let pending = state.authorizations.remove(index);
    let Some(user) = user else {
        tracing::info!(client_id = %pending.client_id, "authorize request cancelled");
        return Ok(error_location(
            &pending.redirect_uri,
            pending.state.as_deref(),
            "access_denied",
            CANCEL_DESCRIPTION,
        ));
    };
    let code = format!("1.AXoA{}", random_b64url(128));
    let expires_at = state.now() + shared.config.auth_code_lifetime;
    state.record_interactive_sign_in(&user.oid, &pending.client_id, &pending.scopes);
    state.auth_codes.insert(
        code.clone(),
        AuthCode {
            client_id: pending.client_id.clone(),
            tenant: pending.tenant,
            redirect_uri: pending.redirect_uri.clone(),
            challenge: pending.challenge.clone(),
            method: pending.method,
            oid: user.oid.clone(),
            nonce: pending.nonce.clone(),
            expires_at,
            redeemed: false,
            cae: pending.cae,
        },
    );
    tracing::info!(user = %user.email, client_id = %pending.client_id, "authorize request accepted");
    let mut params = vec![("code", code.as_str())];
    if let Some(state) = pending.state.as_deref() {
        params.push(("state", state));
    }
    Ok(redirect::with_query(&pending.redirect_uri, &params).unwrap_or_else(|| pending.redirect_uri.clone()))
}

pub(crate) fn approve_browser(shared: &Shared, state: &str, user: &str) -> Result<String, ControlError> {
    let not_found = ControlError::UnknownState(state.to_owned());
    finish(shared, |p| p.state.as_deref() == Some(state), Decision::Accept(user), not_found)
}

pub(crate) fn decline_browser(shared: &Shared, state: &str) -> Result<String, ControlError> {
    let not_found = ControlError::UnknownState(state.to_owned());
    finish(shared, |p| p.state.as_deref() == Some(state), Decision::Cancel, not_found)
}

pub(crate) fn pending_authorizations(shared: &Shared) -> Vec<PendingAuthorization> {
    shared
        .lock()
        .authorizations
        .iter()
        .map(|p| PendingAuthorization {
            request_id: p.id.clone(),
            state: p.state.clone(),
            client_id: p.client_id.clone(),
            redirect_uri: p.redirect_uri.clone(),
            scopes: p.scope.split_ascii_whitespace().map(str::to_owned).collect(),
            login_hint: p.login_hint.clone(),
        })
        .collect()
}
