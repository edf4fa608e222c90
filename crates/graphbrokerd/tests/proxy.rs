//! The Graph reverse proxy over the real socket, against the stand-in's Graph: the header attached, method,
//! query, headers and status passed through, throttling passed back, and no other host ever reached.

mod support;

use std::time::Duration;

use fake_entra::{Endpoint, Fault};
use graphbroker_client::{ErrorCode, GraphRequest};
use graphbroker_protocol::proxy;
use http_body_util::BodyExt;
use hyper::Method;
use support::*;

fn get(path: &str) -> GraphRequest {
    GraphRequest::new(Method::GET, path)
}

async fn body_json(response: hyper::Response<hyper::body::Incoming>) -> serde_json::Value {
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    serde_json::from_slice(&bytes).expect("a JSON body")
}

#[tokio::test]
async fn a_graph_call_goes_through_with_the_brokers_header() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-me"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;

    let mut request = get("/v1.0/me");
    // A caller's own Authorization is replaced, not forwarded: the call still succeeds as the daemon's account.
    request.headers.insert(hyper::header::AUTHORIZATION, "Bearer not-a-token".parse().unwrap());
    let response = client.graph(request).await.expect("proxied");
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()[proxy::UPSTREAM_HEADER], "graph");
    let me = body_json(response).await;
    assert_eq!(me["userPrincipalName"], ALICE);
    assert_eq!(fake.stats().me, 1, "one Graph call");
    assert_eq!(fake.stats().token.refresh_token, 0, "the cached token was used");
}

#[tokio::test]
async fn graphs_errors_and_throttling_pass_back_with_retry_after() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-429"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;

    fake.inject_fault(Endpoint::Graph, 1, Fault::status(429, Some(7)));
    let response = client.graph(get("/v1.0/me")).await.expect("Graph's answer");
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()[hyper::header::RETRY_AFTER], "7");
    assert_eq!(body_json(response).await["error"]["code"], "TooManyRequests");

    fake.inject_fault(Endpoint::Graph, 1, Fault::status(503, Some(3)));
    let response = client.graph(get("/v1.0/me")).await.expect("Graph's answer");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()[hyper::header::RETRY_AFTER], "3");

    // A token without a permission Graph wants: Graph's own 403, not a daemon error.
    let mut mail = get("/v1.0/me");
    mail.scopes = Some("Mail.Read".into());
    fake.grant_consent(ALICE, CLIENT_ID, &["Mail.Read"]).unwrap();
    let response = client.graph(mail).await.expect("Graph's answer");
    assert_eq!(response.status(), 403);
    assert_eq!(body_json(response).await["error"]["code"], "Authorization_RequestDenied");
    assert_eq!(fake.stats().me, 3, "nothing was retried by the proxy");
}

#[tokio::test]
async fn the_daemons_own_refusals_are_typed_errors() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-signin"), ""));
    let client = daemon.client();

    let error = client.graph(get("/v1.0/me")).await.expect_err("no account yet");
    assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    let mut unknown = get("/v1.0/me");
    unknown.profile = Some("nope".into());
    assert_eq!(client.graph(unknown).await.unwrap_err().code(), Some(ErrorCode::UnknownProfile));
    assert_eq!(fake.stats().me, 0, "nothing reached Graph");
}

