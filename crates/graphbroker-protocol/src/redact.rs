//! URLs shown in `Debug` output without the values that let someone else finish a sign-in.

/// Query parameters whose values are never printed: the browser sign-in's `state` (with it, another program could
/// answer the loopback redirect), and the authorization code and verifier, should a URL ever carry them.
const SECRET_PARAMETERS: &[&str] = &["state", "code", "code_verifier", "device_code", "refresh_token"];

/// `url` with the values of [`SECRET_PARAMETERS`] replaced by `[redacted]`; everything else as it was.
pub fn redact_url(url: &str) -> String {
    let Some((base, rest)) = url.split_once('?') else { return url.to_owned() };
    let (query, fragment) = match rest.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (rest, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMETERS.contains(&name) => format!("{name}=[redacted]"),
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{base}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_go_and_the_rest_stays() {
        let url = "https://login.example/authorize?client_id=abc&state=s3cr3t&code_challenge=xyz&code=c0de#frag";
        assert_eq!(
            redact_url(url),
            "https://login.example/authorize?client_id=abc&state=[redacted]&code_challenge=xyz&code=[redacted]#frag"
        );
        assert_eq!(redact_url("http://localhost:1234/"), "http://localhost:1234/");
        // A parameter that merely ends in a secret name is not one.
        assert_eq!(redact_url("x?mystate=1&state"), "x?mystate=1&state");
    }
}
