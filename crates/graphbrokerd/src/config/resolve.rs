//! Reading a config file: the file as written ([`RawConfig`], serde), its syntax errors located by line, column and
//! key, and the [`Resolver`] that turns it into a [`Config`] with defaults, derived values and validation.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use graphbroker_protocol::{SignInFlow, StoreKind};
use serde::Deserialize;
use url::{Host, Url};

use super::{
    Cloud, Config, ConfigError, DEFAULT_BROWSER_TIMEOUT, DEFAULT_CLIENT_ID, DEFAULT_HTTP_TIMEOUT, DEFAULT_MIN_VALID,
    DEFAULT_PROFILE, DEFAULT_SCOPES, DEFAULT_TENANT, MAX_HTTP_TIMEOUT, MAX_MIN_VALID, PROMPTS, Profile,
};
use super::{DEFAULT_ROLLING_REFRESH, REFRESH_TOKEN_INACTIVITY};

/// The file as written: every key optional. The enumerations (`cloud`, `flow`, `store`) are their own types, so
/// serde refuses an unknown value with its line and every allowed spelling; the rest is checked by [`Resolver`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    default_profile: Option<String>,
    keyring_service: Option<String>,
    /// Seconds.
    http_timeout: Option<u64>,
    browser_command: Option<Vec<String>>,
    /// Seconds.
    browser_timeout: Option<u64>,
    notifications: Option<bool>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
    /// Resolved after the profiles, by `crate::policy` (see `Config::parse`).
    pub(super) policy: Option<super::policy::RawPolicy>,
}

/// One `[profiles.NAME]` table as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    tenant: Option<String>,
    client_id: Option<String>,
    cloud: Option<Cloud>,
    authority: Option<String>,
    flow: Option<SignInFlow>,
    scopes: Option<Vec<String>>,
    /// Seconds.
    min_valid: Option<u64>,
    store: Option<StoreKind>,
    login_hint: Option<String>,
    prompt: Option<String>,
    cae: Option<bool>,
    graph_url: Option<String>,
    /// Seconds; 0 turns it off.
    rolling_refresh: Option<u64>,
    /// Allows a real cloud's authority with a loopback `graph_url` (a test setup).
    test_setup: Option<bool>,
}

/// A TOML or serde error, located by line and column, with the key it is about when that can be read off the
/// line (`key = value` under a `[table]` header).
pub(super) fn syntax_error(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
    let (at, key) = match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            (format!(":{line}:{column}"), key_at(text, span.start))
        }
        None => (String::new(), None),
    };
    ConfigError::Syntax { path: path.to_path_buf(), at, key, message: err.message().trim().to_owned() }
}

/// The dotted key of the `key = value` line holding byte `offset`, prefixed with its table header, if the line is
/// one. A best effort for messages: inline tables and multi-line values give `None`.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let line = text.get(line_start..)?.lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with(['#', '[', '"', '\'']) || key.contains(char::is_whitespace) {
        return None;
    }
    let header = text.get(..line_start)?.lines().rev().map(str::trim).find(|l| l.starts_with('['));
    match header.and_then(|h| h.strip_prefix('[')?.split(']').next()) {
        Some(table) => Some(format!("{}.{key}", table.trim())),
        None => Some(key.to_owned()),
    }
}

/// Turns a [`RawConfig`] into a [`Config`]: defaults, derived values, validation.
pub(super) struct Resolver<'a> {
    pub(super) path: &'a Path,
}

