//! The library against a scripted daemon on a real Unix socket.

mod support;

use std::time::Duration;

use graphbroker_client::{Client, Error, ErrorCode, SignInFlow, SignInPrompt, SignInReason, SignInState, TokenQuery};
use serde_json::json;
use support::{
    ACCESS_TOKEN, MockDaemon, Reply, daemon_error, header_body, signin_required, signin_timeout, token_body,
};

fn user_read() -> TokenQuery {
    TokenQuery { scopes: Some("User.Read".into()), ..TokenQuery::default() }
}

#[tokio::test]
async fn a_token_comes_back_typed_and_the_query_goes_out_as_given() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(token_body()));
    let client = Client::new(daemon.socket());
    let query = TokenQuery {
        scopes: Some("User.Read Mail.Read".into()),
        profile: Some("work".into()),
        min_valid: Some(600),
        claims: Some(r#"{"access_token":{"acrs":{"essential":true,"value":"c1"}}}"#.into()),
        ..TokenQuery::default()
    };
    let token = client.token(&query).await.unwrap();
    assert_eq!(token.access_token, ACCESS_TOKEN);
    assert_eq!(token.account.username, "adele@contoso.com");
    assert!(!format!("{token:?}").contains(ACCESS_TOKEN));

    let requests = daemon.requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!((request.method.as_str(), request.path.as_str()), ("GET", "/v1/token"));
    assert_eq!(request.param("scopes").as_deref(), Some("User.Read Mail.Read"));
    assert_eq!(request.param("profile").as_deref(), Some("work"));
    assert_eq!(request.param("min_valid").as_deref(), Some("600"));
    assert_eq!(request.param("claims"), query.claims);
    assert_eq!(request.param("wait"), None);
}

#[tokio::test]
async fn headers_come_from_the_header_route() {
    let daemon = MockDaemon::start(|request, _| {
        assert_eq!(request.path, "/v1/header");
        Reply::ok(header_body())
    });
    let headers = Client::new(daemon.socket()).header(&user_read()).await.unwrap();
    assert_eq!(headers.authorization, format!("Bearer {ACCESS_TOKEN}"));
    assert_eq!(headers.content_type, "application/json");
}

#[tokio::test]
async fn an_error_envelope_becomes_a_typed_error_with_its_code() {
    let daemon =
        MockDaemon::start(|_, _| daemon_error(404, "unknown_profile", "no profile named \"home\"; add it to config"));
    let error = Client::new(daemon.socket()).token(&user_read()).await.unwrap_err();
    assert!(matches!(error, Error::Daemon { status: 404, .. }), "{error:?}");
    assert_eq!(error.code(), Some(ErrorCode::UnknownProfile));
    assert_eq!(error.to_string(), "no profile named \"home\"; add it to config (unknown_profile)");
}

#[tokio::test]
async fn each_distinct_prompt_is_shown_once_and_the_wait_ends_with_the_token() {
    let replaced_prompt =
        json!({"flow": "browser", "url": "https://login.example/authorize?x=1", "expires_at": 4_070_908_800u64});
    let daemon = MockDaemon::start(move |_, index| match index {
        0 => signin_required(),
        1 => signin_timeout(),
        // The same sign-in again (a daemon that did not hold the request): not shown twice.
        2 => signin_required(),
        // A new sign-in replaced the first one: shown.
        3 => Reply::error(
            401,
            json!({"error": {"code": "signin_required", "message": "sign in", "signin": replaced_prompt}}),
        ),
        4 => Reply::ok(token_body()),
        _ => panic!("asked again after the token"),
    });
    let client = Client::new(daemon.socket());
    let mut prompts: Vec<(SignInPrompt, Option<SignInReason>)> = Vec::new();
    let token = client
        .token_with_signin(&user_read(), Duration::from_secs(900), |prompt, reason| {
            prompts.push((prompt.clone(), reason));
        })
        .await
        .unwrap();
    assert_eq!(token.access_token, ACCESS_TOKEN);
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(matches!(&prompts[0].0, SignInPrompt::Device { user_code, .. } if user_code == "ABCD1234"));
    assert_eq!(prompts[0].1, Some(SignInReason::NoAccount));
    assert!(matches!(&prompts[1].0, SignInPrompt::Browser { url, .. } if url.ends_with("x=1")));
    assert_eq!(prompts[1].1, None);

    // The first ask answers at once so the prompt reaches the user; the others let the daemon hold them.
    let waits: Vec<Option<String>> = daemon.requests().iter().map(|request| request.param("wait")).collect();
    assert_eq!(waits[0].as_deref(), Some("0"));
    assert!(waits[1..].iter().all(|wait| wait.as_deref() == Some("60")), "{waits:?}");
    assert!(daemon.requests().iter().all(|request| request.param("scopes").as_deref() == Some("User.Read")));
}

