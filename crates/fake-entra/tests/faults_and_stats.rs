//! Injected faults, request counters, and the server's independence from the caller's runtime.

mod support;

use std::time::{Duration, Instant};

use fake_entra::{Endpoint, Fault};
use reqwest::StatusCode;
use serde_json::json;
use support::*;

fn devicecode_url(fake: &fake_entra::FakeEntra) -> String {
    format!("{}/oauth2/v2.0/devicecode", fake.authority("common"))
}

#[tokio::test]
async fn status_fault_fires_n_times_with_retry_after_then_stops() {
    let fake = fake();
    let rt = device_sign_in(&fake, CLIENT, ALICE, GRAPH_SCOPES).await["refresh_token"].as_str().unwrap().to_owned();
    fake.inject_fault(Endpoint::Token, 2, Fault::status(503, Some(2)));
    for _ in 0..2 {
        let reply = refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await;
        assert_eq!(reply.header("retry-after"), Some("2"));
        assert_entra_error(&reply, 503, "temporarily_unavailable", 90024);
    }
    assert_eq!(refresh(&fake, CLIENT, &rt, GRAPH_SCOPES).await.status, StatusCode::OK);
    let stats = fake.stats();
    assert_eq!(stats.faults_fired["token"], 2);
    // 1 device poll + 3 refresh attempts arrived; only the poll and the last refresh were handled.
    assert_eq!(stats.token.requests, 4);
    assert_eq!(stats.token.refresh_token, 1);
    assert_eq!(stats.token.device_code, 1);
}

#[tokio::test]
async fn status_fault_body_override_and_429() {
    let fake = fake();
    fake.inject_fault(
        Endpoint::Devicecode,
        1,
        Fault::Status { status: 429, retry_after: None, body: Some(json!("slow")) },
    );
    let reply = post_form(&devicecode_url(&fake), &[("client_id", CLIENT), ("scope", "User.Read")]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.text, "slow");
}

