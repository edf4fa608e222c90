//! The proxy's pure parts: where a path may go, and which headers pass.

use super::*;

fn graph() -> Url {
    Url::parse("https://graph.microsoft.com").unwrap()
}

#[test]
fn a_graph_path_goes_to_the_graph_host_with_its_query() {
    let url = target_url(&graph(), "/graph/v1.0/me/messages", Some("$top=5&$select=subject")).unwrap();
    assert_eq!(url.as_str(), "https://graph.microsoft.com/v1.0/me/messages?$top=5&$select=subject");
    let url = target_url(&graph(), "/graph/beta/me/drive/root:/a%20b.txt:/content", None).unwrap();
    assert_eq!(url.as_str(), "https://graph.microsoft.com/beta/me/drive/root:/a%20b.txt:/content");
    let stand_in = Url::parse("http://127.0.0.1:4000/").unwrap();
    assert_eq!(target_url(&stand_in, "/graph/v1.0/me", None).unwrap().as_str(), "http://127.0.0.1:4000/v1.0/me");
}

#[test]
fn paths_that_would_leave_the_version_or_host_are_refused() {
    for path in [
        "/graph/v1.0/../beta/me",
        "/graph/v1.0/me/../../x",
        "/graph/v1.0/%2e%2e/x",
        "/graph/v1.0/.%2E/x",
        "/graph/v1.0/./me",
        "/graph/v1.0//evil.example/x",
        "/graph/v1.0/me\\..\\x",
        "/graph/v1.0/me%5c..%5cx",
        "/graph/v1.0/..%2fx",
        "/graph/v1.0/..%2Fx",
        "/graph/v1.0/..%2f..%2fevil",
        "/graph/v1.0/me%2F..%2F..%2Fx",
        "/graph/v1.0/me%5C..",
        "/graph/v1.0/%2E/me",
        "/graph/v1.0/%2e./x",
        "/graph/v1.0/",
        "/graph/v1.0",
    ] {
        let error = target_url(&graph(), path, None).unwrap_err();
        assert_eq!(error.code(), ErrorCode::BadRequest, "{path}");
    }
    for path in ["/graph/v2.0/me", "/graph/https:/evil.example", "/graph//me", "/graph/"] {
        assert_eq!(target_url(&graph(), path, None).unwrap_err().code(), ErrorCode::NotFound, "{path}");
    }
    // An @ or a colon in the path stays in the path: the host cannot be smuggled in.
    let url = target_url(&graph(), "/graph/v1.0/@evil.example/x", None).unwrap();
    assert_eq!(url.host_str(), Some("graph.microsoft.com"));
    let url = target_url(&graph(), "/graph/v1.0/me", Some("x=@evil.example:443/")).unwrap();
    assert_eq!(url.host_str(), Some("graph.microsoft.com"));
}

#[test]
fn connection_headers_the_callers_authorization_and_proxy_headers_stay_behind() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("authorization", "Bearer stolen"),
        ("host", "localhost"),
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("transfer-encoding", "chunked"),
        ("x-graphbroker-scopes", "Mail.Read"),
        ("graphbroker-terminal", "1"),
        ("consistencylevel", "eventual"),
        ("content-type", "application/json"),
        ("prefer", "outlook.timezone=\"UTC\""),
    ] {
        headers.append(HeaderName::from_static(name), HeaderValue::from_static(value));
    }
    let out = forwarded(&headers);
    let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["consistencylevel", "content-type", "prefer"]);
}

#[test]
fn proxy_headers_become_a_token_request() {
    let mut headers = HeaderMap::new();
    headers.insert(HeaderName::from_static(names::SCOPES_HEADER), HeaderValue::from_static("Mail.Read, User.Read"));
    headers.insert(HeaderName::from_static(names::PROFILE_HEADER), HeaderValue::from_static("work"));
    headers.insert(HeaderName::from_static(names::WAIT_HEADER), HeaderValue::from_static("30"));
    let request = proxy_request(&headers).unwrap();
    assert_eq!(request.scopes.unwrap(), ["Mail.Read", "User.Read"]);
    assert_eq!(request.profile.as_deref(), Some("work"));
    assert_eq!(request.wait, Duration::from_secs(30));
    headers.insert(HeaderName::from_static(names::WAIT_HEADER), HeaderValue::from_static("soon"));
    assert_eq!(proxy_request(&headers).unwrap_err().code(), ErrorCode::BadRequest);
    assert!(proxy_request(&HeaderMap::new()).unwrap().scopes.is_none());
}
