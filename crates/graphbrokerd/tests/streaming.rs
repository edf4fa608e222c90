//! Bodies stream through the Graph proxy both ways: an upload and a download each several times the daemon's
//! memory budget leave its peak RSS where it was, and arrive whole (their SHA-256 checked end to end). A redirect
//! to a pre-authenticated download URL comes back to the caller unfollowed.

mod support;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use graphbroker_client::{GraphBody, GraphRequest};
use http_body_util::{BodyExt, StreamBody};
use hyper::Method;
use hyper::body::Frame;
use sha2::{Digest, Sha256};
use support::*;

/// The daemon's memory budget (docs/performance.md): what it may use at most, idle or streaming.
const MEMORY_BUDGET: u64 = 32 * 1024 * 1024;
/// Each body is five times the budget: buffering one would show at once.
const BODY: u64 = 5 * MEMORY_BUDGET;
const CHUNK: usize = 64 * 1024;
const SCOPES: &str = "Files.ReadWrite Mail.Read";

/// `VmHWM` (peak resident set) of `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// `BODY` bytes generated as they are sent, hashed on the way.
fn generated_body(digest: Arc<Mutex<Sha256>>) -> GraphBody {
    let chunks = (BODY as usize / CHUNK) as u32;
    let stream = futures_util::stream::iter((0..chunks).map(move |i| {
        let chunk: Vec<u8> = (0..CHUNK).map(|j| (i as usize * 31 + j) as u8).collect();
        digest.lock().unwrap().update(&chunk);
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(chunk)))
    }));
    StreamBody::new(stream).boxed()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn bodies_larger_than_the_memory_budget_stream_through_with_rss_flat() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("stream"), ""));
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &["Files.ReadWrite", "Mail.Read"]).unwrap();
    sign_in(&client, &fake, SCOPES, ALICE).await;
    let scoped = |mut request: GraphRequest| {
        request.scopes = Some(SCOPES.into());
        request
    };
    // Warm the proxy's client and connection pool before the baseline.
    let small = fake.add_attachment(ALICE, 1024).unwrap();
    let path = format!("/v1.0/me/messages/{}/attachments/{}/$value", small.message_id, small.attachment_id);
    let warm = client.graph(scoped(GraphRequest::new(Method::GET, path))).await.unwrap();
    assert_eq!(warm.status(), 200);
    warm.into_body().collect().await.unwrap();
    let before = peak_rss(daemon.pid());

    let digest = Arc::new(Mutex::new(Sha256::new()));
    let mut upload = scoped(GraphRequest::new(Method::PUT, "/v1.0/me/drive/root:/large.bin:/content"));
    upload.headers.insert(hyper::header::CONTENT_TYPE, "application/octet-stream".parse().unwrap());
    upload.body = generated_body(digest.clone());
    let response = client.graph(upload).await.expect("upload proxied");
    assert_eq!(response.status(), 201);
    let item: serde_json::Value =
        serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
    let sent = hex(&digest.lock().unwrap().clone().finalize());
    assert_eq!(item["size"], BODY);
    assert_eq!(item["file"]["hashes"]["sha256Hash"].as_str().unwrap().to_ascii_lowercase(), sent);

    let attachment = fake.add_attachment(ALICE, BODY).unwrap();
    let path = format!("/v1.0/me/messages/{}/attachments/{}/$value", attachment.message_id, attachment.attachment_id);
    let response = client.graph(scoped(GraphRequest::new(Method::GET, path))).await.expect("download proxied");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Sha256::new();
    let mut size = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.expect("body").data_ref() {
            received.update(data);
            size += data.len() as u64;
        }
    }
    assert_eq!(size, BODY);
    assert_eq!(hex(&received.finalize()), attachment.sha256);

    let after = peak_rss(daemon.pid());
    let grew = after.saturating_sub(before);
    eprintln!("peak RSS before {} KiB, after {} KiB", before / 1024, after / 1024);
    assert!(
        grew < MEMORY_BUDGET / 2,
        "peak RSS grew by {} KiB while {} MiB went each way (from {} to {} KiB)",
        grew / 1024,
        BODY >> 20,
        before / 1024,
        after / 1024
    );
    assert!(after < MEMORY_BUDGET * 2, "peak RSS {} KiB (a debug build)", after / 1024);
}

#[tokio::test]
async fn a_redirect_to_a_preauthenticated_url_is_passed_back_unfollowed() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("redirect"), ""));
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &["Files.ReadWrite"]).unwrap();
    sign_in(&client, &fake, "Files.ReadWrite", ALICE).await;
    let mut upload = GraphRequest::new(Method::PUT, "/v1.0/me/drive/root:/small.txt:/content");
    upload.scopes = Some("Files.ReadWrite".into());
    upload.body = http_body_util::Full::new(Bytes::from_static(b"hello")).map_err(|never| match never {}).boxed();
    assert_eq!(client.graph(upload).await.unwrap().status(), 201);
    let id = fake.uploads()[0].id.clone();

    let mut download = GraphRequest::new(Method::GET, format!("/v1.0/me/drive/items/{id}/content"));
    download.scopes = Some("Files.ReadWrite".into());
    let response = client.graph(download).await.expect("Graph's answer");
    assert_eq!(response.status(), 302);
    let location = response.headers()[hyper::header::LOCATION].to_str().unwrap().to_owned();
    assert!(location.contains("/_content/") && location.contains("tempauth="), "{location}");
    let stats = fake.stats();
    assert_eq!(stats.graph.by_route.get("content").copied().unwrap_or(0), 0, "the proxy did not follow it");
    assert_eq!(stats.graph.preauthenticated_with_authorization, 0);
    // The caller follows it itself, without any token: the URL is pre-authenticated.
    let content = reqwest::get(&location).await.unwrap();
    assert_eq!(content.status(), 200);
    assert_eq!(fake.stats().graph.preauthenticated_with_authorization, 0);
}
