//! Graph's content routes: the streamed attachment download, the streamed upload and its digest, the
//! redirected drive download with its pre-authenticated URL, and Graph's throttling shapes.

mod support;

use fake_entra::{Endpoint, FakeEntra, Fault};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use support::*;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const MIB: u64 = 1024 * 1024;

async fn access_token(fake: &FakeEntra, user: &str, scope: &str) -> String {
    device_sign_in(fake, CLIENT, user, scope).await["access_token"].as_str().unwrap().to_owned()
}

fn attachment_url(fake: &FakeEntra, message_id: &str, attachment_id: &str) -> String {
    format!("{}/v1.0/me/messages/{message_id}/attachments/{attachment_id}/$value", fake.base_url())
}

fn upload_url(fake: &FakeEntra, name: &str) -> String {
    format!("{}/v1.0/me/drive/root:/{name}:/content", fake.base_url())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn assert_graph_error(reply: &Reply, status: StatusCode, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["error"]["code"], code, "{}", reply.text);
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    assert!(body["error"]["innerError"]["request-id"].is_string());
}

/// Reads a response chunk by chunk, hashing as it goes; returns (length, sha256 hex).
async fn hash_streamed(mut response: reqwest::Response) -> (u64, String) {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    while let Some(chunk) = response.chunk().await.unwrap() {
        length += chunk.len() as u64;
        hasher.update(&chunk);
    }
    (length, hex(&hasher.finalize()))
}

#[tokio::test]
async fn a_64_mib_attachment_streams_with_its_length_and_digest() {
    let fake = fake();
    let attachment = fake.add_attachment(ALICE, 64 * MIB).unwrap();
    assert_eq!(attachment.size, 64 * MIB);
    assert_eq!(attachment.sha256.len(), 64);
    assert!(attachment.sha256.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let at = access_token(&fake, ALICE, "Mail.Read offline_access").await;
    let response = http()
        .get(attachment_url(&fake, &attachment.message_id, &attachment.attachment_id))
        .bearer_auth(&at)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/octet-stream");
    assert_eq!(response.content_length(), Some(64 * MIB));
    let (length, sha256) = hash_streamed(response).await;
    assert_eq!(length, 64 * MIB);
    assert_eq!(sha256, attachment.sha256);
    assert_eq!(fake.stats().graph.by_route["attachment"], 1);
}

#[tokio::test]
async fn attachments_differ_and_an_empty_one_is_empty() {
    let fake = fake();
    let a = fake.add_attachment(ALICE, 1000).unwrap();
    let b = fake.add_attachment(ALICE, 1000).unwrap();
    assert_ne!(a.sha256, b.sha256);
    assert_ne!(a.message_id, b.message_id);
    let empty = fake.add_attachment(ALICE, 0).unwrap();
    assert_eq!(empty.sha256, hex(&Sha256::digest(b"")));
    let at = access_token(&fake, ALICE, "Mail.ReadWrite").await;
    let reply = get_bearer(&attachment_url(&fake, &empty.message_id, &empty.attachment_id), &at).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("content-length"), Some("0"));
    assert!(reply.text.is_empty());
}

#[tokio::test]
async fn attachment_needs_mail_read_and_belongs_to_its_user() {
    let fake = fake();
    let attachment = fake.add_attachment(ALICE, 4096).unwrap();
    let url = attachment_url(&fake, &attachment.message_id, &attachment.attachment_id);

    let user_read = access_token(&fake, ALICE, GRAPH_SCOPES).await;
    assert_graph_error(&get_bearer(&url, &user_read).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
    assert_eq!(get(&url).await.status, StatusCode::UNAUTHORIZED);

    let bobs = access_token(&fake, BOB, "Mail.Read").await;
    assert_graph_error(&get_bearer(&url, &bobs).await, StatusCode::NOT_FOUND, "ErrorItemNotFound");
    let alices = access_token(&fake, ALICE, "Mail.Read").await;
    let unknown = attachment_url(&fake, &attachment.message_id, "AAMkAGnothere");
    assert_graph_error(&get_bearer(&unknown, &alices).await, StatusCode::NOT_FOUND, "ErrorItemNotFound");
    let body = http().get(&url).bearer_auth(&alices).send().await.unwrap().bytes().await.unwrap();
    assert_eq!((body.len(), hex(&Sha256::digest(&body))), (4096, attachment.sha256));
}

#[tokio::test]
async fn attachment_over_the_control_api() {
    let fake = fake();
    let reply =
        post_json(&format!("{}/_control/attachment", fake.base_url()), serde_json::json!({"user": BOB, "size": 77}))
            .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text);
    let created: fake_entra::FakeAttachment = serde_json::from_str(&reply.text).unwrap();
    assert_eq!(created.size, 77);
    let at = access_token(&fake, BOB, "Mail.Read").await;
    let body = http()
        .get(attachment_url(&fake, &created.message_id, &created.attachment_id))
        .bearer_auth(at)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(hex(&Sha256::digest(&body)), created.sha256);
    let unknown = post_json(
        &format!("{}/_control/attachment", fake.base_url()),
        serde_json::json!({"user": "nobody@contoso.com", "size": 1}),
    )
    .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.json()["error"], "unknown_user");
}

