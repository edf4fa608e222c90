//! Paging through the Graph proxy: the `@odata.nextLink` of each page of the stand-in's `/me/messages` comes back
//! pointing at the proxy, so that following links as they are (what every SDK's page iterator does) walks the
//! whole collection through the socket.

mod support;

use graphbroker_client::GraphRequest;
use graphbroker_protocol::proxy;
use http_body_util::BodyExt;
use hyper::Method;
use support::*;

const SCOPES: &str = "Mail.Read";

async fn page(
    client: &graphbroker_client::Client,
    path: &str,
    host: Option<&str>,
) -> (hyper::HeaderMap, serde_json::Value) {
    let mut request = GraphRequest::new(Method::GET, path);
    request.scopes = Some(SCOPES.into());
    if let Some(host) = host {
        request.headers.insert(hyper::header::HOST, host.parse().unwrap());
    }
    // A caller that asks for compression gets plain JSON: the links could not be rewritten otherwise.
    request.headers.insert(hyper::header::ACCEPT_ENCODING, "gzip, deflate".parse().unwrap());
    let response = client.graph(request).await.expect("proxied");
    assert_eq!(response.status(), 200, "{path}");
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.expect("body").to_bytes();
    (headers, serde_json::from_slice(&bytes).expect("a JSON page"))
}

#[tokio::test]
async fn next_links_point_back_at_the_proxy_and_walk_every_page() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("paging"), ""));
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &[SCOPES]).unwrap();
    sign_in(&client, &fake, SCOPES, ALICE).await;
    fake.set_messages(ALICE, 5).unwrap();

    let mut subjects = Vec::new();
    let mut path = "/v1.0/me/messages?$top=2".to_owned();
    let mut pages = 0;
    loop {
        let (headers, body) = page(&client, &path, None).await;
        pages += 1;
        assert_eq!(headers[proxy::REWRITTEN_HEADER], proxy::REWRITTEN_ODATA_LINKS);
        assert!(headers.get(hyper::header::CONTENT_ENCODING).is_none(), "the proxy asked Graph for plain JSON");
        subjects.extend(body["value"].as_array().unwrap().iter().map(|m| m["subject"].as_str().unwrap().to_owned()));
        let Some(next) = body["@odata.nextLink"].as_str() else { break };
        let rest = next.strip_prefix("http://localhost/graph").unwrap_or_else(|| panic!("not the proxy's: {next}"));
        assert!(!next.contains(fake.base_url().trim_start_matches("http://")), "{next}");
        path = rest.to_owned();
    }
    assert_eq!(pages, 3);
    assert_eq!(subjects, ["Message 5", "Message 4", "Message 3", "Message 2", "Message 1"]);
    assert_eq!(fake.stats().graph.by_route["messages"], 3, "every page came from Graph through the proxy");

    // The link carries the Host the caller used, so a client with another base URL comes back the same way.
    let (_, body) = page(&client, "/v1.0/me/messages?$top=2", Some("127.0.0.1:8080")).await;
    let next = body["@odata.nextLink"].as_str().unwrap();
    assert!(next.starts_with("http://127.0.0.1:8080/graph/v1.0/me/messages?"), "{next}");
}

#[tokio::test]
async fn answers_that_are_not_json_are_not_touched() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("paging-raw"), ""));
    let client = daemon.client();
    fake.grant_consent(ALICE, CLIENT_ID, &[SCOPES]).unwrap();
    sign_in(&client, &fake, SCOPES, ALICE).await;
    let attachment = fake.add_attachment(ALICE, 4096).unwrap();
    let mut request = GraphRequest::new(
        Method::GET,
        format!("/v1.0/me/messages/{}/attachments/{}/$value", attachment.message_id, attachment.attachment_id),
    );
    request.scopes = Some(SCOPES.into());
    let response = client.graph(request).await.expect("proxied");
    assert_eq!(response.status(), 200);
    assert!(response.headers().get(proxy::REWRITTEN_HEADER).is_none());
    assert_eq!(response.headers()[hyper::header::CONTENT_LENGTH], "4096", "the length passes as Graph sent it");
}
