//! Device authorization grant: the flow start, polling rules and the /devicelogin page.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use support::*;

#[tokio::test]
async fn devicecode_response_has_entra_shape() {
    let fake = builder()
        .device_interval(Duration::from_secs(1))
        .device_code_lifetime(Duration::from_secs(900))
        .start()
        .unwrap();
    let reply = post_form(
        &format!("{}/oauth2/v2.0/devicecode", fake.authority("organizations")),
        &[("client_id", CLIENT), ("scope", GRAPH_SCOPES), ("client_info", "1")],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_no_store(&reply);
    let body = reply.json();
    let uri = format!("{}/devicelogin", fake.base_url());
    let code = body["user_code"].as_str().unwrap();
    assert_eq!(body["verification_uri"], uri);
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["interval"], 1);
    assert!(body["device_code"].as_str().unwrap().len() > 40);
    assert!(body.get("verification_uri_complete").is_none());
    assert_eq!(
        body["message"],
        format!("To sign in, use a web browser to open the page {uri} and enter the code {code} to authenticate.")
    );
    assert_eq!(fake.pending_device_codes()[0].user_code, code);
}

#[tokio::test]
async fn happy_path_pending_then_tokens_then_single_use() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();

    let pending = poll_device(&fake, CLIENT, device_code).await;
    assert_entra_error(&pending, 400, "authorization_pending", 70016);

    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let done = poll_device(&fake, CLIENT, device_code).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert_no_store(&done);
    let body = done.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "User.Read profile openid offline_access");
    assert!(body["refresh_token"].is_string() && body["id_token"].is_string() && body["access_token"].is_string());
    assert!(fake.pending_device_codes().is_empty());

    let again = poll_device(&fake, CLIENT, device_code).await;
    assert_entra_error(&again, 400, "invalid_grant", 70000);
}

#[tokio::test]
async fn polling_faster_than_interval_gets_slow_down_and_interval_grows() {
    let fake = builder().device_interval(Duration::from_secs(1)).start().unwrap();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();

    // The first poll may come at once; the next one inside the interval is too fast.
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "authorization_pending", 70016);
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "slow_down", 50196);

    // The interval is now 6 s: waiting the original 1 s (+ margin) is still too soon...
    fake.advance_clock(Duration::from_secs(2));
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "slow_down", 50196);
    // ...and after that second slow_down it is 11 s.
    fake.advance_clock(Duration::from_secs(7));
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "slow_down", 50196);
    fake.advance_clock(Duration::from_secs(17));
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "authorization_pending", 70016);
}

#[tokio::test]
async fn declined_flow_is_authorization_declined() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    fake.decline_device(flow["user_code"].as_str().unwrap()).unwrap();
    let reply = poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await;
    assert_entra_error(&reply, 400, "authorization_declined", 70000);
    // A declined flow cannot be approved afterwards.
    let late = fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE);
    assert!(matches!(late, Err(fake_entra::ControlError::AlreadyHandled(_))));
}

#[tokio::test]
async fn expired_device_code_is_expired_token() {
    let fake = builder().device_code_lifetime(Duration::from_secs(60)).start().unwrap();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();
    fake.advance_clock(Duration::from_secs(59));
    assert_entra_error(&poll_device(&fake, CLIENT, device_code).await, 400, "authorization_pending", 70016);
    fake.advance_clock(Duration::from_secs(2));
    let reply = poll_device(&fake, CLIENT, device_code).await;
    let body = assert_entra_error(&reply, 400, "expired_token", 70020);
    assert!(body["error_description"].as_str().unwrap().starts_with("AADSTS70020: This device code has expired"));
    let approve = fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE);
    assert!(matches!(approve, Err(fake_entra::ControlError::ExpiredUserCode(_))));
}

#[tokio::test]
async fn unknown_device_code_is_bad_verification_code() {
    let fake = fake();
    let reply = poll_device(&fake, CLIENT, "DAQABIQEAAADnot-a-real-code").await;
    assert_entra_error(&reply, 400, "bad_verification_code", 70018);
}

#[tokio::test]
async fn polling_with_another_client_is_refused_but_the_right_client_succeeds() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    assert_entra_error(&poll_device(&fake, OTHER_CLIENT, device_code).await, 400, "invalid_grant", 70000);
    assert_eq!(poll_device(&fake, CLIENT, device_code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn polling_under_another_tenant_is_refused() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let url = format!("{}/oauth2/v2.0/token", fake.authority(fake_entra::TENANT_DOMAIN));
    let form = [("grant_type", DEVICE_GRANT), ("client_id", CLIENT), ("device_code", device_code)];
    assert_entra_error(&post_form(&url, &form).await, 400, "invalid_grant", 700005);
    assert_eq!(poll_device(&fake, CLIENT, device_code).await.status, StatusCode::OK);
}

#[tokio::test]
async fn multi_resource_device_request_is_invalid_scope() {
    let fake = fake();
    let reply = post_form(
        &format!("{}/oauth2/v2.0/devicecode", fake.authority("common")),
        &[("client_id", CLIENT), ("scope", "User.Read https://outlook.office.com/IMAP.AccessAsUser.All")],
    )
    .await;
    assert_entra_error(&reply, 400, "invalid_scope", 28000);
}

#[tokio::test]
async fn devicelogin_page_approves_with_the_typed_code() {
    let fake = fake();
    let page = get(&format!("{}/devicelogin", fake.base_url())).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.text.contains("name=\"user_code\"") && page.text.contains("name=\"user\""));

    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let typed = flow["user_code"].as_str().unwrap().to_lowercase();
    let url = format!("{}/devicelogin", fake.base_url());
    let wrong = post_form(&url, &[("user_code", "NOPE"), ("user", ALICE), ("action", "approve")]).await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    let done = post_form(&url, &[("user_code", &typed), ("user", BOB), ("action", "approve")]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.text);
    assert!(done.text.contains("You have signed in"));

    let tokens = poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await.json();
    assert_eq!(claims(tokens["access_token"].as_str().unwrap())["upn"], BOB);
}

#[tokio::test]
async fn devicelogin_page_declines() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let url = format!("{}/devicelogin", fake.base_url());
    let done = post_form(&url, &[("user_code", flow["user_code"].as_str().unwrap()), ("action", "decline")]).await;
    assert_eq!(done.status, StatusCode::OK);
    let reply = poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await;
    assert_entra_error(&reply, 400, "authorization_declined", 70000);
}

#[tokio::test]
async fn control_routes_approve_and_refuse_unknowns() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let code = flow["user_code"].as_str().unwrap();
    let base = fake.base_url();

    let pending = get(&format!("{base}/_control/device/pending")).await.json();
    assert_eq!(pending[0]["user_code"], code);

    let unknown_user =
        post_json(&format!("{base}/_control/device/approve"), json!({"user_code": code, "user": "eve@contoso.com"}))
            .await;
    assert_eq!(unknown_user.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown_user.json()["error"], "unknown_user");

    let unknown_code =
        post_json(&format!("{base}/_control/device/approve"), json!({"user_code": "ZZZZZZZZZ", "user": ALICE})).await;
    assert_eq!(unknown_code.status, StatusCode::NOT_FOUND);

    let ok = post_json(&format!("{base}/_control/device/approve"), json!({"user_code": code, "user": ALICE})).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text);
    assert_eq!(poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await.status, StatusCode::OK);
}