impl Resolver<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), key: key.into(), message: message.into() }
    }

    pub(super) fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let mut profiles = BTreeMap::new();
        for (name, raw_profile) in raw.profiles {
            let profile = self.profile(&name, raw_profile)?;
            profiles.insert(name, profile);
        }

        let default_profile = match raw.default_profile {
            Some(name) => {
                self.check_profile_name("default_profile", &name)?;
                if !profiles.is_empty() && !profiles.contains_key(&name) {
                    return Err(self.invalid(
                        "default_profile",
                        format!(
                            "names profile {name:?}, which is not defined: add [profiles.{name}] or use one of {}",
                            known(&profiles)
                        ),
                    ));
                }
                name
            }
            None => {
                if !profiles.is_empty() && !profiles.contains_key(DEFAULT_PROFILE) {
                    return Err(self.invalid(
                        "default_profile",
                        format!(
                            "is not set and there is no [profiles.{DEFAULT_PROFILE}]: set default_profile to one of {}",
                            known(&profiles)
                        ),
                    ));
                }
                DEFAULT_PROFILE.to_owned()
            }
        };
        if profiles.is_empty() {
            profiles.insert(default_profile.clone(), Profile::builtin(&default_profile));
        }

        let keyring_service = match raw.keyring_service {
            Some(service) if service.trim().is_empty() => {
                return Err(self.invalid("keyring_service", "must not be empty; leave it out for \"graphbroker\""));
            }
            Some(service) => service,
            None => graphbroker_store::DEFAULT_SERVICE.to_owned(),
        };

        let http_timeout = match raw.http_timeout.map(Duration::from_secs) {
            Some(timeout) if timeout.is_zero() || timeout > MAX_HTTP_TIMEOUT => {
                return Err(self
                    .invalid("http_timeout", format!("must be between 1 and {} seconds", MAX_HTTP_TIMEOUT.as_secs())));
            }
            Some(timeout) => timeout,
            None => DEFAULT_HTTP_TIMEOUT,
        };

        let browser_command = match raw.browser_command {
            Some(command) if command.first().is_none_or(|program| program.trim().is_empty()) => {
                return Err(self.invalid(
                    "browser_command",
                    "must name a program, e.g. [\"firefox\", \"--new-window\"]; the URL is appended",
                ));
            }
            command => command,
        };
        let browser_timeout = match raw.browser_timeout.map(Duration::from_secs) {
            Some(timeout) if !(10..=3600).contains(&timeout.as_secs()) => {
                return Err(self.invalid("browser_timeout", "must be between 10 and 3600 seconds"));
            }
            Some(timeout) => timeout,
            None => DEFAULT_BROWSER_TIMEOUT,
        };

        Ok(Config {
            default_profile,
            profiles,
            keyring_service,
            http_timeout,
            browser_command,
            browser_timeout,
            notifications: raw.notifications.unwrap_or(false),
            source: Some(self.path.to_path_buf()),
            origins: Default::default(),
            policy: Default::default(),
        })
    }

    /// Profile names become keychain entry names and query parameters, so they are kept plain.
    fn check_profile_name(&self, key: &str, name: &str) -> Result<(), ConfigError> {
        let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if plain {
            Ok(())
        } else {
            Err(self.invalid(key, format!("profile name {name:?} may only use letters, digits, '-' and '_'")))
        }
    }

    fn profile(&self, name: &str, raw: RawProfile) -> Result<Profile, ConfigError> {
        self.check_profile_name(&format!("profiles.{name}"), name)?;
        let key = |field: &str| format!("profiles.{name}.{field}");

        let (authority, tenant, cloud) = match raw.authority {
            Some(authority) => {
                if raw.tenant.is_some() || raw.cloud.is_some() {
                    return Err(self.invalid(
                        key("authority"),
                        "cannot be combined with tenant or cloud (the authority URL names both): keep either \
                         authority, or tenant and cloud",
                    ));
                }
                let url = self.authority(&key("authority"), &authority)?;
                let tenant = url.path_segments().and_then(|mut s| s.next()).unwrap_or_default().to_owned();
                let cloud = Cloud::from_login_host(url.host_str().unwrap_or_default());
                (url, tenant, cloud)
            }
            None => {
                let cloud = raw.cloud.unwrap_or(Cloud::Public);
                let tenant = raw.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_owned());
                self.check_tenant(&key("tenant"), &tenant)?;
                (cloud.authority(&tenant), tenant, cloud)
            }
        };

        let client_id = raw.client_id.unwrap_or_else(|| DEFAULT_CLIENT_ID.to_owned());
        if client_id.trim().is_empty() || client_id.contains(char::is_whitespace) {
            return Err(self.invalid(
                key("client_id"),
                format!(
                    "must be an application (client) id without spaces; leave it out for {DEFAULT_CLIENT_ID} \
                     (Microsoft Graph Command Line Tools)"
                ),
            ));
        }

        let scopes = match raw.scopes {
            None => DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            Some(scopes) if scopes.is_empty() => {
                return Err(self.invalid(key("scopes"), "must name at least one scope, e.g. [\"User.Read\"]"));
            }
            Some(scopes) => {
                if let Some(bad) = scopes.iter().find(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                    return Err(self.invalid(
                        key("scopes"),
                        format!("{bad:?} is not a scope: give each scope as its own string, without spaces"),
                    ));
                }
                scopes
            }
        };

        let min_valid = match raw.min_valid.map(Duration::from_secs) {
            Some(min_valid) if min_valid > MAX_MIN_VALID => {
                return Err(self.invalid(
                    key("min_valid"),
                    format!(
                        "{} seconds is longer than any access token lives: use at most {} (the default is {})",
                        min_valid.as_secs(),
                        MAX_MIN_VALID.as_secs(),
                        DEFAULT_MIN_VALID.as_secs()
                    ),
                ));
            }
            Some(min_valid) => min_valid,
            None => DEFAULT_MIN_VALID,
        };

        let login_hint = match raw.login_hint {
            Some(hint) if hint.trim().is_empty() => {
                return Err(self.invalid(key("login_hint"), "must not be empty: give a username or leave it out"));
            }
            hint => hint,
        };
        let prompt = match raw.prompt {
            Some(prompt) if !PROMPTS.contains(&prompt.as_str()) => {
                return Err(
                    self.invalid(key("prompt"), format!("{prompt:?} is not a prompt: use {}", PROMPTS.join(", ")))
                );
            }
            prompt => prompt,
        };

        let rolling_refresh = match raw.rolling_refresh.map(Duration::from_secs) {
            Some(idle) if idle.is_zero() => None,
            Some(idle) if idle >= REFRESH_TOKEN_INACTIVITY => {
                return Err(self.invalid(
                    key("rolling_refresh"),
                    format!(
                        "{} seconds is not before the refresh token's {}-day inactivity limit: use less than {} \
                         (the default is {}, a week), or 0 to turn the rolling refresh off",
                        idle.as_secs(),
                        REFRESH_TOKEN_INACTIVITY.as_secs() / 86_400,
                        REFRESH_TOKEN_INACTIVITY.as_secs(),
                        DEFAULT_ROLLING_REFRESH.as_secs()
                    ),
                ));
            }
            Some(idle) => Some(idle),
            None => Some(DEFAULT_ROLLING_REFRESH),
        };

        let graph_url = match raw.graph_url {
            Some(text) => self.graph_url(&key("graph_url"), &text)?,
            None => Url::parse(cloud.graph_resource()).expect("a cloud's Graph resource is a URL"),
        };
        // Tokens a real tenant issued belong at a real Graph: sent to a loopback port they reach whoever listens
        // there (the owner check stops another user, not a mistake). A stand-in pair (both loopback) is fine.
        if is_loopback(&graph_url) && !is_loopback(&authority) && raw.test_setup != Some(true) {
            return Err(self.invalid(
                key("graph_url"),
                format!(
                    "{} is a loopback address, but the profile signs in at {}, a real identity platform: its \
                     tokens would go to whatever listens on that port. Remove graph_url to use {}, or, for a \
                     test setup that means it, add `test_setup = true` to the profile",
                    graph_url.as_str().trim_end_matches('/'),
                    authority.as_str().trim_end_matches('/'),
                    cloud.graph_resource().trim_end_matches('/'),
                ),
            ));
        }

        Ok(Profile {
            name: name.to_owned(),
            graph_url,
            authority,
            tenant,
            client_id,
            cloud,
            graph_resource: cloud.graph_resource().to_owned(),
            flow: raw.flow.unwrap_or(SignInFlow::Auto),
            scopes,
            min_valid,
            store: self.store(&key("store"), raw.store)?,
            login_hint,
            prompt,
            cae: raw.cae.unwrap_or(false),
            rolling_refresh,
            test_setup: raw.test_setup.unwrap_or(false),
        })
    }

    /// `auto` unless set; the kernel keyring only where there is one.
    fn store(&self, key: &str, store: Option<StoreKind>) -> Result<StoreKind, ConfigError> {
        match store.unwrap_or(StoreKind::Auto) {
            StoreKind::Keyutils if !cfg!(target_os = "linux") => Err(self.invalid(
                key,
                "the kernel keyring (keyutils) exists on Linux only; use \"auto\" or \"keyring\" (the Keychain)",
            )),
            store => Ok(store),
        }
    }

    /// The tenant becomes one path segment of the authority URL.
    fn check_tenant(&self, key: &str, tenant: &str) -> Result<(), ConfigError> {
        let plain = !tenant.is_empty() && tenant.chars().all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if plain {
            Ok(())
        } else {
            Err(self.invalid(
                key,
                format!(
                    "{tenant:?} is not a tenant: use common, organizations, consumers, a tenant id (GUID) or a \
                     domain such as contoso.onmicrosoft.com"
                ),
            ))
        }
    }

    /// The Graph endpoint the proxy forwards to: a Microsoft Graph host of one of the clouds, or a loopback
    /// stand-in. Never any other host: the proxy attaches the user's token to what it sends there.
    fn graph_url(&self, key: &str, text: &str) -> Result<Url, ConfigError> {
        let known: Vec<&str> = Cloud::ALL.iter().map(|c| c.graph_resource()).collect();
        let refuse = |why: String| {
            self.invalid(
                key,
                format!("{why}: use one of {}, or a loopback stand-in such as http://127.0.0.1:PORT", known.join(", ")),
            )
        };
        let url = Url::parse(text).map_err(|err| refuse(format!("{text:?} is not a URL ({err})")))?;
        let bare = url.path() == "/"
            && url.query().is_none()
            && url.fragment().is_none()
            && url.username().is_empty()
            && url.password().is_none();
        if !bare {
            return Err(refuse(format!("{text:?} must be a scheme and host only, without a path, query or user")));
        }
        let graph_host =
            url.scheme() == "https" && known.iter().any(|k| Url::parse(k).is_ok_and(|k| k.origin() == url.origin()));
        let stand_in = matches!(url.scheme(), "http" | "https") && is_loopback(&url);
        if graph_host || stand_in { Ok(url) } else { Err(refuse(format!("{text:?} is not a Microsoft Graph host"))) }
    }

    /// An explicit authority: https (or http to a loopback host, for tests and the offline demo), a tenant path, no
    /// query, fragment or credentials. The trailing slash is trimmed.
    fn authority(&self, key: &str, text: &str) -> Result<Url, ConfigError> {
        let mut url = Url::parse(text).map_err(|err| {
            self.invalid(key, format!("{text:?} is not a URL ({err}): write it as https://<login host>/<tenant>"))
        })?;
        match url.scheme() {
            "https" => {}
            "http" if is_loopback(&url) => {}
            "http" => {
                return Err(self.invalid(
                    key,
                    format!(
                        "{text:?} uses http: use https (plain http is allowed only to a loopback host, 127.0.0.1, \
                         ::1 or localhost, for tests and the offline demo)"
                    ),
                ));
            }
            other => return Err(self.invalid(key, format!("{text:?} has scheme {other:?}: use https"))),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(self.invalid(key, format!("{text:?} has no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(self.invalid(key, format!("{text:?} has a query or fragment: remove everything from ? or #")));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(self.invalid(key, "must not contain a user name or password"));
        }
        let path = url.path().trim_end_matches('/').to_owned();
        if path.is_empty() {
            return Err(self.invalid(
                key,
                format!("{text:?} names no tenant: add it as the path, e.g. https://login.microsoftonline.com/common"),
            ));
        }
        url.set_path(&path);
        Ok(url)
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn known(profiles: &BTreeMap<String, Profile>) -> String {
    profiles.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
}