#[tokio::test]
async fn a_prompt_still_being_prepared_is_asked_for_again_without_waiting() {
    // The daemon answers `wait=0` at once; twice the platform has not handed out the device code yet.
    let preparing = || {
        Reply::error(
            401,
            json!({"error": {
                "code": "signin_required",
                "message": "a sign-in is being prepared; ask again in a moment for the prompt",
                "reason": "no_account",
                "retry_after": 1,
            }}),
        )
    };
    let daemon = MockDaemon::start(move |_, index| match index {
        0 | 1 => preparing(),
        2 => signin_required(),
        _ => Reply::ok(token_body()),
    });
    let mut prompts = 0;
    let token = Client::new(daemon.socket())
        .token_with_signin(&user_read(), Duration::from_secs(900), |_, _| prompts += 1)
        .await
        .unwrap();
    assert_eq!(token.account.username, "adele@contoso.com");
    assert_eq!(prompts, 1);
    let waits: Vec<Option<String>> = daemon.requests().iter().map(|request| request.param("wait")).collect();
    assert_eq!(waits[..3], [Some("0".into()), Some("0".into()), Some("0".into())], "{waits:?}");
    assert_eq!(waits.len(), 4, "{waits:?}");
}

#[tokio::test]
async fn a_declined_sign_in_ends_the_wait_with_its_error() {
    let daemon = MockDaemon::start(|_, index| match index {
        0 => signin_required(),
        1 => daemon_error(401, "signin_declined", "the sign-in was declined; run the command again to retry"),
        _ => panic!("asked again after the sign-in ended"),
    });
    let mut prompts = 0;
    let error = Client::new(daemon.socket())
        .header_with_signin(&user_read(), Duration::from_secs(900), |_, _| prompts += 1)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SigninDeclined));
    assert_eq!(prompts, 1);
    assert_eq!(daemon.requests().len(), 2);
}

#[tokio::test]
async fn the_wait_stops_at_the_callers_timeout_with_the_daemons_still_waiting() {
    // A daemon that honours `wait`: it holds each waiting request for as long as it was asked to.
    let daemon = MockDaemon::start(|request, index| match index {
        0 => signin_required(),
        _ => signin_timeout().held_for(request.param("wait").unwrap().parse().unwrap()),
    });
    let mut prompts = 0;
    let error = Client::new(daemon.socket())
        .token_with_signin(&user_read(), Duration::from_secs(2), |_, _| prompts += 1)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SigninTimeout), "{error:?}");
    assert_eq!(prompts, 1);
    // Never asks the daemon to wait past the caller's deadline.
    let total_wait: u64 =
        daemon.requests().iter().map(|request| request.param("wait").unwrap().parse::<u64>().unwrap()).sum();
    assert!(total_wait <= 2, "asked to wait {total_wait}s in all");
}

#[tokio::test]
async fn with_no_time_to_wait_the_prompt_is_shown_and_signin_required_returned() {
    let daemon = MockDaemon::start(|_, _| signin_required());
    let mut prompts = 0;
    let error = Client::new(daemon.socket())
        .token_with_signin(&user_read(), Duration::ZERO, |_, _| prompts += 1)
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired));
    assert!(error.signin_prompt().is_some());
    assert_eq!(prompts, 1);
    assert_eq!(daemon.requests().len(), 1);
}

