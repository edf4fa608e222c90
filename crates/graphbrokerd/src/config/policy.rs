//! The `[policy]` table: as written (`RawPolicy`, serde, refused with its line when a key or value is unknown),
//! and resolved (`PolicyConfig`), each rule checked and given its line in the file.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Profile};

/// How long an `ask` waits for the user's answer by default, and at most.
pub const DEFAULT_ASK_TIMEOUT: Duration = Duration::from_secs(120);
const MAX_ASK_TIMEOUT: Duration = Duration::from_secs(900);

/// What a request no rule covers gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyDefault {
    /// Served, as before the policy existed; still audited.
    #[default]
    Allow,
    /// `403 policy_denied`.
    Deny,
    /// Held while the user is asked (a desktop notification, or `graphbroker-client policy approve`).
    Ask,
}

impl PolicyDefault {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }
}

/// What a rule does to the requests it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuleAction {
    #[default]
    Allow,
    Deny,
}

impl RuleAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// Which callers a rule names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// An executable path, outside any sandbox.
    Program(String),
    /// A systemd unit, outside any sandbox.
    Unit(String),
    /// A flatpak app id or a snap's name.
    Sandbox(String),
}

impl Selector {
    pub fn key(&self) -> &'static str {
        match self {
            Self::Program(_) => "program",
            Self::Unit(_) => "unit",
            Self::Sandbox(_) => "sandbox",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Program(v) | Self::Unit(v) | Self::Sandbox(v) => v,
        }
    }
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub action: RuleAction,
    pub selector: Selector,
    /// Every profile when `None`.
    pub profiles: Option<Vec<String>>,
    /// Every scope when `None`; else a request's scopes must all be among these (normalized as requests are).
    pub scopes: Option<Vec<String>>,
    /// Its `[[policy.rules]]` line in the file, when written as such.
    pub line: Option<u32>,
}

/// The policy in effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    pub default: PolicyDefault,
    pub ask_timeout: Duration,
    pub rules: Vec<Rule>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { default: PolicyDefault::Allow, ask_timeout: DEFAULT_ASK_TIMEOUT, rules: Vec::new() }
    }
}

/// `[policy]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    default: Option<PolicyDefault>,
    /// Seconds.
    ask_timeout: Option<u64>,
    rules: Option<Vec<RawRule>>,
}

/// One `[[policy.rules]]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    action: Option<RuleAction>,
    program: Option<String>,
    unit: Option<String>,
    sandbox: Option<String>,
    profiles: Option<Vec<String>>,
    scopes: Option<Vec<String>>,
}

impl PolicyConfig {
    /// Checks `raw` against the resolved `profiles`; `text` is the file's, for the rules' lines.
    pub fn resolve(
        raw: Option<RawPolicy>,
        profiles: &BTreeMap<String, Profile>,
        text: &str,
        path: &Path,
    ) -> Result<Self, ConfigError> {
        let Some(raw) = raw else { return Ok(Self::default()) };
        let invalid = |key: String, message: String| ConfigError::Invalid { path: path.to_path_buf(), key, message };
        let ask_timeout = match raw.ask_timeout.map(Duration::from_secs) {
            Some(t) if t.is_zero() || t > MAX_ASK_TIMEOUT => {
                return Err(invalid(
                    "policy.ask_timeout".into(),
                    format!("must be between 1 and {} seconds", MAX_ASK_TIMEOUT.as_secs()),
                ));
            }
            Some(t) => t,
            None => DEFAULT_ASK_TIMEOUT,
        };
        let lines = rule_lines(text);
        let mut rules = Vec::new();
        for (i, raw_rule) in raw.rules.unwrap_or_default().into_iter().enumerate() {
            let line = lines.get(i).copied();
            let key = match line {
                Some(line) => format!("policy.rules (the rule at line {line})"),
                None => format!("policy.rules[{i}]"),
            };
            rules.push(rule(raw_rule, profiles, line).map_err(|message| invalid(key, message))?);
        }
        Ok(Self { default: raw.default.unwrap_or_default(), ask_timeout, rules })
    }
}

fn rule(raw: RawRule, profiles: &BTreeMap<String, Profile>, line: Option<u32>) -> Result<Rule, String> {
    let selector = match (raw.program, raw.unit, raw.sandbox) {
        (Some(program), None, None) => {
            if !program.starts_with('/') {
                return Err(format!("program {program:?} must be an absolute path, e.g. \"/usr/bin/mbsync\""));
            }
            Selector::Program(program)
        }
        (None, Some(unit), None) if !unit.trim().is_empty() => Selector::Unit(unit),
        (None, None, Some(app)) if !app.trim().is_empty() => Selector::Sandbox(app),
        _ => return Err("must name exactly one of program, unit or sandbox, not empty".into()),
    };
    if let Some(names) = &raw.profiles
        && let Some(unknown) = names.iter().find(|name| !profiles.contains_key(*name))
    {
        let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
        return Err(format!("names profile {unknown:?}, which is not defined (known: {})", known.join(", ")));
    }
    if let Some(scopes) = &raw.scopes
        && (scopes.is_empty() || scopes.iter().any(|s| s.trim().is_empty() || s.contains(char::is_whitespace)))
    {
        return Err("scopes must be a list of scopes without spaces; leave it out for every scope".into());
    }
    Ok(Rule { action: raw.action.unwrap_or_default(), selector, profiles: raw.profiles, scopes: raw.scopes, line })
}

/// The 1-based line of each `[[policy.rules]]` header of `text`, in order.
fn rule_lines(text: &str) -> Vec<u32> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim();
            line.strip_prefix("[[")
                .and_then(|l| l.split("]]").next())
                .is_some_and(|name| name.split('.').map(str::trim).eq(["policy", "rules"]))
        })
        .map(|(i, _)| u32::try_from(i + 1).unwrap_or(u32::MAX))
        .collect()
}
