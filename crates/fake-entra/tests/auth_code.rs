//! Authorization code + PKCE: the authorize leg's checks, the sign-in page, and redemption rules.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::*;

fn hidden_request_id(html: &str) -> String {
    let marker = "name=\"request_id\" value=\"";
    let start = html.find(marker).expect("hidden request_id field") + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

#[tokio::test]
async fn sign_in_page_form_post_redirects_with_code_and_state_then_redeems() {
    let fake = fake();
    let page = get(&authorize_url(&fake, &[("login_hint", BOB), ("state", "a b&c/=")])).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("<li>User.Read</li>") && page.text.contains("Accept") && page.text.contains("Cancel"));
    assert!(page.text.contains(&format!("value=\"{BOB}\"")), "login_hint preselects the user");

    let consent_url = format!("{}/oauth2/v2.0/authorize/consent", fake.authority("common"));
    let request_id = hidden_request_id(&page.text);
    let reply = post_form(&consent_url, &[("request_id", &request_id), ("user", BOB), ("action", "accept")]).await;
    assert_eq!(reply.status, StatusCode::FOUND);
    let location = reply.location();
    // A registered URI without a path comes back with Entra's trailing slash.
    assert!(location.starts_with("http://localhost:7071/?code="), "{location}");
    let query = query_of(&location);
    assert_eq!(query["state"], "a b&c/=");

    let tokens = redeem(&fake, &query["code"], &[]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.text);
    assert_no_store(&tokens);
    let body = tokens.json();
    assert_eq!(body["scope"], "User.Read profile openid offline_access");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["upn"], BOB);
    assert!(fake.pending_browser().is_empty());
}

#[tokio::test]
async fn cancel_redirects_with_access_denied_and_state() {
    let fake = fake();
    get(&authorize_url(&fake, &[])).await;
    let location = fake.decline_browser("st-123").unwrap();
    let query = query_of(&location);
    assert!(location.starts_with("http://localhost:7071/?error=access_denied"), "{location}");
    assert_eq!(query["error_description"], "the user canceled the authentication");
    assert_eq!(query["state"], "st-123");
}

#[tokio::test]
async fn unknown_client_is_an_error_page_not_a_redirect() {
    let fake = fake();
    let reply = get(&authorize_url(&fake, &[("client_id", "99999999-9999-9999-9999-999999999999")])).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.header("location").is_none());
    assert!(reply.text.contains("AADSTS700016"), "{}", reply.text);
}

#[tokio::test]
async fn redirect_uri_rules_loopback_port_agnostic_path_exact() {
    let fake = builder().client_with_redirect_uris(OTHER_CLIENT, ["http://127.0.0.1/cb"]).start().unwrap();
    let refused = [
        (CLIENT, "http://localhost:7071/callback"),
        (CLIENT, "http://127.0.0.1:7071"),
        (CLIENT, "https://localhost:7071"),
        (OTHER_CLIENT, "http://127.0.0.1:5000/CB"),
    ];
    for (client, uri) in refused {
        let reply = get(&authorize_url(&fake, &[("client_id", client), ("redirect_uri", uri)])).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{uri} must be refused");
        assert!(reply.header("location").is_none());
        assert!(reply.text.contains("AADSTS50011"), "{}", reply.text);
    }
    let accepted =
        [(CLIENT, "http://localhost:1234"), (CLIENT, "http://localhost"), (OTHER_CLIENT, "http://127.0.0.1:5000/cb")];
    for (client, uri) in accepted {
        let reply = get(&authorize_url(&fake, &[("client_id", client), ("redirect_uri", uri)])).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri} must be accepted: {}", reply.text);
    }
}

async fn redirect_error(
    fake: &fake_entra::FakeEntra,
    extra: &[(&str, &str)],
) -> std::collections::HashMap<String, String> {
    let reply = get(&authorize_url(fake, extra)).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{}", reply.text);
    let location = reply.location();
    assert!(location.starts_with("http://localhost:7071/?error="), "{location}");
    query_of(&location)
}