#[tokio::test]
async fn no_socket_file_is_unreachable_and_says_so() {
    let dir = support::private_tempdir();
    let socket = dir.path().join("graphbroker.sock");
    let error = Client::new(&socket).token(&user_read()).await.unwrap_err();
    assert!(matches!(&error, Error::Unreachable { path, .. } if *path == socket), "{error:?}");
    assert!(error.is_socket_missing());
    assert!(error.to_string().starts_with("graphbrokerd is not running (no socket at "), "{error}");
}

#[tokio::test]
async fn a_socket_nobody_listens_on_is_unreachable_too() {
    let dir = support::private_tempdir();
    let socket = dir.path().join("graphbroker.sock");
    // Dropping a listener leaves its file behind, as a crashed daemon does.
    drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
    let error = Client::new(&socket).healthz().await.unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert!(!error.is_socket_missing());
    assert!(error.to_string().contains("nothing listens on"), "{error}");
}

#[tokio::test]
async fn signin_and_signout_are_posts_with_their_parameters() {
    let daemon = MockDaemon::start(|request, _| match request.path.as_str() {
        "/v1/signin" => Reply::ok(json!({"profile": "work", "state": "pending", "signin": support::device_prompt()})),
        "/v1/signout" => Reply::ok(json!({"profile": "work", "tokens_dropped": 2})),
        other => panic!("unexpected {other}"),
    });
    let client = Client::new(daemon.socket());
    let started = client.signin(Some("work"), Some(SignInFlow::Device)).await.unwrap();
    assert_eq!(started.state, SignInState::Pending);
    assert!(started.signin.is_some());
    let gone = client.signout(None).await.unwrap();
    assert_eq!(gone.tokens_dropped, 2);

    let requests = daemon.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].query, "profile=work&flow=device");
    assert_eq!((requests[1].method.as_str(), requests[1].query.as_str()), ("POST", ""));
}

#[tokio::test]
async fn an_answer_that_is_not_the_protocol_is_a_protocol_error_without_the_body() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(json!({"access_token": ACCESS_TOKEN, "expires_in": ACCESS_TOKEN})));
    let error = Client::new(daemon.socket()).token(&user_read()).await.unwrap_err();
    assert!(matches!(error, Error::Protocol(_)), "{error:?}");
    assert!(!error.to_string().contains(ACCESS_TOKEN), "{error}");
    assert!(!format!("{error:?}").contains(ACCESS_TOKEN), "{error:?}");
}

#[tokio::test]
async fn version_and_healthz_answer() {
    let daemon = MockDaemon::start(|request, _| {
        assert_eq!(request.path, "/v1/version");
        Reply::ok(json!({"protocol": 1, "daemon": "0.1.0"}))
    });
    let client = Client::new(daemon.socket());
    client.healthz().await.unwrap();
    let version = client.version().await.unwrap();
    assert_eq!((version.protocol, version.daemon.as_str()), (1, "0.1.0"));
}

#[tokio::test]
async fn a_daemon_of_another_protocol_is_named_older_or_newer() {
    let daemon = MockDaemon::start(|request, _| match request.path.as_str() {
        "/v1/token" => Reply::ok(token_body()).speaking(Some("2")),
        "/v1/status" => daemon_error(404, "not_found", "no such route").speaking(None),
        _ => Reply::ok(json!({"protocol": 2, "daemon": "9.9.9"})).speaking(Some("2")),
    });
    let client = Client::new(daemon.socket());
    let error = client.token(&user_read()).await.unwrap_err();
    assert!(matches!(error, Error::ProtocolMismatch { daemon: Some(2), client: 1, .. }), "{error:?}");
    assert!(error.to_string().contains("speaks protocol 2 and this client speaks protocol 1: the client is older"));
    assert!(!error.to_string().contains(ACCESS_TOKEN), "{error}");

    let error = client.status().await.unwrap_err();
    assert!(matches!(error, Error::ProtocolMismatch { daemon: None, .. }), "{error:?}");
    assert!(error.to_string().contains("does not say which protocol it speaks"), "{error}");

    // `/v1/version` is not held to the header: it is how a mismatch is reported in words.
    assert_eq!(client.version().await.unwrap().protocol, 2);
}