/// An attack script: requests that try to make the proxy carry the user's token to another host. A listener on
/// loopback stands for the attacker's host and must see no connection at all.
#[tokio::test]
async fn the_proxy_never_sends_to_another_host() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-hosts"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let evil = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    evil.set_nonblocking(true).unwrap();
    let evil_host = evil.local_addr().unwrap().to_string();

    let attempts = [
        format!("GET /graph/v1.0/../../{evil_host}/x HTTP/1.1\r\nHost: localhost\r\n"),
        format!("GET /graph/v1.0/%2e%2e/%2e%2e/{evil_host}/x HTTP/1.1\r\nHost: localhost\r\n"),
        format!("GET /graph/v1.0//{evil_host}/x HTTP/1.1\r\nHost: localhost\r\n"),
        format!("GET /graph/v1.0/me\\..\\..\\{evil_host} HTTP/1.1\r\nHost: localhost\r\n"),
        format!("GET /graph/http:/{evil_host}/v1.0/me HTTP/1.1\r\nHost: localhost\r\n"),
        format!("GET /graph/v1.0/@{evil_host}/me HTTP/1.1\r\nHost: {evil_host}\r\n"),
        // Absolute form and a Host header naming the other host: the target is the profile's Graph regardless.
        format!("GET http://{evil_host}/graph/v1.0/me HTTP/1.1\r\nHost: {evil_host}\r\n"),
        format!("GET /graph/v1.0/me HTTP/1.1\r\nHost: {evil_host}\r\nX-Forwarded-Host: {evil_host}\r\n"),
    ];
    for attempt in &attempts {
        let (status, body) = raw_request(&daemon.socket, &format!("{attempt}Connection: close\r\n\r\n")).await;
        assert!(status != 0, "{attempt:?}: no answer");
        assert!(!body.contains("Bearer "), "{attempt:?}: {body}");
    }
    assert!(
        matches!(evil.accept(), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the other host was contacted"
    );
    // The requests that were valid Graph paths reached the stand-in's Graph, and nothing else did.
    assert_eq!(fake.stats().me, 2, "the absolute-form and the Host-header requests went to Graph");
    let (status, body) = raw_get(&daemon.socket, "/graph/v2.0/me").await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn a_sign_in_the_call_needs_can_be_waited_for() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-wait"), ""));
    let client = daemon.client();
    let error = needing_signin(&client, &query("User.Read")).await;
    let code = device_code_of(&error);
    let mut request = get("/v1.0/me");
    request.wait = Some(30);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.graph(request).await }
    });
    fake.approve_device(&code, ALICE).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), call).await.unwrap().unwrap().expect("proxied");
    assert_eq!(response.status(), 200);
}

/// Attack F: a percent-encoded `/` or `\` in a segment, which a server that decodes it would read as a path
/// that climbs out of `/v1.0/`, is refused before anything goes upstream.
#[tokio::test]
async fn an_encoded_slash_or_backslash_in_the_path_is_refused() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("proxy-encoded"), ""));
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    for path in ["/graph/v1.0/..%2fx", "/graph/v1.0/..%2F..%2Fevil", "/graph/v1.0/me%5c..%5cx", "/graph/v1.0/%2E%2e"] {
        let (status, body) = raw_get(&daemon.socket, path).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some("bad_request")), "{path}: {body}");
    }
    assert_eq!(fake.stats().me, 0, "nothing reached Graph");
}

/// Attack G: an upstream that sets the daemon's own answer headers (`graphbroker-claims: renewed`) does not get
/// them to the caller; the daemon's own `graphbroker-upstream` is the only one. The upstream is a loopback
/// stand-in Graph that answers every request with forged headers.
#[tokio::test]
async fn an_upstreams_graphbroker_headers_are_dropped() {
    let fake = fake();
    let forger = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let graph = format!("http://{}", forger.local_addr().unwrap());
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in forger.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ngraphbroker-claims: renewed\r\n\
                  Graphbroker-Upstream: forged\r\ngraphbroker-anything: x\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
            );
        }
    });
    let text = config(&fake, "memory", &unique_service("proxy-forged"), "")
        .replace(&format!("graph_url = \"{}\"", fake.base_url()), &format!("graph_url = \"{graph}\""));
    let daemon = Daemon::start(&text);
    let client = daemon.client();
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let response = client.graph(get("/v1.0/me")).await.expect("the forger's answer");
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers.get(proxy::CLAIMS_HEADER), None, "the forged claims header came through");
    assert_eq!(headers.get("graphbroker-anything"), None);
    let upstream: Vec<_> = headers.get_all(proxy::UPSTREAM_HEADER).iter().collect();
    assert_eq!(upstream, vec!["graph"], "only the daemon's own upstream header");
}
