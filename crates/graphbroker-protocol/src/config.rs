//! `GET /v1/config`: the configuration the daemon runs with, each value with where it came from.
//!
//! The configuration holds no secret (no client secret exists; refresh tokens live in the store), so every value
//! is sent as the daemon resolved it. Values are typed as the config file writes them (strings, integers of
//! seconds, booleans, lists of strings), so a client can print them back as TOML.

use serde::{Deserialize, Serialize};

/// `GET /v1/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigResponse {
    /// The file the running configuration was read from (at start or by the last `SIGHUP` reload that loaded);
    /// `None` when no file was read and every value is a default.
    #[serde(default)]
    pub file: Option<String>,
    /// Every key, in the order of the file's documentation: top-level keys, then each profile's keys as
    /// `profiles.NAME.KEY`.
    pub entries: Vec<ConfigEntry>,
}

/// One key of [`ConfigResponse`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigEntry {
    /// The dotted key, e.g. `http_timeout` or `profiles.work.tenant`.
    pub key: String,
    /// The value in effect; `None` for a key that is not set and has no default (e.g. `login_hint`).
    #[serde(default)]
    pub value: Option<ConfigValue>,
    /// Whether the value was written in [`ConfigResponse::file`] or is the built-in default.
    pub origin: ConfigOrigin,
    /// The 1-based line of the key in the file, when `origin` is [`ConfigOrigin::File`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}

/// Where a [`ConfigEntry`]'s value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigOrigin {
    /// Written in the config file, at [`ConfigEntry::line`].
    File,
    /// Not in the file: the built-in default (or, for a derived key such as `authority`, the built-in rule).
    Default,
}

impl ConfigOrigin {
    /// The spelling on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfigOrigin::File => "file",
            ConfigOrigin::Default => "default",
        }
    }
}

/// A config value, as TOML types it. In JSON: a boolean, a number, a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ConfigValue {
    Bool(bool),
    Integer(u64),
    Text(String),
    List(Vec<String>),
}

impl From<bool> for ConfigValue {
    fn from(value: bool) -> Self {
        ConfigValue::Bool(value)
    }
}

impl From<u64> for ConfigValue {
    fn from(value: u64) -> Self {
        ConfigValue::Integer(value)
    }
}

impl From<&str> for ConfigValue {
    fn from(value: &str) -> Self {
        ConfigValue::Text(value.to_owned())
    }
}

impl From<String> for ConfigValue {
    fn from(value: String) -> Self {
        ConfigValue::Text(value)
    }
}

impl From<Vec<String>> for ConfigValue {
    fn from(value: Vec<String>) -> Self {
        ConfigValue::List(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_back_as_they_were_sent() {
        let answer = ConfigResponse {
            file: Some("/home/adele/.config/graphbroker/config.toml".into()),
            entries: vec![
                ConfigEntry {
                    key: "http_timeout".into(),
                    value: Some(10.into()),
                    origin: ConfigOrigin::Default,
                    line: None,
                },
                ConfigEntry {
                    key: "profiles.work.scopes".into(),
                    value: Some(vec!["User.Read".to_owned()].into()),
                    origin: ConfigOrigin::File,
                    line: Some(4),
                },
                ConfigEntry {
                    key: "profiles.work.login_hint".into(),
                    value: None,
                    origin: ConfigOrigin::Default,
                    line: None,
                },
                ConfigEntry {
                    key: "profiles.work.cae".into(),
                    value: Some(true.into()),
                    origin: ConfigOrigin::File,
                    line: Some(5),
                },
            ],
        };
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(json["entries"][0], serde_json::json!({"key": "http_timeout", "value": 10, "origin": "default"}));
        assert_eq!(json["entries"][1]["value"], serde_json::json!(["User.Read"]));
        assert_eq!(json["entries"][1]["line"], 4);
        assert_eq!(json["entries"][2]["value"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<ConfigResponse>(json).unwrap(), answer);
    }

    #[test]
    fn origins_are_spelled_as_serde_spells_them() {
        for origin in [ConfigOrigin::File, ConfigOrigin::Default] {
            assert_eq!(serde_json::to_value(origin).unwrap(), origin.as_str());
        }
    }
}
