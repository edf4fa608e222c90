//! Graph's `GET /v1.0/me`: which tokens it accepts and how it refuses the rest.

mod support;

use std::time::Duration;

use reqwest::StatusCode;
use support::*;

fn me_url(fake: &fake_entra::FakeEntra) -> String {
    format!("{}/v1.0/me", fake.base_url())
}

fn assert_graph_401(reply: &Reply, message: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{}", reply.text);
    assert_eq!(
        reply.header("www-authenticate"),
        Some(
            "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", \
             client_id=\"00000003-0000-0000-c000-000000000000\""
        )
    );
    let body = reply.json();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    assert_eq!(body["error"]["message"], message);
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

#[tokio::test]
async fn accepts_a_graph_token_with_user_read() {
    let fake = fake();
    let at = device_sign_in(&fake, CLIENT, BOB, GRAPH_SCOPES).await["access_token"].as_str().unwrap().to_owned();
    let reply = get_bearer(&me_url(&fake), &at).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let me = reply.json();
    let bob = fake.user(BOB).unwrap();
    assert_eq!(me["id"], bob.oid);
    assert_eq!(me["userPrincipalName"], BOB);
    assert_eq!(me["displayName"], "Bob Smith");
    assert_eq!(me["givenName"], "Bob");
    assert_eq!(me["surname"], "Smith");
    assert_eq!(me["@odata.context"], "https://graph.microsoft.com/v1.0/$metadata#users/$entity");
}

#[tokio::test]
async fn missing_and_unknown_tokens_are_401() {
    let fake = fake();
    assert_graph_401(&get(&me_url(&fake)).await, "Access token is empty.");
    assert_graph_401(
        &get_bearer(&me_url(&fake), "opaque-token").await,
        "CompactToken parsing failed with error code: 80049217",
    );
    assert_graph_401(
        &get_bearer(&me_url(&fake), "eyJ0.eyJ1.c2ln").await,
        "Access token validation failure. Invalid signature.",
    );
}

#[tokio::test]
async fn expired_token_is_401() {
    let fake = fake();
    fake.set_access_token_lifetime(Duration::from_secs(60));
    let at = device_sign_in(&fake, CLIENT, ALICE, GRAPH_SCOPES).await["access_token"].as_str().unwrap().to_owned();
    assert_eq!(get_bearer(&me_url(&fake), &at).await.status, StatusCode::OK);
    fake.advance_clock(Duration::from_secs(61));
    assert_graph_401(&get_bearer(&me_url(&fake), &at).await, "Lifetime validation failed, the token is expired.");
}

#[tokio::test]
async fn token_for_another_audience_is_401() {
    let fake = fake();
    let rt = device_sign_in(&fake, CLIENT, ALICE, GRAPH_SCOPES).await["refresh_token"].as_str().unwrap().to_owned();
    fake.grant_consent(ALICE, CLIENT, &["api://backend/read"]).unwrap();
    let api = refresh(&fake, CLIENT, &rt, "api://backend/read").await.json();
    let at = api["access_token"].as_str().unwrap();
    assert_eq!(claims(at)["aud"], "api://backend");
    assert_graph_401(&get_bearer(&me_url(&fake), at).await, "Access token validation failure. Invalid audience.");
}

#[tokio::test]
async fn token_without_a_user_permission_is_403() {
    let fake = fake();
    let body = device_sign_in(&fake, CLIENT, ALICE, "Mail.Read openid").await;
    let reply = get_bearer(&me_url(&fake), body["access_token"].as_str().unwrap()).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(reply.json()["error"]["code"], "Authorization_RequestDenied");

    for scope in ["User.ReadBasic.All", "Directory.Read.All"] {
        let body = device_sign_in(&fake, CLIENT, ALICE, scope).await;
        let reply = get_bearer(&me_url(&fake), body["access_token"].as_str().unwrap()).await;
        assert_eq!(reply.status, StatusCode::OK, "{scope}");
    }
}

#[tokio::test]
async fn beta_me_answers_like_v1_with_its_own_context() {
    let fake = fake();
    let at = device_sign_in(&fake, CLIENT, ALICE, GRAPH_SCOPES).await["access_token"].as_str().unwrap().to_owned();
    let beta = get_bearer(&format!("{}/beta/me", fake.base_url()), &at).await.json();
    assert_eq!(beta["id"], fake.user(ALICE).unwrap().oid);
    assert_eq!(beta["@odata.context"], "https://graph.microsoft.com/beta/$metadata#users/$entity");
    assert_graph_401(&get(&format!("{}/beta/me", fake.base_url())).await, "Access token is empty.");
    let stats = fake.stats();
    assert_eq!((stats.me, stats.graph.requests, stats.graph.by_route["me"]), (2, 2, 2));
}
