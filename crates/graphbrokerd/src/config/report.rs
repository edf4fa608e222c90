//! The configuration as `GET /v1/config` reports it: every key with its value in effect and where it came from.
//!
//! Nothing here is secret: the file has no secret to hold (the daemon is a public client; refresh tokens live in
//! the store). A key added to the file is added here too: a test (`tests/config_template.rs`) fails for any key of
//! the file this report leaves out.

use graphbroker_protocol::{ConfigEntry, ConfigOrigin, ConfigResponse, ConfigValue};

use super::{Config, Profile};

impl Config {
    /// Every key of this configuration with its value and origin: the top-level keys, then each profile's.
    pub fn report(&self) -> ConfigResponse {
        let mut report = Report { config: self, entries: Vec::new() };
        report.add("default_profile", Some(self.default_profile.as_str().into()));
        report.add("keyring_service", Some(self.keyring_service.as_str().into()));
        report.add("http_timeout", Some(self.http_timeout.as_secs().into()));
        report.add("browser_command", self.browser_command.clone().map(ConfigValue::from));
        report.add("browser_timeout", Some(self.browser_timeout.as_secs().into()));
        report.add("notifications", Some(self.notifications.into()));
        report.add("policy.default", Some(self.policy.default.as_str().into()));
        report.add("policy.ask_timeout", Some(self.policy.ask_timeout.as_secs().into()));
        let rules = self
            .policy
            .rules
            .iter()
            .map(|rule| format!("{} {} = {}", rule.action.as_str(), rule.selector.key(), rule.selector.value()));
        report.add("policy.rules", Some(rules.collect::<Vec<_>>().into()));
        for profile in self.profiles.values() {
            report.profile(profile);
        }
        ConfigResponse { file: self.source.as_ref().map(|path| path.display().to_string()), entries: report.entries }
    }
}

struct Report<'a> {
    config: &'a Config,
    entries: Vec<ConfigEntry>,
}

impl Report<'_> {
    fn add(&mut self, key: &str, value: Option<ConfigValue>) {
        let line = self.config.origins.line(key);
        let origin = if line.is_some() { ConfigOrigin::File } else { ConfigOrigin::Default };
        self.entries.push(ConfigEntry { key: key.to_owned(), value, origin, line });
    }

    fn profile(&mut self, profile: &Profile) {
        let key = |field: &str| format!("profiles.{}.{field}", profile.name);
        self.add(&key("tenant"), Some(profile.tenant.as_str().into()));
        self.add(&key("client_id"), Some(profile.client_id.as_str().into()));
        self.add(&key("cloud"), Some(profile.cloud.as_str().into()));
        self.add(&key("authority"), Some(profile.authority.as_str().trim_end_matches('/').into()));
        self.add(&key("flow"), Some(profile.flow.as_str().into()));
        self.add(&key("scopes"), Some(profile.scopes.clone().into()));
        self.add(&key("min_valid"), Some(profile.min_valid.as_secs().into()));
        self.add(&key("store"), Some(profile.store.as_str().into()));
        self.add(&key("login_hint"), profile.login_hint.clone().map(ConfigValue::from));
        self.add(&key("prompt"), profile.prompt.clone().map(ConfigValue::from));
        self.add(&key("cae"), Some(profile.cae.into()));
        self.add(&key("graph_url"), Some(profile.graph_url.as_str().trim_end_matches('/').into()));
        // 0 turns it off, as the file spells it.
        self.add(&key("rolling_refresh"), Some(profile.rolling_refresh.map_or(0, |idle| idle.as_secs()).into()));
        self.add(&key("test_setup"), Some(profile.test_setup.into()));
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn entry<'a>(report: &'a ConfigResponse, key: &str) -> &'a ConfigEntry {
        report.entries.iter().find(|entry| entry.key == key).unwrap_or_else(|| panic!("no {key} in {report:?}"))
    }

    #[test]
    fn the_defaults_come_from_no_file() {
        let report = Config::defaults().report();
        assert_eq!(report.file, None);
        assert!(report.entries.iter().all(|entry| entry.origin == ConfigOrigin::Default && entry.line.is_none()));
        assert_eq!(entry(&report, "http_timeout").value, Some(ConfigValue::Integer(10)));
        assert_eq!(entry(&report, "profiles.default.tenant").value, Some(ConfigValue::Text("common".into())));
        assert_eq!(
            entry(&report, "profiles.default.authority").value,
            Some(ConfigValue::Text("https://login.microsoftonline.com/common".into()))
        );
        assert_eq!(entry(&report, "profiles.default.login_hint").value, None);
    }

    #[test]
    fn a_value_written_in_the_file_names_its_line() {
        let text = "http_timeout = 20\ndefault_profile = \"work\"\n[profiles.work]\n# the tenant\ntenant = \"contoso.onmicrosoft.com\"\ncae = true\n";
        let config = Config::parse(text, Path::new("/test/config.toml")).unwrap();
        let report = config.report();
        assert_eq!(report.file.as_deref(), Some("/test/config.toml"));
        let timeout = entry(&report, "http_timeout");
        assert_eq!(
            (timeout.origin, timeout.line, timeout.value.clone()),
            (ConfigOrigin::File, Some(1), Some(20.into()))
        );
        let tenant = entry(&report, "profiles.work.tenant");
        assert_eq!((tenant.origin, tenant.line), (ConfigOrigin::File, Some(5)));
        assert_eq!(entry(&report, "profiles.work.cae").line, Some(6));
        let flow = entry(&report, "profiles.work.flow");
        assert_eq!((flow.origin, flow.line, flow.value.clone()), (ConfigOrigin::Default, None, Some("auto".into())));
        assert_eq!(entry(&report, "keyring_service").origin, ConfigOrigin::Default);
    }
}
