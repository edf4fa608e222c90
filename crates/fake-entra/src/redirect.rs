//! Redirect URI matching (Entra's reply-URL rules) and building the redirect back to the client.

use url::Url;

/// Whether `requested` is allowed by the `registered` reply URL.
///
/// Entra ignores the port for loopback URIs (`http://localhost:1234/x` matches a registered
/// `http://localhost/x`) but still compares scheme, host and path exactly and case-sensitively.
/// `localhost` and `127.0.0.1` are different hosts: 127.0.0.1 matches only if it is itself registered.
pub(crate) fn matches_registered(requested: &str, registered: &str) -> bool {
    let (Ok(requested), Ok(registered)) = (Url::parse(requested), Url::parse(registered)) else {
        return false;
    };
    if is_loopback(&registered) {
        requested.scheme() == registered.scheme()
            && requested.host_str() == registered.host_str()
            && requested.path() == registered.path()
            && requested.query() == registered.query()
            && requested.fragment().is_none()
    } else {
        requested == registered
    }
}

fn is_loopback(url: &Url) -> bool {
    url.scheme() == "http" && matches!(url.host_str(), Some("localhost" | "127.0.0.1"))
}

/// `redirect_uri` with `params` added to its query. Parsing through `Url` gives Entra's trailing
/// slash for a URI with no path (`http://localhost:7071/?code=…`).
pub(crate) fn with_query(redirect_uri: &str, params: &[(&str, &str)]) -> Option<String> {
    let mut url = Url::parse(redirect_uri).ok()?;
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in params {
            pairs.append_pair(name, value);
        }
    }
    Some(url.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_port_is_ignored() {
        assert!(matches_registered("http://localhost:1234", "http://localhost"));
        assert!(matches_registered("http://localhost:1234/", "http://localhost"));
        assert!(matches_registered("http://localhost:1234/cb", "http://localhost/cb"));
        assert!(matches_registered("http://localhost/cb", "http://localhost:9999/cb"));
    }

    #[test]
    fn loopback_path_and_host_must_match() {
        assert!(!matches_registered("http://localhost:1234/cb", "http://localhost"));
        assert!(!matches_registered("http://localhost:1234/CB", "http://localhost/cb"));
        assert!(!matches_registered("http://127.0.0.1:1234", "http://localhost"));
        assert!(matches_registered("http://127.0.0.1:1234", "http://127.0.0.1"));
        assert!(!matches_registered("https://localhost:1234", "http://localhost"));
    }

    #[test]
    fn non_loopback_must_match_exactly() {
        assert!(matches_registered("https://app.example.com/cb", "https://app.example.com/cb"));
        assert!(!matches_registered("https://app.example.com:8443/cb", "https://app.example.com/cb"));
        assert!(!matches_registered("not a url", "http://localhost"));
    }

    #[test]
    fn redirect_keeps_trailing_slash_and_encodes_state() {
        let url = with_query("http://localhost:7071", &[("code", "abc"), ("state", "a b&c")]).unwrap();
        assert_eq!(url, "http://localhost:7071/?code=abc&state=a+b%26c");
    }
}
