//! Request parameters read the way Entra reads them: form body or query string, first value wins,
//! unknown names ignored (MSAL sends `client_info`, `claims`, `code` and telemetry we do not use).

use std::collections::HashMap;

#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn parse(encoded: &[u8]) -> Self {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(encoded).unwrap_or_default();
        let mut map = HashMap::new();
        for (name, value) in pairs {
            map.entry(name).or_insert(value);
        }
        Self(map)
    }

    /// The value, treating an empty one as absent (Entra answers `client_id=` like a missing client_id).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_value_wins_and_empty_is_absent() {
        let params = Params::parse(b"a=1&a=2&b=&c=x+y%26");
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert!(params.has("b"));
        assert_eq!(params.get("c"), Some("x y&"));
    }
}
