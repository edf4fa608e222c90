//! Continuous Access Evaluation end to end: a profile with `cae = true` declares `cp1`, the stand-in challenges
//! its tokens after a policy change or a revocation, and the proxy meets the challenge with one claims-driven
//! refresh (or a sign-in carrying the claims) and one retry.

mod support;

use base64::Engine as _;
use graphbroker_client::{ErrorCode, GraphRequest, TokenQuery};
use graphbroker_protocol::proxy;
use hyper::Method;
use support::*;

fn cae_config(fake: &fake_entra::FakeEntra, test: &str) -> String {
    config(fake, "memory", &unique_service(test), "cae = true")
}

fn me() -> GraphRequest {
    GraphRequest::new(Method::GET, "/v1.0/me")
}

/// The acceptance test: a call through the proxy, the stand-in revokes the session's standing (a policy
/// change), and the next call succeeds after exactly one claims-driven refresh.
#[tokio::test]
async fn after_a_policy_change_the_next_call_succeeds_after_exactly_one_claims_refresh() {
    let fake = fake();
    let daemon = Daemon::start(&cae_config(&fake, "cae-policy"));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    assert!(fake.stats().token.cae_capable >= 1, "the sign-in declared cp1");
    assert_eq!(client.graph(me()).await.expect("first call").status(), 200);
    let before = fake.stats();

    fake.change_policy(ALICE).unwrap();
    let response = client.graph(me()).await.expect("second call");
    assert_eq!(response.status(), 200, "the proxy met the challenge");
    let after = fake.stats();
    assert_eq!(after.graph.challenges - before.graph.challenges, 1, "Graph challenged once");
    assert_eq!(after.token.refresh_token - before.token.refresh_token, 1, "exactly one refresh");
    assert_eq!(after.token.with_challenge - before.token.with_challenge, 1, "and it carried the challenge");
    assert_eq!(after.me - before.me, 2, "the challenged call and its one retry");
    // The claims sent merge the challenge's nbf with the cp1 capability, as MSAL merges them.
    let claims: serde_json::Value = serde_json::from_str(after.last_token_claims.as_deref().unwrap()).unwrap();
    assert!(claims["access_token"]["nbf"]["essential"].as_bool().unwrap(), "{claims}");
    assert_eq!(claims["access_token"]["xms_cc"]["values"][0], "cp1", "{claims}");

    // The renewed token is cached: the next call goes straight through.
    assert_eq!(client.graph(me()).await.unwrap().status(), 200);
    assert_eq!(fake.stats().token.refresh_token, after.token.refresh_token);
}

/// Single flight through the proxy: many calls challenged at once cost one refresh.
#[tokio::test]
async fn concurrent_challenged_calls_share_one_refresh() {
    let fake = fake();
    let daemon = Daemon::start(&cae_config(&fake, "cae-flight"));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let before = fake.stats();
    fake.change_policy(ALICE).unwrap();
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.graph(me()).await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap().expect("proxied"), 200);
    }
    let after = fake.stats();
    assert_eq!(after.token.with_challenge - before.token.with_challenge, 1, "one refresh answered all eight");
    assert_eq!(after.token.refresh_token - before.token.refresh_token, 1);
}

/// After a revocation the claims refresh fails (AADSTS50173): the proxy answers `signin_required`, the sign-in
/// carries the claims, and once it is done calls succeed again.
#[tokio::test]
async fn after_a_revocation_the_call_asks_for_a_sign_in_with_the_claims() {
    let fake = fake();
    let daemon = Daemon::start(&cae_config(&fake, "cae-revoke"));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let before = fake.stats();
    fake.revoke_user(ALICE).unwrap();

    let error = client.graph(me()).await.expect_err("the session is gone");
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    let after = fake.stats();
    // One refresh (with the claims) was tried; the device sign-in's polls carry the claims as well.
    assert_eq!(after.token.refresh_token - before.token.refresh_token, 1, "one claims refresh was tried");
    assert!(after.token.with_challenge > before.token.with_challenge, "and it carried the challenge");
    assert_eq!(after.token_errors.get("invalid_grant").copied().unwrap_or(0), 1, "and refused as revoked");
    let code = device_code_of(&needing_signin(&client, &query("User.Read")).await);
    let pending = fake.pending_device_codes();
    assert_eq!(pending.len(), 1);
    fake.approve_device(&code, ALICE).unwrap();
    client.token(&with_wait("User.Read", 30)).await.expect("signed in again");
    let claims: serde_json::Value = serde_json::from_str(fake.stats().last_token_claims.as_deref().unwrap()).unwrap();
    assert!(claims["access_token"]["nbf"].is_object(), "the sign-in carried the challenge: {claims}");
    assert_eq!(client.graph(me()).await.expect("call after sign-in").status(), 200);
}