#[tokio::test]
async fn upload_returns_a_drive_item_with_the_sha256_of_what_arrived() {
    let fake = fake();
    let at = access_token(&fake, ALICE, "Files.ReadWrite offline_access").await;
    let data: Vec<u8> = (0..3 * MIB + 5).map(|i| (i * 31 % 251) as u8).collect();
    let expected = hex(&Sha256::digest(&data));
    let reply = http().put(upload_url(&fake, "report.bin")).bearer_auth(&at).body(data).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    let item: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(item["name"], "report.bin");
    assert_eq!(item["size"], 3 * MIB + 5);
    assert_eq!(item["file"]["mimeType"], "application/octet-stream");
    assert_eq!(item["file"]["hashes"]["sha256Hash"], expected.to_ascii_uppercase());
    let uploads = fake.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!((uploads[0].name.as_str(), uploads[0].size), ("report.bin", 3 * MIB + 5));
    assert_eq!(uploads[0].sha256, expected);
    assert_eq!(item["id"], uploads[0].id);

    let listed = get(&format!("{}/_control/uploads", fake.base_url())).await.json();
    assert_eq!(listed[0]["sha256"], expected);
    assert_eq!(fake.stats().graph.by_route["upload"], 1);
}

/// A chunked body with no Content-Length, written by hand over TCP in pieces: the fake hashes the
/// pieces as they arrive.
#[tokio::test]
async fn chunked_upload_without_content_length() {
    let fake = fake();
    let at = access_token(&fake, ALICE, "Files.ReadWrite.All").await;
    let address = fake.base_url().trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let head = format!(
        "PUT /v1.0/me/drive/root:/big%20file.bin:/content HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {at}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut hasher = Sha256::new();
    let piece: Vec<u8> = (0..65_536u32).map(|i| (i % 253) as u8).collect();
    for _ in 0..40 {
        stream.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).await.unwrap();
        stream.write_all(&piece).await.unwrap();
        stream.write_all(b"\r\n").await.unwrap();
        hasher.update(&piece);
    }
    stream.write_all(b"0\r\n\r\n").await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let upload = &fake.uploads()[0];
    assert_eq!(upload.name, "big file.bin");
    assert_eq!(upload.size, 40 * 65_536);
    assert_eq!(upload.sha256, hex(&hasher.finalize()));
    assert!(answer.contains(&upload.sha256.to_ascii_uppercase()));
}

#[tokio::test]
async fn upload_needs_files_read_write_and_a_valid_token() {
    let fake = fake();
    let read_only = access_token(&fake, ALICE, "Files.Read").await;
    let reply = http().put(upload_url(&fake, "a.bin")).bearer_auth(&read_only).body("x").send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::FORBIDDEN);
    let reply = http().put(upload_url(&fake, "a.bin")).body("x").send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert!(reply.headers().contains_key("www-authenticate"));
    let writer = access_token(&fake, ALICE, "Files.ReadWrite").await;
    let reply = http().get(upload_url(&fake, "a.bin")).bearer_auth(&writer).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert!(fake.uploads().is_empty());
}

