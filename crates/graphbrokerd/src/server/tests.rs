//! The router without a socket: requests go through `oneshot` with the peer injected as a `ConnectInfo<Peer>`
//! extension (axum's testing example), against a broker on a scripted platform.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use graphbroker_protocol::StoreKind;
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

use super::{Peer, PeerPolicy, router};
use crate::broker::Broker;
use crate::config::Config;
use crate::testing::{PlatformScript, ScriptedPlatform, ScriptedStore, ScriptedStores, record, tokens};

const OWNER: u32 = 4242;

async fn app() -> (axum::Router, PlatformScript) {
    let config =
        Config::parse("[profiles.default]\nflow = \"device\"\n", std::path::Path::new("/test/config.toml")).unwrap();
    let (platform, script) = ScriptedPlatform::new();
    let keyring = ScriptedStore::open(StoreKind::Keyring);
    keyring.put("default", "rt-0", record(&config.profiles["default"], "adele@contoso.com"));
    let stores = ScriptedStores { keyring, memory: ScriptedStore::open(StoreKind::Memory) };
    let broker = Broker::new(&config, platform, Arc::new(stores));
    broker.load_accounts().await;
    (router(broker, PeerPolicy { allowed_uid: OWNER }), script)
}

fn request(method: Method, uri: &str, uid: Option<u32>) -> Request<Body> {
    let mut request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
    if let Some(uid) = uid {
        request.extensions_mut().insert(ConnectInfo(Peer { uid: Some(uid), pid: Some(1) }));
    }
    request
}

async fn send(app: axum::Router, request: Request<Body>) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
    let response = app.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (parts.status, parts.headers, json)
}

#[tokio::test]
async fn another_users_peer_is_refused_before_any_route_runs() {
    let (app, mut script) = app().await;
    for peer in [Some(OWNER + 1), Some(0), None] {
        let (status, _, body) = send(app.clone(), request(Method::GET, "/v1/token?scopes=User.Read", peer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{peer:?}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    assert!(script.try_next().is_none(), "no refused request reached the platform");
}

#[tokio::test]
async fn a_token_answer_is_json_and_never_cached() {
    let (app, mut script) = app().await;
    let answer = tokio::spawn(send(app, request(Method::GET, "/v1/token?scopes=User.Read", Some(OWNER))));
    script.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), "adele@contoso.com")));
    let (status, headers, body) = answer.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CACHE_CONTROL], "no-store");
    assert_eq!(body["access_token"], "at-1");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["account"]["username"], "adele@contoso.com");
    assert_eq!(body["scopes"][0], "https://graph.microsoft.com/User.Read");
}

#[tokio::test]
async fn a_header_answer_carries_the_bearer_token() {
    let (app, mut script) = app().await;
    let answer = tokio::spawn(send(app, request(Method::GET, "/v1/header", Some(OWNER))));
    script.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), "adele@contoso.com")));
    let (status, _, body) = answer.await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["Authorization"], "Bearer at-1");
    assert_eq!(body["Content-Type"], "application/json");
}