/// A body too large to replay is sent once: the challenge comes back marked `renewed`, and sending the call
/// again succeeds without another refresh.
#[tokio::test]
async fn a_challenged_large_upload_is_answered_renewed_and_goes_through_when_sent_again() {
    let fake = fake();
    let daemon = Daemon::start(&cae_config(&fake, "cae-upload"));
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &["Files.ReadWrite"]).unwrap();
    sign_in(&client, &fake, "Files.ReadWrite", ALICE).await;
    fake.change_policy(ALICE).unwrap();
    let upload = || {
        let mut request = GraphRequest::new(Method::PUT, "/v1.0/me/drive/root:/big.bin:/content");
        request.scopes = Some("Files.ReadWrite".into());
        let body = vec![7u8; 2 * 1024 * 1024];
        request.body = http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(
            http_body_util::Full::new(bytes::Bytes::from(body)),
            |never| match never {},
        ));
        request
    };
    let response = client.graph(upload()).await.expect("Graph's answer");
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()[proxy::CLAIMS_HEADER], "renewed");
    let refreshes = fake.stats().token.refresh_token;
    let response = client.graph(upload()).await.expect("sent again");
    assert_eq!(response.status(), 201);
    assert_eq!(fake.stats().token.refresh_token, refreshes, "the renewed token was cached");
    assert_eq!(fake.uploads().len(), 1, "only the second upload was accepted");
}

/// Tools that call Graph themselves pass the challenge to `token` (or `header`): base64 as Graph sends it, or
/// JSON; the token they get is accepted by Graph again.
#[tokio::test]
async fn token_and_header_accept_the_challenge_for_tools_that_call_graph_themselves() {
    let fake = fake();
    let daemon = Daemon::start(&cae_config(&fake, "cae-token"));
    let client = daemon.client();
    let old = sign_in(&client, &fake, "User.Read", ALICE).await.access_token;
    fake.change_policy(ALICE).unwrap();
    let http = reqwest::Client::new();
    let answer = http.get(format!("{}/v1.0/me", fake.base_url())).bearer_auth(&old).send().await.unwrap();
    assert_eq!(answer.status(), 401);
    let header = answer.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let base64_claims = header.split("claims=\"").nth(1).unwrap().trim_end_matches('"').to_owned();
    let json_claims =
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(&base64_claims).unwrap()).unwrap();

    let query = |claims: &str| TokenQuery { claims: Some(claims.to_owned()), ..support::query("User.Read") };
    let new = client.token(&query(&base64_claims)).await.expect("token with base64 claims").access_token;
    assert_ne!(new, old, "the cache was bypassed");
    let answer = http.get(format!("{}/v1.0/me", fake.base_url())).bearer_auth(&new).send().await.unwrap();
    assert_eq!(answer.status(), 200, "Graph accepts the new token");
    // The JSON form works the same (a tool cannot say which token was challenged, so it is a new refresh).
    let header_answer = client.header(&query(&json_claims)).await.expect("header with JSON claims");
    let new = header_answer.authorization.strip_prefix("Bearer ").unwrap().to_owned();
    let answer = http.get(format!("{}/v1.0/me", fake.base_url())).bearer_auth(&new).send().await.unwrap();
    assert_eq!(answer.status(), 200, "Graph accepts the header's token");
    assert_eq!(fake.stats().token.with_challenge, 2, "each tool request with claims went to the platform");
    // Another challenge (a second policy change) is a new refresh.
    fake.change_policy(ALICE).unwrap();
    let answer = http.get(format!("{}/v1.0/me", fake.base_url())).bearer_auth(&new).send().await.unwrap();
    assert_eq!(answer.status(), 401, "the second change challenges the renewed token too");
    let header = answer.headers()["www-authenticate"].to_str().unwrap().to_owned();
    let second = header.split("claims=\"").nth(1).unwrap().trim_end_matches('"').to_owned();
    let newer = client.token(&query(&second)).await.expect("token for the second challenge").access_token;
    assert_ne!(newer, new);
    assert_eq!(fake.stats().token.with_challenge, 3);
}

/// A browser sign-in of a CAE profile declares cp1 on the authorize request and repeats it on the code redeem.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_sign_in_declares_cp1_on_authorize_and_redeem() {
    let fake = fake();
    let base = cae_config(&fake, "cae-browser").replace("flow = \"device\"", "flow = \"browser\"");
    let browser = "browser_command = [\"true\"]\n";
    let daemon = Daemon::start(&base.replacen("default_profile", &format!("{browser}default_profile"), 1));
    let client = daemon.client();
    let url = browser_url(&needing_signin(&client, &query("User.Read")).await);
    let claims: serde_json::Value = serde_json::from_str(&query_param(&url, "claims")).unwrap();
    assert_eq!(claims["access_token"]["xms_cc"]["values"][0], "cp1", "{claims}");
    let no_redirects = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    assert_eq!(no_redirects.get(&url).send().await.unwrap().status(), 200);
    let redirect = fake.approve_browser(&query_param(&url, "state"), ALICE).expect("approve");
    assert_eq!(no_redirects.get(&redirect).send().await.unwrap().status(), 200);
    client.token(&with_wait("User.Read", 30)).await.expect("token");
    let stats = fake.stats();
    assert_eq!(stats.token.authorization_code, 1);
    assert_eq!(stats.token.cae_capable, 1, "the redeem carried cp1");
    let redeemed: serde_json::Value = serde_json::from_str(stats.last_token_claims.as_deref().unwrap()).unwrap();
    assert_eq!(redeemed, claims);
}
