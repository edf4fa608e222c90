//! The core loop end to end: the real daemon binary on its real socket, the real Secret Service (started by
//! scripts/test), the fake identity platform. Each test starts its own fake and daemon.

mod support;

use std::time::Duration;

use fake_entra::{Endpoint, Fault};
use graphbroker_protocol::{ErrorCode, SignInReason, TokenQuery};
use support::*;

/// Calls the fake's Graph `/v1.0/me` with a token, as a program using the token would.
async fn graph_me(fake: &fake_entra::FakeEntra, access_token: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/v1.0/me", fake.base_url()))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("graph call");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_demand_sign_in_serves_a_token_graph_accepts_then_serves_from_cache() {
    if !keychain_available("first_demand_sign_in") {
        return;
    }
    let fake = fake();
    let service = unique_service("first");
    let daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    let client = daemon.client();

    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired));
    assert_eq!(error.signin_reason(), Some(SignInReason::NoAccount));
    let token = sign_in(&client, &fake, "User.Read", ALICE).await;
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.account.username, ALICE);
    assert_eq!(token.scopes, ["https://graph.microsoft.com/User.Read"]);
    assert!(token.expires_in > 3000, "fresh token: {}", token.expires_in);

    let (status, me) = graph_me(&fake, &token.access_token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["userPrincipalName"].as_str().map(str::to_lowercase).as_deref(), Some(ALICE));

    // The refresh token reached the keychain before the token was served.
    assert_eq!(keychain_items(&service), 1);

    // Second request: from the cache, no new token request at the platform.
    let before = fake.stats();
    let again = client.token(&query("user.read")).await.expect("cached token");
    assert!(again.access_token == token.access_token, "the cached token");
    assert_eq!(fake.stats().token, before.token);

    // The header route serves the same token, ready to send.
    let header = client.header(&query("User.Read")).await.expect("header");
    assert!(header.authorization == format!("Bearer {}", token.access_token), "the header carries the token");
    assert_eq!(header.content_type, "application/json");

    let status = client.status().await.expect("status");
    let work = &status.profiles[0];
    assert_eq!(work.account.as_ref().map(|a| a.username.as_str()), Some(ALICE));
    assert_eq!(work.tokens.len(), 1);
    assert!(status.counters.cache_hits >= 2);
    let raw_status = serde_json::to_string(&status).unwrap();
    assert!(!raw_status.contains(&token.access_token), "status must never carry a token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_short_of_min_valid_is_refreshed_with_a_rotated_refresh_token() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("expiring"), ""));
    let client = daemon.client();
    // 200 s of life is short of the profile's 300 s min_valid: every request must refresh.
    fake.set_access_token_lifetime(Duration::from_secs(200));
    let first = sign_in(&client, &fake, "User.Read", ALICE).await;
    assert!(first.expires_in <= 200);
    let refreshes_before = fake.stats().token.refresh_token;
    let second = client.token(&query("User.Read")).await.expect("refreshed");
    assert!(second.access_token != first.access_token, "a new token");
    assert_eq!(fake.stats().token.refresh_token, refreshes_before + 1);
    let third = client.token(&query("User.Read")).await.expect("refreshed again");
    assert!(third.access_token != second.access_token, "a new token");
    assert_eq!(fake.stats().token.refresh_token, refreshes_before + 2);
    assert_eq!(graph_me(&fake, &third.access_token).await.0, 200);

    // A caller that needs less than what is left is served from the cache.
    let lenient = TokenQuery { min_valid: Some(60), ..query("User.Read") };
    let cached = client.token(&lenient).await.expect("cached");
    assert!(cached.access_token == third.access_token, "the cached token");
    assert_eq!(fake.stats().token.refresh_token, refreshes_before + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_cold_requests_make_one_sign_in_and_one_token_request_per_scope_set() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("burst"), ""));
    let client = daemon.client();
    // The status is read on a connection of its own, opened before the burst: the 200 waiting requests hold
    // connections, and past the daemon's cap of 64 a new connection waits until one is free. A shared pool
    // would let a token request take the status connection and leave the status behind the cap.
    let watcher = daemon.client();
    watcher.status().await.expect("status before the burst");

    let mut tasks = Vec::new();
    for i in 0..200 {
        let client = client.clone();
        let scopes = if i % 2 == 0 { "User.Read" } else { "Mail.Read" };
        tasks.push(tokio::spawn(async move { client.token(&with_wait(scopes, 60)).await }));
    }
    // Every request joins one sign-in: one device code, whose prompt the status shows.
    let user_code = loop {
        let status = watcher.status().await.expect("status");
        if let Some(graphbroker_protocol::SignInPrompt::Device { user_code, .. }) = &status.profiles[0].signin {
            break user_code.clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    fake.grant_consent(ALICE, CLIENT_ID, &["User.Read", "Mail.Read"]).expect("consent");
    fake.approve_device(&user_code, ALICE).expect("approve");
    let mut tokens = std::collections::HashMap::new();
    for task in tasks {
        let token = task.await.expect("task").expect("token");
        tokens.entry(token.scopes.clone()).or_insert_with(std::collections::HashSet::new).insert(token.access_token);
    }
    let stats = fake.stats();
    assert_eq!(stats.devicecode, 1, "one sign-in");
    // The sign-in's own token covers one scope set; the other costs exactly one refresh.
    assert_eq!(stats.token.refresh_token, 1, "one token request for the second scope set");
    assert_eq!(tokens.len(), 2, "two scope sets");
    assert!(tokens.values().all(|set| set.len() == 1), "one token per scope set: {tokens:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_serves_without_a_new_sign_in() {
    if !keychain_available("restart") {
        return;
    }
    let fake = fake();
    let service = unique_service("restart");
    let mut daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    daemon.restart();

    let token = daemon.client().token(&query("User.Read")).await.expect("token after restart, no sign-in");
    assert_eq!(token.account.username, ALICE);
    assert_eq!(fake.stats().devicecode, 1, "no second sign-in");
    assert_eq!(fake.stats().token.refresh_token, 1, "the access token came from the stored refresh token");
    assert_eq!(graph_me(&fake, &token.access_token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_sign_in_answers_signin_declined() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("decline"), ""));
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    // The daemon polls once at once, then every second. The decline must come after that first poll, and the
    // waiting request before the next one: a request arriving after the sign-in had ended would rightly start
    // a new sign-in. So: wait for the first poll, send the waiting request, then decline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.stats().token.device_code == 0 {
        assert!(std::time::Instant::now() < deadline, "the daemon never polled the device code");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move { client.token(&with_wait("User.Read", 30)).await })
    };
    fake.decline_device(&device_code_of(&error)).expect("decline");
    let error = waiting.await.expect("task").expect_err("declined");
    assert_eq!(error.code(), Some(ErrorCode::SigninDeclined), "{error}");
    // The next request starts a new sign-in rather than repeating the old answer.
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired));
    assert_eq!(fake.stats().devicecode, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_device_code_answers_signin_expired() {
    let fake = fake_entra::FakeEntra::builder()
        .client(CLIENT_ID)
        .user(ALICE)
        .device_interval(Duration::from_secs(1))
        .device_code_lifetime(Duration::from_secs(2))
        .start()
        .expect("fake");
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("expire"), ""));
    let error = daemon.client().token(&with_wait("User.Read", 60)).await.expect_err("expired");
    assert_eq!(error.code(), Some(ErrorCode::SigninExpired), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_refresh_token_forgets_the_account_and_asks_for_sign_in() {
    if !keychain_available("revoked") {
        return;
    }
    let fake = fake();
    let service = unique_service("revoked");
    let daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    assert_eq!(keychain_items(&service), 1);

    fake.revoke_user(ALICE).expect("revoke");
    let error = needing_signin(&client, &query("Mail.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    assert_eq!(error.signin_reason(), Some(SignInReason::SessionExpired));
    assert_eq!(keychain_items(&service), 1, "the entry stays, marked as ended, so status can say so after a restart");
    let entry: serde_json::Value = serde_json::from_str(&keychain_secret(&service, "work")).expect("a JSON record");
    assert_eq!(entry["refresh_token"], "", "the dead refresh token is gone from the keychain");
    let status = client.status().await.expect("status");
    assert!(status.profiles[0].account.is_none());
    assert!(status.profiles[0].tokens.is_empty(), "cached tokens of the old session are dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scopes_not_yet_consented_keep_the_account_and_sign_in_for_consent() {
    if !keychain_available("consent") {
        return;
    }
    let fake = fake();
    let service = unique_service("consent");
    let daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;

    let error = needing_signin(&client, &query("Mail.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    assert_eq!(error.signin_reason(), Some(SignInReason::ConsentRequired));
    assert_eq!(keychain_items(&service), 1, "the account stays");
    // Other scopes are still served from the same account meanwhile.
    client.token(&query("User.Read")).await.expect("User.Read still served");

    fake.approve_device(&device_code_of(&error), ALICE).expect("consent");
    let mail = client.token(&with_wait("Mail.Read", 30)).await.expect("Mail.Read after consent");
    assert_eq!(mail.scopes, ["https://graph.microsoft.com/Mail.Read"]);
    assert_eq!(keychain_items(&service), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_platform_failures_are_retried_and_the_token_served() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("retry"), ""));
    let client = daemon.client();
    let first = sign_in(&client, &fake, "User.Read", ALICE).await;

    // Two 503s with Retry-After: 1, then the platform answers. A min_valid longer than any token's life forces
    // the refresh.
    fake.inject_fault(Endpoint::Token, 2, Fault::status(503, Some(1)));
    let refreshed = client.token(&TokenQuery { min_valid: Some(7200), ..query("User.Read") }).await.expect("token");
    assert!(refreshed.access_token != first.access_token, "a refreshed token");
    assert_eq!(fake.stats().faults_fired.get("token"), Some(&2));
    assert_eq!(fake.stats().token.refresh_token, 1, "the third attempt reached the grant");
    assert_eq!(graph_me(&fake, &refreshed.access_token).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_that_stays_down_is_identity_provider_unavailable_and_the_account_survives() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("down"), ""));
    let client = daemon.client();
    fake.set_access_token_lifetime(Duration::from_secs(100));
    sign_in(&client, &fake, "User.Read", ALICE).await;
    client.token(&query("User.Read")).await.expect("refresh works");

    fake.inject_fault(Endpoint::Token, 10, Fault::garbage());
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::IdentityProviderUnavailable), "{error}");
    fake.clear_faults();
    client.token(&query("User.Read")).await.expect("the sign-in was not lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_codes() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("bad"), ""));
    let socket = &daemon.socket;

    let (status, body) =
        raw_get(socket, "/v1/token?scopes=User.Read%20https://outlook.office.com/IMAP.AccessAsUser.All").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_scopes")), "{body}");
    let (status, body) = raw_get(socket, "/v1/token?scopes=User.Read&profile=nope").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_profile")), "{body}");
    let (status, body) = raw_get(socket, "/v1/token?scope=User.Read").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = raw_get(socket, "/v1/token?scopes=User.Read&wait=soon").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = raw_get(socket, "/v1/header?scopes=openid%20offline_access").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_scopes")), "{body}");
    let (status, body) = raw_get(socket, "/v1/token?scopes=User.Read&min_valid=999999").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{body}");
    let (status, body) = raw_get(socket, "/v2/token").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    let (status, body) =
        raw_request(socket, "POST /v1/token HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            .await;
    assert_eq!(status, 405, "{body}");
    let (status, _) = raw_request(socket, "NONSENSE\r\n\r\n").await;
    assert_eq!(status, 400);
    // None of that reached the identity platform, and the daemon still answers.
    assert_eq!(fake.stats().devicecode + fake.stats().token.requests, 0);
    let (status, body) = raw_get(socket, "/v1/version").await;
    assert_eq!((status, body["protocol"].as_u64()), (200, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signout_forgets_the_account_in_the_keychain_and_memory() {
    if !keychain_available("signout") {
        return;
    }
    let fake = fake();
    let service = unique_service("signout");
    let daemon = Daemon::start(&config(&fake, "keyring", &service, ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    assert_eq!(keychain_items(&service), 1);

    let out = client.signout(None).await.expect("signout");
    assert_eq!(out.account.map(|a| a.username).as_deref(), Some(ALICE));
    assert_eq!(out.tokens_dropped, 1);
    assert_eq!(keychain_items(&service), 0);
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.signin_reason(), Some(SignInReason::NoAccount));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mfa_required_for_a_resource_keeps_the_account_and_asks_with_the_platforms_claims() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("mfa"), ""));
    let client = daemon.client();
    fake.set_access_token_lifetime(Duration::from_secs(100));
    sign_in(&client, &fake, "User.Read", ALICE).await;

    fake.require_mfa(ALICE, "https://graph.microsoft.com", true).expect("mfa");
    let error = needing_signin(&client, &query("User.Read")).await;
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    assert_eq!(error.signin_reason(), Some(SignInReason::InteractionRequired));
    let status = client.status().await.expect("status");
    assert!(status.profiles[0].account.is_some(), "the account stays for other resources");

    fake.approve_device(&device_code_of(&error), ALICE).expect("approve");
    let token = client.token(&with_wait("User.Read", 30)).await.expect("token after MFA");
    assert_eq!(token.account.username, ALICE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trace_level_log_of_sign_in_refresh_and_consent_holds_no_secret() {
    if !keychain_available("trace_log") {
        return;
    }
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "keyring", &unique_service("trace"), "")); // RUST_LOG=trace
    let client = daemon.client();
    fake.set_access_token_lifetime(Duration::from_secs(120));
    let mut served = vec![sign_in(&client, &fake, "User.Read", ALICE).await.access_token];
    served.push(client.token(&query("User.Read")).await.expect("refresh").access_token);
    served.push(client.header(&query("User.Read")).await.expect("refresh").authorization);
    let consent = needing_signin(&client, &query("Mail.Read")).await;
    fake.approve_device(&device_code_of(&consent), ALICE).expect("approve");
    served.push(client.token(&with_wait("Mail.Read", 30)).await.expect("after consent").access_token);
    client.signout(None).await.expect("signout");
    drop(client);

    let log = daemon.log();
    assert!(log.contains("TRACE") && log.contains("refreshing access token"), "the log is at trace level:\n{log}");
    let secrets = fake.issued_secrets();
    assert!(secrets.len() >= 8, "device codes, refresh and access tokens issued: {}", secrets.len());
    for secret in secrets.iter().chain(&served) {
        let secret = secret.trim_start_matches("Bearer ");
        assert!(!log.contains(secret), "a secret value reached the log ({} bytes of log)", log.len());
        // Nor its tail (a JWT's signature, unique to it), which a log that cut a token short would still show.
        assert!(!log.contains(&secret[secret.len().saturating_sub(40)..]), "part of a secret value reached the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_half_its_life_is_served_and_refreshed_in_the_background() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("ahead"), "min_valid = 1"));
    let client = daemon.client();
    // A 4 s token with min_valid 1 s becomes due for a background refresh at half its life.
    fake.set_access_token_lifetime(Duration::from_secs(4));
    let first = sign_in(&client, &fake, "User.Read", ALICE).await;
    // The token must age past half its life; nothing else can make that happen in a real process.
    tokio::time::sleep(Duration::from_millis(2200)).await;

    let served = client.token(&query("User.Read")).await.expect("token");
    assert!(served.access_token == first.access_token, "the cached token is served without waiting");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.stats().token.refresh_token < 1 {
        assert!(std::time::Instant::now() < deadline, "no background refresh happened");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Wait for the refreshed token to be in the cache (the refresh is answered before it is stored).
    let renewed = loop {
        let token = client.token(&query("User.Read")).await.expect("token");
        if token.access_token != first.access_token {
            break token;
        }
        assert!(std::time::Instant::now() < deadline, "the refreshed token never reached the cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(renewed.expires_in >= 3, "a fresh token: {} s", renewed.expires_in);
    assert_eq!(fake.stats().token.refresh_token, 1, "one background refresh, no foreground one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_out_cancels_a_pending_sign_in_and_tells_the_waiting_requests() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("cancel"), ""));
    let client = daemon.client();
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.token(&with_wait("User.Read", 60)).await }
    });
    while client.status().await.expect("status").profiles[0].signin.is_none() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    client.signout(None).await.expect("signout");
    let error = waiting.await.unwrap().expect_err("cancelled");
    assert_eq!(error.code(), Some(ErrorCode::SigninDeclined), "{error}");
    assert!(error.to_string().contains("cancelled"), "{error}");
    assert!(client.status().await.unwrap().profiles[0].signin.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_sign_in_on_a_signed_in_profile_says_so_and_starts_nothing() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("signedin"), ""));
    let client = daemon.client();
    let first = client.signin(None, None).await.expect("signin");
    assert_eq!(first.state, graphbroker_protocol::SignInState::Pending);
    let Some(graphbroker_protocol::SignInPrompt::Device { user_code, .. }) = first.signin else {
        panic!("expected a device prompt: {first:?}")
    };
    fake.approve_device(&user_code, ALICE).expect("approve");
    client.token(&with_wait("User.Read", 30)).await.expect("token");

    let again = client.signin(None, None).await.expect("signin");
    assert_eq!(again.state, graphbroker_protocol::SignInState::SignedIn);
    assert_eq!(again.account.map(|a| a.username).as_deref(), Some(ALICE));
    assert_eq!(fake.stats().devicecode, 1, "no second sign-in");
}