#[tokio::test]
async fn bad_requests_get_the_error_envelope_with_a_stable_code() {
    let (app, mut script) = app().await;
    let cases = [
        (Method::GET, "/v1/token?scope=User.Read", StatusCode::BAD_REQUEST, "bad_request"),
        (Method::GET, "/v1/token?min_valid=999999", StatusCode::BAD_REQUEST, "bad_request"),
        (Method::GET, "/v1/token?claims=%25%25", StatusCode::BAD_REQUEST, "bad_request"),
        (
            Method::GET,
            "/v1/token?scopes=User.Read,https://vault.azure.net/x",
            StatusCode::BAD_REQUEST,
            "invalid_scopes",
        ),
        (Method::GET, "/v1/token?profile=nope", StatusCode::NOT_FOUND, "unknown_profile"),
        (Method::POST, "/v1/signin?flow=sideways", StatusCode::BAD_REQUEST, "bad_request"),
        (Method::POST, "/v1/signout?profile=nope", StatusCode::NOT_FOUND, "unknown_profile"),
        (Method::GET, "/v2/token", StatusCode::NOT_FOUND, "not_found"),
        (Method::POST, "/v1/token", StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
    ];
    for (method, uri, status, code) in cases {
        let (got, _, body) = send(app.clone(), request(method, uri, Some(OWNER))).await;
        assert_eq!(got, status, "{uri}");
        assert_eq!(body["error"]["code"], code, "{uri}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{uri}");
    }
    assert!(script.try_next().is_none(), "no bad request reached the platform");
}

#[tokio::test]
async fn version_status_and_healthz_answer() {
    let (app, _script) = app().await;
    let (status, _, body) = send(app.clone(), request(Method::GET, "/v1/version", Some(OWNER))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["protocol"], graphbroker_protocol::PROTOCOL_VERSION);
    let (status, _, body) = send(app.clone(), request(Method::GET, "/v1/status", Some(OWNER))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["profiles"][0]["name"], "default");
    assert_eq!(body["profiles"][0]["account"]["username"], "adele@contoso.com", "read from the store at start");
    let (status, _, _) = send(app, request(Method::GET, "/healthz", Some(OWNER))).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn every_answer_says_which_protocol_the_daemon_speaks() {
    let (app, _script) = app().await;
    let expected = graphbroker_protocol::PROTOCOL_VERSION.to_string();
    for (method, uri, peer) in [
        (Method::GET, "/v1/version", Some(OWNER)),
        (Method::GET, "/healthz", Some(OWNER)),
        (Method::GET, "/v1/status", Some(OWNER)),
        (Method::GET, "/v1/token?wait=soon", Some(OWNER)),
        (Method::GET, "/v1/nope", Some(OWNER)),
        (Method::DELETE, "/v1/status", Some(OWNER)),
        // The peer check's refusal too: a client of another user learns it talks to a graphbrokerd.
        (Method::GET, "/v1/status", Some(OWNER + 1)),
    ] {
        let (status, headers, _) = send(app.clone(), request(method.clone(), uri, peer)).await;
        let found = headers.get(graphbroker_protocol::PROTOCOL_HEADER).and_then(|v| v.to_str().ok());
        assert_eq!(found, Some(expected.as_str()), "{method} {uri} ({status})");
    }
}

/// Rule: a Graph answer still streaming counts as a request in flight, so an idle exit (socket activation) never
/// cuts a download short; once its body is done, the daemon is idle again.
#[tokio::test]
async fn a_streamed_graph_answer_counts_as_activity_until_its_body_is_done() {
    // A Graph stand-in whose answer's body arrives when the test sends it.
    let (parts, received) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let received = Arc::new(std::sync::Mutex::new(Some(received)));
    let graph = axum::Router::new().route(
        "/v1.0/slow",
        axum::routing::get(move || {
            let received = received.lock().unwrap().take().expect("one call");
            async move {
                let stream =
                    futures_util::stream::unfold(received, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) });
                Body::from_stream(stream)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let graph_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, graph).await });

    let text = format!("[profiles.default]\nflow = \"device\"\ngraph_url = \"{graph_url}\"\ntest_setup = true\n");
    let config = Config::parse(&text, std::path::Path::new("/test/config.toml")).unwrap();
    let (platform, mut script) = ScriptedPlatform::new();
    let keyring = ScriptedStore::open(StoreKind::Keyring);
    keyring.put("default", "rt-0", record(&config.profiles["default"], "adele@contoso.com"));
    let stores = ScriptedStores { keyring, memory: ScriptedStore::open(StoreKind::Memory) };
    let broker = Broker::new(&config, platform, Arc::new(stores));
    broker.load_accounts().await;
    let activity = Arc::new(super::Activity::default());
    let app = super::router_with_activity(broker, PeerPolicy { allowed_uid: OWNER }, activity.clone());

    let answer = tokio::spawn(app.oneshot(request(Method::GET, "/graph/v1.0/slow", Some(OWNER))));
    script.next().await.tokens(Ok(tokens("at-1", Some("rt-1"), "adele@contoso.com")));
    parts.send(Ok(bytes::Bytes::from_static(b"first "))).await.unwrap();
    let response = answer.await.unwrap().unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let in_flight = || activity.in_flight.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(in_flight(), 1, "the handler returned, but its body is still streaming");
    assert_eq!(activity.idle_for(), std::time::Duration::ZERO);

    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&first[..], b"first ");
    parts.send(Ok(bytes::Bytes::from_static(b"last"))).await.unwrap();
    drop(parts);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(&rest[..], b"last");
    assert_eq!(in_flight(), 0, "the body is done: nothing in flight");
}

#[tokio::test]
async fn config_answers_the_running_configuration_to_the_owner_only() {
    let (app, _script) = app().await;
    let (status, _, body) = send(app.clone(), request(Method::GET, "/v1/config", Some(OWNER))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["file"], "/test/config.toml");
    let flow = body["entries"].as_array().unwrap().iter().find(|e| e["key"] == "profiles.default.flow").unwrap();
    assert_eq!(
        *flow,
        serde_json::json!({"key": "profiles.default.flow", "value": "device", "origin": "file", "line": 2})
    );
    for peer in [Some(OWNER + 1), Some(0), None] {
        let (status, _, body) = send(app.clone(), request(Method::GET, "/v1/config", peer)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{peer:?}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
}
