//! Refresh tokens, consent, scopes and the shape of token responses.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

async fn signed_in(fake: &fake_entra::FakeEntra) -> String {
    device_sign_in(fake, CLIENT, ALICE, GRAPH_SCOPES).await["refresh_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn refresh_rotates_and_the_old_token_stays_valid() {
    let fake = fake();
    let first = signed_in(&fake).await;
    let reply = refresh(&fake, CLIENT, &first, GRAPH_SCOPES).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_no_store(&reply);
    let second = reply.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(refresh(&fake, CLIENT, &first, GRAPH_SCOPES).await.status, StatusCode::OK);
    assert_eq!(refresh(&fake, CLIENT, &second, GRAPH_SCOPES).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoked_refresh_token_is_50173_and_a_new_sign_in_works() {
    let fake = fake();
    let old = signed_in(&fake).await;
    let rotated = refresh(&fake, CLIENT, &old, GRAPH_SCOPES).await.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(fake.revoke_user(ALICE).unwrap(), 2);
    assert_entra_error(&refresh(&fake, CLIENT, &old, GRAPH_SCOPES).await, 400, "invalid_grant", 50173);
    assert_entra_error(&refresh(&fake, CLIENT, &rotated, GRAPH_SCOPES).await, 400, "invalid_grant", 50173);
    let fresh = signed_in(&fake).await;
    assert_eq!(refresh(&fake, CLIENT, &fresh, GRAPH_SCOPES).await.status, StatusCode::OK);
}

#[tokio::test]
async fn revoke_over_http() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    let reply = post_json(&format!("{}/_control/revoke", fake.base_url()), json!({"user": ALICE})).await;
    assert_eq!(reply.json(), json!({"revoked": 1}));
    assert_entra_error(&refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await, 400, "invalid_grant", 50173);
}

#[tokio::test]
async fn inactive_refresh_token_expires_with_700082() {
    let fake = builder().refresh_token_lifetime(Duration::from_secs(100)).start().unwrap();
    let rt = signed_in(&fake).await;
    // Use resets the inactivity clock.
    fake.advance_clock(Duration::from_secs(90));
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
    fake.advance_clock(Duration::from_secs(90));
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
    fake.advance_clock(Duration::from_secs(101));
    let body = assert_entra_error(&refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await, 400, "invalid_grant", 700082);
    assert_eq!(body["suberror"], "bad_token");
    assert!(body["error_description"].as_str().unwrap().contains("was inactive for 0.00:01:40"));
}

#[tokio::test]
async fn refresh_token_is_bound_to_its_client() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    fake.grant_consent(ALICE, OTHER_CLIENT, &["User.Read"]).unwrap();
    assert_entra_error(&refresh(&fake, OTHER_CLIENT, &rt, GRAPH_SCOPES).await, 400, "invalid_grant", 70000);
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_refresh_token_is_invalid_grant() {
    let fake = fake();
    assert_entra_error(&refresh(&fake, CLIENT, "1.AXoAgarbage", GRAPH_SCOPES).await, 400, "invalid_grant", 9002313);
}

#[tokio::test]
async fn unconsented_scope_is_consent_required_until_granted() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    let reply = refresh(&fake, CLIENT, &rt, "Mail.Read offline_access").await;
    let body = assert_entra_error(&reply, 400, "invalid_grant", 65001);
    assert_eq!(body["suberror"], "consent_required");
    let other_resource = refresh(&fake, CLIENT, &rt, "https://outlook.office.com/IMAP.AccessAsUser.All").await;
    assert_entra_error(&other_resource, 400, "invalid_grant", 65001);

    fake.grant_consent(ALICE, CLIENT, &["https://graph.microsoft.com/Mail.Read"]).unwrap();
    let granted = refresh(&fake, CLIENT, &rt, "Mail.Read offline_access").await;
    assert_eq!(granted.status, StatusCode::OK, "{}", granted.text);
    assert_eq!(granted.json()["scope"], "Mail.Read offline_access");
}

#[tokio::test]
async fn consent_over_http() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    let url = format!("{}/_control/consent", fake.base_url());
    let reply = post_json(&url, json!({"user": ALICE, "client_id": CLIENT, "scopes": ["api://backend/read"]})).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let api = refresh(&fake, CLIENT, &rt, "api://backend/read offline_access").await;
    assert_eq!(api.status, StatusCode::OK, "{}", api.text);
    // Non-Graph tokens list only their own, qualified scopes.
    assert_eq!(api.json()["scope"], "api://backend/read");
    let unknown = post_json(&url, json!({"user": ALICE, "client_id": "nope", "scopes": ["x"]})).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn two_resources_in_one_token_request_is_28000() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    fake.grant_consent(ALICE, CLIENT, &["https://outlook.office.com/IMAP.AccessAsUser.All"]).unwrap();
    let both = refresh(&fake, CLIENT, &rt, "User.Read https://outlook.office.com/IMAP.AccessAsUser.All").await;
    let body = assert_entra_error(&both, 400, "invalid_scope", 28000);
    assert!(body["error_description"].as_str().unwrap().contains("more than one resource"));
    let one = refresh(&fake, CLIENT, &rt, "https://outlook.office.com/IMAP.AccessAsUser.All offline_access").await;
    assert_eq!(one.status, StatusCode::OK);
}