#[tokio::test]
async fn garbage_fault_is_200_and_not_json() {
    let fake = fake();
    fake.inject_fault(Endpoint::Devicecode, 1, Fault::garbage());
    let reply = post_form(&devicecode_url(&fake), &[("client_id", CLIENT), ("scope", "User.Read")]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert!(serde_json::from_str::<serde_json::Value>(&reply.text).is_err());
    let normal = post_form(&devicecode_url(&fake), &[("client_id", CLIENT), ("scope", "User.Read")]).await;
    assert!(normal.json()["device_code"].is_string());
}

#[tokio::test]
async fn error_200_fault_carries_an_entra_error_with_http_200() {
    let fake = fake();
    fake.inject_fault(Endpoint::Devicecode, 1, Fault::error_200("temporarily_unavailable"));
    let reply = post_form(&devicecode_url(&fake), &[("client_id", CLIENT), ("scope", "User.Read")]).await;
    assert_entra_error(&reply, 200, "temporarily_unavailable", 90024);
}

#[tokio::test]
async fn delay_fault_sleeps_then_answers_normally() {
    let fake = fake();
    fake.inject_fault(Endpoint::Discovery, 1, Fault::delay(Duration::from_millis(300)));
    let url = format!("{}/v2.0/.well-known/openid-configuration", fake.authority("common"));
    let started = Instant::now();
    let reply = get(&url).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(reply.status, StatusCode::OK);
    assert!(reply.json()["issuer"].is_string());
    let started = Instant::now();
    get(&url).await;
    assert!(started.elapsed() < Duration::from_millis(300));
}

#[tokio::test]
async fn graph_and_authorize_faults_use_their_own_shapes() {
    let fake = fake();
    fake.inject_fault(Endpoint::Graph, 1, Fault::status(429, Some(3)));
    let reply = get(&format!("{}/v1.0/me", fake.base_url())).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.header("retry-after"), Some("3"));
    assert_eq!(reply.json()["error"]["code"], "TooManyRequests");

    fake.inject_fault(Endpoint::Authorize, 1, Fault::status(500, None));
    let reply = get(&authorize_url(&fake, &[])).await;
    assert_eq!(reply.status, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(reply.text.contains("<html"));
    assert_eq!(get(&authorize_url(&fake, &[])).await.status, StatusCode::OK);
}

#[tokio::test]
async fn faults_over_http_and_clearing() {
    let fake = fake();
    let url = format!("{}/_control/faults", fake.base_url());
    let armed =
        post_json(&url, json!({"endpoint": "devicecode", "count": 5, "fault": {"status": 503, "retry_after": 1}}))
            .await;
    assert_eq!(armed.status, StatusCode::OK, "{}", armed.text);
    let form = [("client_id", CLIENT), ("scope", "User.Read")];
    assert_eq!(post_form(&devicecode_url(&fake), &form).await.status, StatusCode::SERVICE_UNAVAILABLE);
    let cleared = reqwest::Client::new().delete(&url).send().await.unwrap();
    assert_eq!(cleared.status(), StatusCode::OK);
    assert_eq!(post_form(&devicecode_url(&fake), &form).await.status, StatusCode::OK);

    let bad = post_json(&url, json!({"endpoint": "nowhere", "count": 1, "fault": {"garbage": true}})).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stats_count_endpoints_grants_and_errors() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    let device_code = flow["device_code"].as_str().unwrap();
    poll_device(&fake, CLIENT, device_code).await;
    poll_device(&fake, CLIENT, device_code).await;
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    let tokens = poll_device(&fake, CLIENT, device_code).await.json();
    refresh(&fake, CLIENT, tokens["refresh_token"].as_str().unwrap(), GRAPH_SCOPES).await;
    get_bearer(&format!("{}/v1.0/me", fake.base_url()), tokens["access_token"].as_str().unwrap()).await;
    get(&authorize_url(&fake, &[])).await;

    let stats = get(&format!("{}/_control/stats", fake.base_url())).await.json();
    assert_eq!(stats["devicecode"], 1);
    assert_eq!(stats["token"]["device_code"], 3);
    assert_eq!(stats["token"]["refresh_token"], 1);
    assert_eq!(stats["token"]["authorization_code"], 0);
    assert_eq!(stats["token_errors"], json!({"authorization_pending": 2}));
    assert_eq!(stats["authorize"], 1);
    assert_eq!(stats["me"], 1);
    assert_eq!(stats["graph"]["requests"], 1);
    assert_eq!(stats["graph"]["by_route"], json!({"me": 1}));
    assert_eq!(fake.stats().token.device_code, 3);
}

/// The server lives on its own thread: it serves callers from no runtime, from a runtime that is
/// later dropped, and stops when the handle is dropped.
#[test]
fn serves_independently_of_the_callers_runtime_and_stops_on_drop() {
    let fake = fake();
    let url = format!("{}/v2.0/.well-known/openid-configuration", fake.authority("common"));
    for _ in 0..2 {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let status = runtime.block_on(async { get(&url).await.status });
        assert_eq!(status, StatusCode::OK);
        drop(runtime);
    }
    let address = fake.base_url().trim_start_matches("http://").to_owned();
    let clone = fake.clone();
    drop(fake);
    assert!(std::net::TcpStream::connect(&address).is_ok(), "a clone keeps the server alive");
    drop(clone);
    assert!(std::net::TcpStream::connect(&address).is_err(), "the last drop stops the server");
}

#[tokio::test(flavor = "current_thread")]
async fn works_from_a_current_thread_runtime_with_synchronous_control_calls() {
    let fake = fake();
    let flow = start_device(&fake, CLIENT, GRAPH_SCOPES).await;
    assert_eq!(fake.pending_device_codes().len(), 1);
    fake.approve_device(flow["user_code"].as_str().unwrap(), ALICE).unwrap();
    assert_eq!(poll_device(&fake, CLIENT, flow["device_code"].as_str().unwrap()).await.status, StatusCode::OK);
}