#[tokio::test]
async fn drive_download_redirects_to_a_preauthenticated_url() {
    let fake = fake();
    let at = access_token(&fake, ALICE, "Files.ReadWrite").await;
    let reply =
        http().put(upload_url(&fake, "report.bin")).bearer_auth(&at).body(vec![7u8; 5000]).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    let id = fake.uploads()[0].id.clone();

    let item_url = format!("{}/v1.0/me/drive/items/{id}/content", fake.base_url());
    let redirect = get_bearer(&item_url, &at).await;
    assert_eq!(redirect.status, StatusCode::FOUND, "{}", redirect.text);
    let location = redirect.location();
    let prefix = format!("{}/_content/{id}?tempauth=", fake.base_url());
    assert!(location.starts_with(&prefix), "{location}");
    assert!(location.len() > prefix.len() + 16, "{location}");
    assert_ne!(get_bearer(&item_url, &at).await.location(), location, "each redirect gets a fresh tempauth");

    let tempauth = location.rsplit('=').next().unwrap();
    assert!(fake.issued_secrets().iter().any(|s| s == tempauth), "a tempauth is a credential");

    let download = get(&location).await;
    assert_eq!(download.status, StatusCode::OK);
    assert_eq!(download.header("content-length"), Some("5000"));
    assert_eq!(download.header("content-type"), Some("application/octet-stream"));
    assert_eq!(fake.stats().graph.preauthenticated_with_authorization, 0);

    // A client that forwards its bearer to the storage URL is counted.
    assert_eq!(get_bearer(&location, &at).await.status, StatusCode::OK);
    let stats = fake.stats();
    assert_eq!(stats.graph.preauthenticated_with_authorization, 1);
    assert_eq!(stats.graph.by_route["content"], 2);
    assert_eq!(stats.graph.by_route["item_content"], 2);

    let forged = format!("{prefix}forged");
    assert_eq!(get(&forged).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(&format!("{}/_content/{id}", fake.base_url())).await.status, StatusCode::UNAUTHORIZED);
    let wrong_item = format!("{}/_content/01OTHER?tempauth={tempauth}", fake.base_url());
    assert_eq!(get(&wrong_item).await.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn drive_download_of_another_users_or_unknown_item_is_404() {
    let fake = fake();
    let alice = access_token(&fake, ALICE, "Files.ReadWrite").await;
    http().put(upload_url(&fake, "mine.bin")).bearer_auth(&alice).body("abc").send().await.unwrap();
    let id = fake.uploads()[0].id.clone();
    let bob = access_token(&fake, BOB, "Files.Read").await;
    let url = format!("{}/v1.0/me/drive/items/{id}/content", fake.base_url());
    assert_graph_error(&get_bearer(&url, &bob).await, StatusCode::NOT_FOUND, "itemNotFound");
    let unknown = format!("{}/v1.0/me/drive/items/01NOPE/content", fake.base_url());
    assert_graph_error(&get_bearer(&unknown, &alice).await, StatusCode::NOT_FOUND, "itemNotFound");
    let mail_only = access_token(&fake, ALICE, "Mail.Read").await;
    assert_graph_error(&get_bearer(&url, &mail_only).await, StatusCode::FORBIDDEN, "Authorization_RequestDenied");
}

#[tokio::test]
async fn graph_throttling_is_429_with_retry_after_and_the_inner_error() {
    let fake = fake();
    let at = access_token(&fake, ALICE, "Files.ReadWrite").await;
    fake.inject_fault(Endpoint::Graph, 1, Fault::status(429, Some(7)));
    let reply = http().put(upload_url(&fake, "t.bin")).bearer_auth(&at).body("x").send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers()["retry-after"], "7");
    let body: serde_json::Value = reply.json().await.unwrap();
    let error = &body["error"];
    assert_eq!(error["code"], "TooManyRequests");
    assert_eq!(error["message"], "Please retry again later.");
    let inner = &error["innerError"];
    assert_eq!(inner["code"], "429");
    assert_eq!(inner["status"], "429");
    assert_eq!(inner["message"], "Please retry after");
    assert!(inner["request-id"].is_string() && inner["date"].is_string());
    assert!(fake.uploads().is_empty(), "a throttled upload is not recorded");

    fake.inject_fault(Endpoint::Graph, 1, Fault::status(503, Some(2)));
    let reply = get_bearer(&format!("{}/beta/me", fake.base_url()), &at).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(reply.header("retry-after"), Some("2"));
    assert_eq!(reply.json()["error"]["innerError"]["status"], "503");
    let stats = fake.stats();
    assert_eq!(stats.faults_fired["graph"], 2);
    assert_eq!(stats.graph.requests, 2);
}

#[tokio::test]
async fn graph_faults_arm_over_http_under_the_old_name_me_too() {
    let fake = fake();
    let url = format!("{}/_control/faults", fake.base_url());
    for endpoint in ["me", "graph"] {
        let body = serde_json::json!({"endpoint": endpoint, "count": 1, "fault": {"status": 429, "retry_after": 1}});
        assert_eq!(post_json(&url, body).await.status, StatusCode::OK);
        let attachment = fake.add_attachment(ALICE, 1).unwrap();
        let reply = get(&attachment_url(&fake, &attachment.message_id, &attachment.attachment_id)).await;
        assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{endpoint}");
    }
}

#[tokio::test]
async fn unknown_graph_paths_are_graph_shaped_and_others_bare_404() {
    let fake = fake();
    let reply = get(&format!("{}/v1.0/nowhere/x", fake.base_url())).await;
    assert_graph_error(&reply, StatusCode::BAD_REQUEST, "BadRequest");
    assert_eq!(reply.json()["error"]["message"], "Resource not found for the segment 'nowhere'.");
    assert_eq!(fake.stats().graph.by_route["other"], 1);
    let outside = get(&format!("{}/elsewhere", fake.base_url())).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
}
