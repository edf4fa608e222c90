//! Helpers shared by the stand-in's own integration tests: an HTTP client, Entra-error assertions,
//! and the sign-in flows as short functions.
#![allow(dead_code)] // reason: each test binary uses a different subset of these helpers

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fake_entra::FakeEntra;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

pub const CLIENT: &str = fake_entra::DEFAULT_CLIENT_ID;
pub const OTHER_CLIENT: &str = "0a0b0c0d-1111-2222-3333-444455556666";
pub const ALICE: &str = "alice@contoso.com";
pub const BOB: &str = "bob.smith@contoso.com";
pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const GRAPH_SCOPES: &str = "User.Read openid profile offline_access";

/// A fake with two clients, two users and no polling interval (so tests can poll back to back).
pub fn fake() -> FakeEntra {
    builder().start().unwrap()
}

pub fn builder() -> fake_entra::FakeEntraBuilder {
    FakeEntra::builder().client(CLIENT).client(OTHER_CLIENT).user(ALICE).user(BOB).device_interval(Duration::ZERO)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> String {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location; status {} body {}", self.status, self.text))
            .to_owned()
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    Reply { status, headers, text: response.text().await.unwrap() }
}

pub async fn post_form(url: &str, form: &[(&str, &str)]) -> Reply {
    reply(http().post(url).form(form).send().await.unwrap()).await
}

pub async fn get(url: &str) -> Reply {
    reply(http().get(url).send().await.unwrap()).await
}

pub async fn get_bearer(url: &str, token: &str) -> Reply {
    reply(http().get(url).bearer_auth(token).send().await.unwrap()).await
}

pub async fn post_json(url: &str, body: Value) -> Reply {
    reply(http().post(url).json(&body).send().await.unwrap()).await
}

pub async fn token(fake: &FakeEntra, form: &[(&str, &str)]) -> Reply {
    post_form(&format!("{}/oauth2/v2.0/token", fake.authority("common")), form).await
}

/// Asserts the whole Entra error contract: status, `error`, `error_codes`, the description's
/// `AADSTSnnnn:` prefix and trace/correlation/timestamp suffix, and the no-store headers.
pub fn assert_entra_error(reply: &Reply, status: u16, error: &str, code: u32) -> Value {
    assert_eq!(reply.status.as_u16(), status, "status; body {}", reply.text);
    let body = reply.json();
    assert_eq!(body["error"], error, "error; body {}", reply.text);
    assert_eq!(body["error_codes"], serde_json::json!([code]), "error_codes; body {}", reply.text);
    let description = body["error_description"].as_str().unwrap();
    assert!(description.starts_with(&format!("AADSTS{code}: ")), "description {description:?}");
    let trace = body["trace_id"].as_str().unwrap();
    let correlation = body["correlation_id"].as_str().unwrap();
    let timestamp = body["timestamp"].as_str().unwrap();
    assert!(
        description
            .ends_with(&format!("\r\nTrace ID: {trace}\r\nCorrelation ID: {correlation}\r\nTimestamp: {timestamp}")),
        "description {description:?}"
    );
    assert_eq!(timestamp.len(), "2023-09-14 10:13:41Z".len());
    assert!(timestamp.ends_with('Z') && timestamp.as_bytes()[10] == b' ', "timestamp {timestamp}");
    assert_no_store(reply);
    body
}

pub fn assert_no_store(reply: &Reply) {
    assert_eq!(reply.header("cache-control"), Some("no-store, no-cache"));
    assert_eq!(reply.header("pragma"), Some("no-cache"));
}

pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Decodes the claims segment of a JWT-shaped token.
pub fn claims(token: &str) -> Value {
    let segment = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

/// Starts a device flow; returns the devicecode response.
pub async fn start_device(fake: &FakeEntra, client: &str, scope: &str) -> Value {
    let reply = post_form(
        &format!("{}/oauth2/v2.0/devicecode", fake.authority("common")),
        &[("client_id", client), ("scope", scope)],
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

pub async fn poll_device(fake: &FakeEntra, client: &str, device_code: &str) -> Reply {
    token(fake, &[("grant_type", DEVICE_GRANT), ("client_id", client), ("device_code", device_code)]).await
}

/// A whole device-code sign-in as `user`; returns the token response.
pub async fn device_sign_in(fake: &FakeEntra, client: &str, user: &str, scope: &str) -> Value {
    let flow = start_device(fake, client, scope).await;
    fake.approve_device(flow["user_code"].as_str().unwrap(), user).unwrap();
    let reply = poll_device(fake, client, flow["device_code"].as_str().unwrap()).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    reply.json()
}

pub async fn refresh(fake: &FakeEntra, client: &str, refresh_token: &str, scope: &str) -> Reply {
    token(
        fake,
        &[("grant_type", "refresh_token"), ("client_id", client), ("refresh_token", refresh_token), ("scope", scope)],
    )
    .await
}

/// The authorize URL for a PKCE request with an S256 challenge of [`VERIFIER`].
pub fn authorize_url(fake: &FakeEntra, extra: &[(&str, &str)]) -> String {
    let challenge = s256(VERIFIER);
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", CLIENT),
        ("response_type", "code"),
        ("redirect_uri", "http://localhost:7071"),
        ("scope", GRAPH_SCOPES),
        ("state", "st-123"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let query = serde_urlencoded::to_string(&params).unwrap();
    format!("{}/oauth2/v2.0/authorize?{query}", fake.authority("common"))
}

/// Query parameters of a redirect URL.
pub fn query_of(url: &str) -> std::collections::HashMap<String, String> {
    let parsed = url::Url::parse(url).unwrap();
    parsed.query_pairs().into_owned().collect()
}

/// Opens the authorize page and accepts it as `user` through the control API; returns the code.
pub async fn browser_code(fake: &FakeEntra, user: &str) -> String {
    let page = get(&authorize_url(fake, &[])).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let redirect = fake.approve_browser("st-123", user).unwrap();
    query_of(&redirect)["code"].clone()
}

pub async fn redeem(fake: &FakeEntra, code: &str, extra: &[(&str, &str)]) -> Reply {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("client_id", CLIENT),
        ("code", code),
        ("redirect_uri", "http://localhost:7071"),
        ("code_verifier", VERIFIER),
        ("scope", GRAPH_SCOPES),
    ];
    for (name, value) in extra {
        form.retain(|(n, _)| n != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    token(fake, &form).await
}
