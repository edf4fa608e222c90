//! Reading a resource's claims challenge out of its `WWW-Authenticate` headers (RFC 6750 §3, CAE).
//!
//! Graph sends `Bearer realm="", authorization_uri="…", error="insufficient_claims", claims="<base64>"`. The
//! parameter order is not fixed and there may be several headers (entra-protocol.md §6), so each header is parsed
//! as a list of challenges and auth-params rather than searched for a substring.

/// The `claims` value of the first `Bearer` challenge whose `error` is `insufficient_claims`, as sent (base64).
pub(crate) fn insufficient_claims<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    headers.into_iter().flat_map(challenges).find_map(|challenge| {
        let is =
            |name: &str, value: &str| challenge.params.iter().any(|(n, v)| n.eq_ignore_ascii_case(name) && v == value);
        let bearer = challenge.scheme.eq_ignore_ascii_case("Bearer");
        (bearer && is("error", "insufficient_claims"))
            .then(|| challenge.params.iter().find(|(n, _)| n.eq_ignore_ascii_case("claims")).map(|(_, v)| v.clone()))
            .flatten()
            .filter(|claims| !claims.is_empty())
    })
}

/// One challenge: its scheme and its `name=value` parameters (quoted strings unescaped).
#[derive(Debug, Default, PartialEq)]
struct Challenge {
    scheme: String,
    params: Vec<(String, String)>,
}

/// Splits one header value into challenges: `Scheme a=1, b="x, y", Other c=2`.
fn challenges(header: &str) -> Vec<Challenge> {
    let mut found: Vec<Challenge> = Vec::new();
    let mut rest = header;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return found;
        }
        let token_end = rest.find([' ', '\t', ',', '=']).unwrap_or(rest.len());
        let (token, after) = rest.split_at(token_end);
        let after_spaces = after.trim_start_matches([' ', '\t']);
        if let Some(value_part) = after_spaces.strip_prefix('=') {
            // `token=value`: a parameter of the current challenge.
            let (value, remainder) = parse_value(value_part.trim_start_matches([' ', '\t']));
            match found.last_mut() {
                Some(challenge) => challenge.params.push((token.to_owned(), value)),
                None => return found, // a parameter before any scheme: not a challenge list
            }
            rest = remainder;
        } else {
            // A bare token: a new challenge's scheme.
            found.push(Challenge { scheme: token.to_owned(), params: Vec::new() });
            rest = after;
        }
    }
}

/// A quoted string (with `\` escapes) or a token, and what follows it.
fn parse_value(text: &str) -> (String, &str) {
    let Some(quoted) = text.strip_prefix('"') else {
        let end = text.find([',', ' ', '\t']).unwrap_or(text.len());
        return (text[..end].to_owned(), &text[end..]);
    };
    let mut value = String::new();
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return (value, &quoted[i + 1..]),
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            c => value.push(c),
        }
    }
    // An unterminated quote: take what there is.
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRAPH: &str = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", error="insufficient_claims", claims="eyJhY2Nlc3NfdG9rZW4iOnsibmJmIjp7ImVzc2VudGlhbCI6dHJ1ZSwgInZhbHVlIjoiMTYwNDEwNjY1MSJ9fX0=""#;

    #[test]
    fn graph_cae_challenge_yields_its_claims() {
        let claims = insufficient_claims([GRAPH]).unwrap();
        assert!(claims.starts_with("eyJhY2Nlc3NfdG9rZW4i") && claims.ends_with("fX0="), "{claims}");
    }

    #[test]
    fn order_case_and_several_headers_do_not_matter() {
        let reordered = r#"bearer claims="e30=", ERROR="insufficient_claims", realm="""#;
        assert_eq!(insufficient_claims(["Basic realm=\"x\"", reordered]).as_deref(), Some("e30="));
        let two_in_one = r#"Basic realm="a, b", Bearer error="insufficient_claims", claims="e30=""#;
        assert_eq!(insufficient_claims([two_in_one]).as_deref(), Some("e30="));
    }

    #[test]
    fn other_challenges_are_not_claims_challenges() {
        let ordinary = r#"Bearer realm="", authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", client_id="00000003-0000-0000-c000-000000000000""#;
        assert_eq!(insufficient_claims([ordinary]), None);
        assert_eq!(insufficient_claims([r#"Bearer error="invalid_token", claims="e30=""#]), None);
        assert_eq!(insufficient_claims([r#"Basic error="insufficient_claims", claims="e30=""#]), None);
        assert_eq!(insufficient_claims([r#"Bearer error="insufficient_claims", claims="""#]), None);
        assert_eq!(insufficient_claims([r#"Bearer error="insufficient_claims""#]), None);
        assert_eq!(
            insufficient_claims(["", "=", "\"", "Bearer error=\"insufficient_claims\", claims=\"unterminated"])
                .as_deref(),
            Some("unterminated")
        );
    }

    #[test]
    fn quoted_values_unescape() {
        let escaped = r#"Bearer error="insufficient_claims", claims="a\"b""#;
        assert_eq!(insufficient_claims([escaped]).as_deref(), Some("a\"b"));
    }
}