#[tokio::test]
async fn missing_pkce_challenge_redirects_invalid_request_with_state() {
    let fake = fake();
    let query = redirect_error(&fake, &[("code_challenge", "")]).await;
    assert_eq!(query["error"], "invalid_request");
    assert!(query["error_description"].starts_with("AADSTS900144:"), "{query:?}");
    assert_eq!(query["state"], "st-123");
}

#[tokio::test]
async fn bad_challenge_method_and_size_redirect_invalid_request() {
    let fake = fake();
    assert!(
        redirect_error(&fake, &[("code_challenge_method", "S512")]).await["error_description"]
            .starts_with("AADSTS90100:")
    );
    let short = redirect_error(&fake, &[("code_challenge", "tooshort")]).await;
    assert_eq!(short["error"], "invalid_request");
    assert!(short["error_description"].starts_with("AADSTS501491:"));
}

#[tokio::test]
async fn unsupported_response_type_redirects() {
    let fake = fake();
    let query = redirect_error(&fake, &[("response_type", "token")]).await;
    assert_eq!(query["error"], "unsupported_response_type");
    assert_eq!(query["state"], "st-123");
}

#[tokio::test]
async fn prompt_none_is_login_required() {
    let fake = fake();
    let query = redirect_error(&fake, &[("prompt", "none")]).await;
    assert_eq!(query["error"], "login_required");
}

#[tokio::test]
async fn pkce_mismatch_is_invalid_grant_and_correct_verifier_then_passes() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    let wrong = redeem(&fake, &code, &[("code_verifier", &"x".repeat(43))]).await;
    assert_entra_error(&wrong, 400, "invalid_grant", 501481);
    assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn missing_verifier_is_invalid_grant() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    assert_entra_error(&redeem(&fake, &code, &[("code_verifier", "")]).await, 400, "invalid_grant", 501481);
}

#[tokio::test]
async fn malformed_verifier_is_invalid_request() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    let bad = format!("{}+", &VERIFIER[..43]);
    assert_entra_error(&redeem(&fake, &code, &[("code_verifier", &bad)]).await, 400, "invalid_request", 501491);
    assert_entra_error(&redeem(&fake, &code, &[("code_verifier", "short")]).await, 400, "invalid_request", 501491);
}

#[tokio::test]
async fn plain_method_and_missing_method_compare_directly() {
    let fake = fake();
    for method in ["plain", ""] {
        let url = authorize_url(&fake, &[("code_challenge", VERIFIER), ("code_challenge_method", method)]);
        assert_eq!(get(&url).await.status, StatusCode::OK);
        let code = query_of(&fake.approve_browser("st-123", ALICE).unwrap())["code"].clone();
        assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK, "method {method:?}");
    }
    // The S256 transform of the verifier is not the plain challenge.
    let url = authorize_url(&fake, &[("code_challenge", &s256(VERIFIER)), ("code_challenge_method", "plain")]);
    get(&url).await;
    let code = query_of(&fake.approve_browser("st-123", ALICE).unwrap())["code"].clone();
    assert_entra_error(&redeem(&fake, &code, &[]).await, 400, "invalid_grant", 501481);
}

#[tokio::test]
async fn redirect_uri_must_equal_the_authorize_one() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    let other = redeem(&fake, &code, &[("redirect_uri", "http://localhost:7072")]).await;
    assert_entra_error(&other, 400, "invalid_grant", 50011);
    assert_entra_error(&redeem(&fake, &code, &[("redirect_uri", "")]).await, 400, "invalid_request", 900144);
    assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_is_single_use() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK);
    assert_entra_error(&redeem(&fake, &code, &[]).await, 400, "invalid_grant", 54005);
}

