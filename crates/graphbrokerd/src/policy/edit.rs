//! A rule appended to the config file — the answer "always", or `graphbroker-client policy allow|deny` — and
//! applied as a reload would apply it. The new text is parsed by the config loader before it replaces the file
//! (written beside it, then renamed over it), so a rule that would not load is never written.

use std::os::unix::fs::PermissionsExt as _;

use super::RuleAction;
use crate::broker::Broker;
use crate::caller::Program;
use crate::config::{Config, Profile};
use crate::error::ApiError;

/// A rule to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub action: RuleAction,
    /// `program`, `unit` or `sandbox`, and its value.
    pub key: &'static str,
    pub value: String,
    pub profiles: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
}

impl NewRule {
    /// The rule that allows `program` what it asked for: by its sandbox when it has one, else by its executable.
    pub fn for_caller(program: &Program, profile: &Profile, scopes: &[String]) -> Self {
        let (key, value) = match &program.sandbox {
            Some(sandbox) => ("sandbox", sandbox.app_id.clone()),
            None => ("program", program.exe.clone()),
        };
        Self {
            action: RuleAction::Allow,
            key,
            value,
            profiles: Some(vec![profile.name.clone()]),
            scopes: Some(scopes.to_vec()),
        }
    }

    fn toml(&self) -> String {
        let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
        let list = |items: &[String]| format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(", "));
        let mut text = format!(
            "\n[[policy.rules]]\naction = \"{}\"\n{} = {}\n",
            self.action.as_str(),
            self.key,
            quote(&self.value)
        );
        if let Some(profiles) = &self.profiles {
            text.push_str(&format!("profiles = {}\n", list(profiles)));
        }
        if let Some(scopes) = &self.scopes {
            text.push_str(&format!("scopes = {}\n", list(scopes)));
        }
        text
    }
}

impl Broker {
    /// Appends `rule` to the config file and applies the result; the rule's line.
    pub async fn add_rule(&self, rule: NewRule) -> Result<u32, ApiError> {
        let path =
            self.config().source.clone().or_else(crate::config::default_path).ok_or_else(|| {
                ApiError::internal("there is no config file to write the rule to (no home directory)")
            })?;
        let _editing = self.guard.editing.lock().expect("edit lock");
        let old = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(ApiError::internal(format!("could not read {}: {e}", path.display()))),
        };
        let mut text = old.clone();
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        let line = u32::try_from(text.lines().count() + 2).unwrap_or(u32::MAX);
        text.push_str(&rule.toml());
        let config =
            Config::parse(&text, &path).map_err(|e| ApiError::bad_request(format!("the rule was not written: {e}")))?;
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let temp = path.with_extension("toml.new");
            std::fs::write(&temp, &text)?;
            std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o600))?;
            std::fs::rename(&temp, &path)
        };
        write().map_err(|e| ApiError::internal(format!("could not write {}: {e}", path.display())))?;
        let summary = self.reload(&config, self.platform());
        tracing::info!(file = %path.display(), line, ?summary, "a policy rule was written and applied");
        Ok(line)
    }
}