#[tokio::test]
async fn default_scope_expands_to_consented_and_cannot_be_mixed() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    fake.grant_consent(ALICE, CLIENT, &["Mail.Read"]).unwrap();
    let mixed = refresh(&fake, CLIENT, &rt, "https://graph.microsoft.com/.default Mail.Read").await;
    assert_entra_error(&mixed, 400, "invalid_scope", 70011);
    let default = refresh(&fake, CLIENT, &rt, "https://graph.microsoft.com/.default offline_access").await;
    assert_eq!(default.status, StatusCode::OK, "{}", default.text);
    let body = default.json();
    assert_eq!(body["scope"], "Mail.Read User.Read offline_access");
    assert_eq!(claims(body["access_token"].as_str().unwrap())["scp"], "Mail.Read User.Read");
    let nothing = refresh(&fake, CLIENT, &rt, "api://nothing/.default").await;
    assert_entra_error(&nothing, 400, "invalid_grant", 65001);
}

#[tokio::test]
async fn short_and_qualified_graph_scopes_are_equivalent() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    let reply = refresh(&fake, CLIENT, &rt, "https://graph.microsoft.com/User.Read openid").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    assert_eq!(reply.json()["scope"], "User.Read openid");
}

#[tokio::test]
async fn mfa_rule_blocks_one_resource_until_interactive_sign_in() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    fake.grant_consent(ALICE, CLIENT, &["api://backend/read"]).unwrap();
    fake.require_mfa(ALICE, "https://graph.microsoft.com", true).unwrap();

    let blocked = refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await;
    let body = assert_entra_error(&blocked, 400, "interaction_required", 50076);
    assert_eq!(body["suberror"], "basic_action");
    let claims: Value = serde_json::from_str(body["claims"].as_str().unwrap()).unwrap();
    assert_eq!(claims["access_token"]["capolids"]["essential"], true);
    // The same refresh token still works for another resource.
    assert_eq!(refresh(&fake, CLIENT, &rt, "api://backend/read").await.status, StatusCode::OK);

    // An interactive sign-in satisfies the rule; the old refresh token then works again too.
    signed_in(&fake).await;
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
}

#[tokio::test]
async fn mfa_over_http() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    let url = format!("{}/_control/mfa", fake.base_url());
    post_json(&url, json!({"user": ALICE, "resource": "https://graph.microsoft.com", "required": true})).await;
    assert_entra_error(&refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await, 400, "interaction_required", 50076);
    post_json(&url, json!({"user": ALICE, "resource": "https://graph.microsoft.com", "required": false})).await;
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
}

#[tokio::test]
async fn offline_access_governs_refresh_token_and_openid_the_id_token() {
    let fake = fake();
    let bare = device_sign_in(&fake, CLIENT, ALICE, "User.Read").await;
    assert!(bare.get("refresh_token").is_none() && bare.get("id_token").is_none());
    assert_eq!(bare["scope"], "User.Read");
    let full = device_sign_in(&fake, CLIENT, ALICE, "User.Read openid offline_access").await;
    assert!(full["refresh_token"].is_string() && full["id_token"].is_string());
    // Without `profile` the id_token carries no oid/name/preferred_username.
    let id = claims(full["id_token"].as_str().unwrap());
    assert!(id.get("oid").is_none() && id.get("preferred_username").is_none());
}

#[tokio::test]
async fn token_response_fields_and_claims() {
    let fake = fake();
    let alice = fake.user(ALICE).unwrap();
    let flow = start_device(&fake, CLIENT, "User.Read openid profile email offline_access").await;
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let reply = token(
        &fake,
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLIENT),
            ("device_code", flow["device_code"].as_str().unwrap()),
            ("code", flow["device_code"].as_str().unwrap()),
            ("client_info", "1"),
            ("claims", r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#),
        ],
    )
    .await;
    let body = reply.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3599);
    assert_eq!(body["ext_expires_in"], 3599);
    assert_eq!(body["scope"], "User.Read profile openid email offline_access");

    let info: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body["client_info"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(info, json!({"uid": alice.oid, "utid": fake_entra::TENANT_ID}));

    let id_token = body["id_token"].as_str().unwrap();
    let header: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(id_token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, json!({"typ": "JWT", "alg": "RS256", "kid": "fake"}));
    let id = claims(id_token);
    assert_eq!(id["aud"], CLIENT);
    assert_eq!(id["oid"], alice.oid);
    assert_eq!(id["tid"], fake_entra::TENANT_ID);
    assert_eq!(id["preferred_username"], ALICE);
    assert_eq!(id["name"], "Alice");
    assert_eq!(id["email"], ALICE);
    assert_eq!(id["ver"], "2.0");
    assert_eq!(id["iss"], format!("https://login.microsoftonline.com/{}/v2.0", fake_entra::TENANT_ID));
    assert!(id["exp"].as_u64().unwrap() > id["iat"].as_u64().unwrap());

    let at = claims(body["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], "00000003-0000-0000-c000-000000000000");
    assert_eq!(at["scp"], "User.Read");
    assert_eq!(at["oid"], alice.oid);
    assert_eq!(at["upn"], ALICE);

    // Without client_info=1 there is no client_info.
    let rt = body["refresh_token"].as_str().unwrap();
    assert!(refresh(&fake, CLIENT, rt, GRAPH_SCOPES).await.json().get("client_info").is_none());
}

#[tokio::test]
async fn access_token_lifetime_is_controllable() {
    let fake = fake();
    let rt = signed_in(&fake).await;
    fake.set_access_token_lifetime(Duration::from_secs(60));
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.json()["expires_in"], 60);
    let url = format!("{}/_control/access-token-lifetime", fake.base_url());
    post_json(&url, json!({"seconds": 5})).await;
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.json()["expires_in"], 5);
}