#[tokio::test]
async fn code_expires() {
    let fake = builder().auth_code_lifetime(Duration::from_secs(600)).start().unwrap();
    let code = browser_code(&fake, ALICE).await;
    fake.advance_clock(Duration::from_secs(601));
    assert_entra_error(&redeem(&fake, &code, &[]).await, 400, "invalid_grant", 70008);
    let fresh = browser_code(&fake, ALICE).await;
    fake.advance_clock(Duration::from_secs(599));
    assert_eq!(redeem(&fake, &fresh, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_is_bound_to_its_client() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    assert_entra_error(&redeem(&fake, &code, &[("client_id", OTHER_CLIENT)]).await, 400, "invalid_grant", 70000);
    assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn code_is_bound_to_its_tenant() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    let url = format!("{}/oauth2/v2.0/token", fake.authority(fake_entra::TENANT_ID));
    let form = [
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("code", code.as_str()),
        ("redirect_uri", "http://localhost:7071"),
        ("code_verifier", VERIFIER),
        ("scope", GRAPH_SCOPES),
    ];
    assert_entra_error(&post_form(&url, &form).await, 400, "invalid_grant", 700005);
}

#[tokio::test]
async fn empty_scope_on_redemption_is_28003() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    assert_entra_error(&redeem(&fake, &code, &[("scope", " ")]).await, 400, "invalid_scope", 28003);
    assert_entra_error(&redeem(&fake, &code, &[("scope", "")]).await, 400, "invalid_scope", 28003);
    assert_eq!(redeem(&fake, &code, &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn authorize_may_span_resources_but_redemption_names_one() {
    let fake = fake();
    let scope = "User.Read https://outlook.office.com/IMAP.AccessAsUser.All offline_access";
    assert_eq!(get(&authorize_url(&fake, &[("scope", scope)])).await.status, StatusCode::OK);
    let code = query_of(&fake.approve_browser("st-123", ALICE).unwrap())["code"].clone();
    assert_entra_error(&redeem(&fake, &code, &[("scope", scope)]).await, 400, "invalid_scope", 28000);
    let outlook =
        redeem(&fake, &code, &[("scope", "https://outlook.office.com/IMAP.AccessAsUser.All offline_access")]).await;
    assert_eq!(outlook.status, StatusCode::OK, "{}", outlook.text);
    let body = outlook.json();
    assert_eq!(body["scope"], "https://outlook.office.com/IMAP.AccessAsUser.All");
    // Consent covered both resources, so the refresh token reaches Graph too.
    let graph = refresh(&fake, CLIENT, body["refresh_token"].as_str().unwrap(), "User.Read offline_access").await;
    assert_eq!(graph.status, StatusCode::OK, "{}", graph.text);
}

#[tokio::test]
async fn control_browser_routes_list_and_approve() {
    let fake = fake();
    get(&authorize_url(&fake, &[("state", "s-1")])).await;
    let base = fake.base_url();
    let pending = get(&format!("{base}/_control/browser/pending")).await.json();
    assert_eq!(pending[0]["state"], "s-1");
    assert_eq!(pending[0]["client_id"], CLIENT);
    assert_eq!(pending[0]["redirect_uri"], "http://localhost:7071");
    assert_eq!(pending[0]["scopes"], json!(["User.Read", "openid", "profile", "offline_access"]));

    let missing = post_json(&format!("{base}/_control/browser/approve"), json!({"state": "nope", "user": ALICE})).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let approved = post_json(&format!("{base}/_control/browser/approve"), json!({"state": "s-1", "user": ALICE})).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.text);
    let redirect = approved.json()["redirect"].as_str().unwrap().to_owned();
    assert_eq!(query_of(&redirect)["state"], "s-1");
    assert_eq!(redeem(&fake, &query_of(&redirect)["code"], &[]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn consent_form_cancel_unknown_user_and_stale_request() {
    let fake = fake();
    let page = get(&authorize_url(&fake, &[])).await;
    let request_id = hidden_request_id(&page.text);
    let consent_url = format!("{}/oauth2/v2.0/authorize/consent", fake.authority("common"));

    let stranger =
        post_form(&consent_url, &[("request_id", &request_id), ("user", "eve@contoso.com"), ("action", "accept")])
            .await;
    assert_eq!(stranger.status, StatusCode::BAD_REQUEST);
    assert!(stranger.text.contains("AADSTS50034"));
    assert_eq!(fake.pending_browser().len(), 1, "a mistyped user leaves the request pending");

    let cancel = post_form(&consent_url, &[("request_id", &request_id), ("action", "cancel")]).await;
    assert_eq!(cancel.status, StatusCode::FOUND);
    assert_eq!(query_of(&cancel.location())["error"], "access_denied");

    let stale = post_form(&consent_url, &[("request_id", &request_id), ("user", ALICE), ("action", "accept")]).await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST);
    assert!(stale.header("location").is_none());
}
