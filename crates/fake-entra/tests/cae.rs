//! Continuous access evaluation: the `claims` parameter on every leg, and Graph's claims challenge for
//! CAE-capable tokens issued before a policy change or a revocation.

mod support;

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fake_entra::FakeEntra;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::*;

const CP1: &str = r#"{"access_token":{"xms_cc":{"values":["cp1"]}}}"#;

fn me_url(fake: &FakeEntra) -> String {
    format!("{}/v1.0/me", fake.base_url())
}

/// A device-code sign-in whose devicecode request carried `claims` (the poll carries none).
async fn device_sign_in_with(fake: &FakeEntra, user: &str, claims: Option<&str>) -> Value {
    let mut form = vec![("client_id", CLIENT), ("scope", GRAPH_SCOPES)];
    if let Some(claims) = claims {
        form.push(("claims", claims));
    }
    let flow = post_form(&format!("{}/oauth2/v2.0/devicecode", fake.authority("common")), &form).await.json();
    fake.approve_device(flow["user_code"].as_str().unwrap(), user).unwrap();
    let reply = poll_device(fake, CLIENT, flow["device_code"].as_str().unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

async fn refresh_with(fake: &FakeEntra, refresh_token: &str, claims: &str) -> Reply {
    token(
        fake,
        &[
            ("grant_type", "refresh_token"),
            ("client_id", CLIENT),
            ("refresh_token", refresh_token),
            ("scope", GRAPH_SCOPES),
            ("claims", claims),
        ],
    )
    .await
}

fn at(body: &Value) -> &str {
    body["access_token"].as_str().unwrap()
}

/// Checks the whole CAE challenge and returns the decoded claims JSON.
fn assert_challenge(fake: &FakeEntra, reply: &Reply, code: &str) -> Value {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    let header = reply.header("www-authenticate").unwrap();
    let encoded = header.split("claims=\"").nth(1).and_then(|rest| rest.strip_suffix('"')).unwrap();
    assert_eq!(
        header,
        format!(
            "Bearer realm=\"\", authorization_uri=\"{}/common/oauth2/authorize\", error=\"insufficient_claims\", \
             claims=\"{encoded}\"",
            fake.base_url()
        )
    );
    // Standard alphabet with padding: the engine refuses anything else.
    let decoded: Value = serde_json::from_slice(&STANDARD.decode(encoded).unwrap()).unwrap();
    let body = reply.json();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(
        body["error"]["message"],
        format!("Continuous access evaluation resulted in challenge with result: InteractionRequired and code: {code}")
    );
    assert!(body["error"]["innerError"]["request-id"].is_string());
    decoded
}

fn nbf_of(claims: &Value) -> u64 {
    assert_eq!(claims["access_token"]["nbf"]["essential"], true, "{claims}");
    assert_eq!(claims.as_object().unwrap().len(), 1, "{claims}");
    claims["access_token"]["nbf"]["value"].as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn policy_change_challenges_a_cae_token_and_a_refresh_answers_it() {
    let fake = fake();
    let first = device_sign_in_with(&fake, ALICE, Some(CP1)).await;
    assert_eq!(get_bearer(&me_url(&fake), at(&first)).await.status, StatusCode::OK);
    let issued = claims(at(&first))["iat"].as_u64().unwrap();

    fake.advance_clock(Duration::from_secs(100));
    fake.change_policy(ALICE).unwrap();
    let challenge =
        assert_challenge(&fake, &get_bearer(&me_url(&fake), at(&first)).await, "TokenCreatedWithOutdatedPolicies");
    let nbf = nbf_of(&challenge);
    assert!(nbf >= issued + 100, "the event is on the fake's clock: nbf {nbf}, token iat {issued}");
    assert_eq!(fake.stats().graph.challenges, 1);

    // The refresh token survives a policy change; the answer merges the challenge with cp1.
    let mut merged = challenge.clone();
    merged["access_token"]["xms_cc"] = json!({"values": ["cp1"]});
    let merged = merged.to_string();
    let reply = refresh_with(&fake, first["refresh_token"].as_str().unwrap(), &merged).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let second = reply.json();
    assert!(claims(at(&second))["iat"].as_u64().unwrap() >= nbf);
    assert_eq!(get_bearer(&me_url(&fake), at(&second)).await.status, StatusCode::OK);
    assert_eq!(
        get_bearer(&me_url(&fake), at(&first)).await.status,
        StatusCode::UNAUTHORIZED,
        "the old one stays outdated"
    );

    let stats = fake.stats();
    assert_eq!(stats.token.cae_capable, 1, "only the refresh declared cp1 at the token endpoint");
    assert_eq!(stats.token.with_challenge, 1);
    assert_eq!(stats.last_token_claims.as_deref(), Some(merged.as_str()));
    assert_eq!(stats.graph.challenges, 2);
}

#[tokio::test]
async fn a_token_issued_right_after_the_event_is_not_challenged() {
    let fake = fake();
    let first = device_sign_in_with(&fake, ALICE, Some(CP1)).await;
    fake.change_policy(ALICE).unwrap();
    // Very likely within the event's own second: ordering uses the full-precision clock.
    let second = refresh_with(&fake, first["refresh_token"].as_str().unwrap(), CP1).await.json();
    assert_eq!(get_bearer(&me_url(&fake), at(&second)).await.status, StatusCode::OK);
    assert_eq!(get_bearer(&me_url(&fake), at(&first)).await.status, StatusCode::UNAUTHORIZED);
    let new_sign_in = device_sign_in_with(&fake, ALICE, Some(CP1)).await;
    assert_eq!(get_bearer(&me_url(&fake), at(&new_sign_in)).await.status, StatusCode::OK);
    assert_eq!(fake.stats().token.with_challenge, 0);
    assert_eq!(fake.stats().last_token_claims, None, "the last request, the device poll, carried no claims");
}

#[tokio::test]
async fn revocation_challenges_cae_tokens_and_kills_refresh_tokens() {
    let fake = fake();
    let page = get(&authorize_url(&fake, &[("claims", r#"{"access_token":{"xms_cc":{"values":["CP1"]}}}"#)])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let code = query_of(&fake.approve_browser("st-123", ALICE).unwrap())["code"].clone();
    let body = redeem(&fake, &code, &[]).await.json();
    assert_eq!(get_bearer(&me_url(&fake), at(&body)).await.status, StatusCode::OK);

    assert_eq!(fake.revoke_user(ALICE).unwrap(), 1);
    let reply = get_bearer(&me_url(&fake), at(&body)).await;
    let challenge = assert_challenge(&fake, &reply, "TokenIssuedBeforeRevocationTimestamp");
    assert!(nbf_of(&challenge) >= claims(at(&body))["iat"].as_u64().unwrap());
    let refused = refresh_with(&fake, body["refresh_token"].as_str().unwrap(), CP1).await;
    assert_entra_error(&refused, 400, "invalid_grant", 50173);
}

#[tokio::test]
async fn tokens_without_cp1_are_not_challenged() {
    let fake = fake();
    let plain = device_sign_in_with(&fake, ALICE, None).await;
    let cp2 = device_sign_in_with(&fake, ALICE, Some(r#"{"access_token":{"xms_cc":{"values":["cp2"]}}}"#)).await;
    let cae = device_sign_in_with(&fake, ALICE, Some(CP1)).await;
    fake.change_policy(ALICE).unwrap();
    fake.revoke_user(ALICE).unwrap();
    assert_eq!(get_bearer(&me_url(&fake), at(&plain)).await.status, StatusCode::OK);
    assert_eq!(get_bearer(&me_url(&fake), at(&cp2)).await.status, StatusCode::OK);
    assert_eq!(get_bearer(&me_url(&fake), at(&cae)).await.status, StatusCode::UNAUTHORIZED);
    // Non-CAE tokens still end at their expiry, with the ordinary 401.
    fake.advance_clock(Duration::from_secs(3600));
    let expired = get_bearer(&me_url(&fake), at(&plain)).await;
    assert_eq!(expired.status, StatusCode::UNAUTHORIZED);
    assert!(expired.header("www-authenticate").unwrap().contains("client_id="));
}

#[tokio::test]
async fn events_touch_only_their_user() {
    let fake = fake();
    let alice = device_sign_in_with(&fake, ALICE, Some(CP1)).await;
    let bob = device_sign_in_with(&fake, BOB, Some(CP1)).await;
    let changed = post_json(&format!("{}/_control/change-policy", fake.base_url()), json!({"user": BOB})).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(get_bearer(&me_url(&fake), at(&alice)).await.status, StatusCode::OK);
    assert_challenge(&fake, &get_bearer(&me_url(&fake), at(&bob)).await, "TokenCreatedWithOutdatedPolicies");
    let unknown = fake.change_policy("nobody@contoso.com").unwrap_err();
    assert_eq!(unknown, fake_entra::ControlError::UnknownUser("nobody@contoso.com".to_owned()));
}

#[tokio::test]
async fn the_redeem_or_poll_claims_count_as_well() {
    let fake = fake();
    let code = browser_code(&fake, ALICE).await;
    let redeemed = redeem(&fake, &code, &[("claims", CP1)]).await.json();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let polled = token(
        &fake,
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", CLIENT),
            ("device_code", flow["device_code"].as_str().unwrap()),
            ("claims", CP1),
        ],
    )
    .await
    .json();
    let refreshed_plain =
        refresh(&fake, CLIENT, redeemed["refresh_token"].as_str().unwrap(), GRAPH_SCOPES).await.json();
    assert_eq!(fake.stats().token.cae_capable, 2);
    fake.change_policy(ALICE).unwrap();
    assert_eq!(get_bearer(&me_url(&fake), at(&redeemed)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get_bearer(&me_url(&fake), at(&polled)).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        get_bearer(&me_url(&fake), at(&refreshed_plain)).await.status,
        StatusCode::OK,
        "a refresh without cp1 is not CAE"
    );
}

#[tokio::test]
async fn the_challenge_applies_on_every_graph_route() {
    let fake = fake();
    let flow = post_form(
        &format!("{}/oauth2/v2.0/devicecode", fake.authority("common")),
        &[("client_id", CLIENT), ("scope", "Mail.Read offline_access"), ("claims", CP1)],
    )
    .await
    .json();
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let body = poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await.json();
    let attachment = fake.add_attachment(ALICE, 10).unwrap();
    let url = format!(
        "{}/v1.0/me/messages/{}/attachments/{}/$value",
        fake.base_url(),
        attachment.message_id,
        attachment.attachment_id
    );
    assert_eq!(get_bearer(&url, at(&body)).await.status, StatusCode::OK);
    fake.change_policy(ALICE).unwrap();
    assert_challenge(&fake, &get_bearer(&url, at(&body)).await, "TokenCreatedWithOutdatedPolicies");
}

#[tokio::test]
async fn malformed_claims_are_refused_on_every_leg() {
    let fake = fake();
    let rt = device_sign_in_with(&fake, ALICE, None).await["refresh_token"].as_str().unwrap().to_owned();
    for bad in ["cp1", "[\"cp1\"]", "\"x\"", "{\"access_token\":[]}", "{"] {
        let reply = refresh_with(&fake, &rt, bad).await;
        let body = assert_entra_error(&reply, 400, "invalid_request", 90100);
        assert!(body["error_description"].as_str().unwrap().contains("'claims'"), "{bad}");
        let device = post_form(
            &format!("{}/oauth2/v2.0/devicecode", fake.authority("common")),
            &[("client_id", CLIENT), ("scope", GRAPH_SCOPES), ("claims", bad)],
        )
        .await;
        assert_entra_error(&device, 400, "invalid_request", 90100);
        let redirect = get(&authorize_url(&fake, &[("claims", bad)])).await;
        assert_eq!(redirect.status, StatusCode::FOUND, "{bad}");
        let query = query_of(&redirect.location());
        assert_eq!(query["error"], "invalid_request");
        assert!(query["error_description"].starts_with("AADSTS90100: "), "{query:?}");
        assert_eq!(query["state"], "st-123");
    }
    assert!(fake.pending_browser().is_empty());
    let stats = fake.stats();
    assert_eq!(stats.token.cae_capable, 0);
    assert_eq!(stats.token_errors["invalid_request"], 5);
    assert_eq!(stats.last_token_claims.as_deref(), Some("{"));
}
