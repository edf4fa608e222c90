//! The daemon's configuration: a TOML file of named profiles, read in two steps.
//!
//! [`RawConfig`] only parses (serde, unknown keys refused); [`Config::parse`] then applies the defaults, turns cloud
//! and tenant into an authority URL, and validates, so every error names the file, the key and what is allowed.
//! No file at all is a working configuration: one profile, `default`, signing in to tenant `common` with the public
//! client id of Microsoft Graph Command Line Tools. `docs/configuration.md` documents every key.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graphbroker_protocol::{SignInFlow, StoreKind};
use serde::Deserialize;
use url::{Host, Url};

/// The client id used when a profile names none: Microsoft Graph Command Line Tools, a public client that Microsoft
/// registers in every tenant. It asks for Graph delegated scopes by dynamic consent (no app registration needed to
/// get started) and allows both the device code flow and the browser flow with a `http://localhost` redirect.
pub const DEFAULT_CLIENT_ID: &str = "14d82eec-204b-4c2f-b7e8-296a70dab67e";

/// The tenant used when a profile names none: `common` accepts work or school accounts and personal Microsoft
/// accounts alike, so a first sign-in works whoever the user is.
pub const DEFAULT_TENANT: &str = "common";

/// The profile a request uses when it names none and the file sets no `default_profile`.
pub const DEFAULT_PROFILE: &str = "default";

/// How long a served access token must still be valid. Five minutes is the margin MSAL uses before it refreshes a
/// cached token: enough for a request to reach the resource and for some clock skew between this machine and the
/// resource server, small against the usual 60–90 minute token lifetime.
pub const DEFAULT_MIN_VALID: Duration = Duration::from_secs(300);

/// Timeout of one HTTP request to the identity platform. The token endpoint normally answers within a second or
/// two; ten seconds rides out a slow network, yet a hung connection is abandoned (and retried) while a waiting
/// client is still there to get the answer.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable naming the config file, when no path is given on the command line.
pub const CONFIG_ENV: &str = "GRAPHBROKER_CONFIG";

/// The scopes a profile asks for when a request names none: `User.Read` is the smallest Graph delegated
/// permission, needs no admin consent, and proves that a sign-in works.
pub const DEFAULT_SCOPES: &[&str] = &["User.Read"];

/// The largest `min_valid` accepted. Access tokens live 60–90 minutes (about a day at most, with CAE); a longer
/// margin could never be met and would send every request to the identity platform, so it is a mistake in the file.
pub const MAX_MIN_VALID: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest `http_timeout` accepted: a request that has not been answered in ten minutes never will be.
pub const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a browser sign-in waits for the redirect: long enough to type a password and pass MFA, short enough
/// that a forgotten tab does not hold a loopback port for long.
pub const DEFAULT_BROWSER_TIMEOUT: Duration = Duration::from_secs(300);

/// The `prompt` values the identity platform accepts on the authorize request.
pub const PROMPTS: [&str; 4] = ["login", "none", "consent", "select_account"];

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The profile a request uses when it names none. Always a key of `profiles`.
    pub default_profile: String,
    /// Every profile, by name. Holds `default_profile` (with the built-in defaults when the file defines none).
    pub profiles: BTreeMap<String, Profile>,
    /// The keychain service name entries are filed under (default [`graphbroker_store::DEFAULT_SERVICE`]);
    /// several daemons (or tests) sharing one keychain each set their own.
    pub keyring_service: String,
    /// Timeout of one HTTP request to the identity platform.
    pub http_timeout: Duration,
    /// The program (and its arguments) that opens a URL for a browser sign-in; the URL is appended. `None`:
    /// the desktop's default browser.
    pub browser_command: Option<Vec<String>>,
    /// How long a browser sign-in waits for the redirect (key `browser_timeout`, seconds).
    pub browser_timeout: Duration,
    /// The file this was read from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
}

/// One named profile: an app registration in a tenant, and how to sign in to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    pub name: String,
    /// The authority, e.g. `https://login.microsoftonline.com/contoso.onmicrosoft.com`, without a trailing slash:
    /// the `authority` key, or the cloud's login host and the tenant.
    pub authority: Url,
    /// The tenant: `common`, `organizations`, `consumers`, a tenant GUID or a domain. With an explicit authority,
    /// its first path segment.
    pub tenant: String,
    pub client_id: String,
    /// The national cloud. With an explicit authority, the cloud whose login host it names (public otherwise).
    pub cloud: Cloud,
    /// The Graph resource of the cloud, e.g. `https://graph.microsoft.com`: what short scope names such as
    /// `User.Read` are qualified with.
    pub graph_resource: String,
    pub flow: SignInFlow,
    /// The scopes used when a request names none.
    pub scopes: Vec<String>,
    /// How long a served token must still be valid, unless the request says otherwise.
    pub min_valid: Duration,
    pub store: StoreKind,
    /// Pre-fills the username on the sign-in page.
    pub login_hint: Option<String>,
    /// `prompt` on the authorize request (browser sign-in): login, none, consent or select_account.
    pub prompt: Option<String>,
    /// Declare client capability `cp1` (continuous access evaluation), so the platform may issue long-lived
    /// tokens and revoke them by claims challenge.
    pub cae: bool,
}

impl Profile {
    /// `{authority}/oauth2/v2.0/token`
    pub fn token_endpoint(&self) -> Url {
        self.endpoint("token")
    }

    /// `{authority}/oauth2/v2.0/devicecode`
    pub fn device_code_endpoint(&self) -> Url {
        self.endpoint("devicecode")
    }

    /// `{authority}/oauth2/v2.0/authorize`
    pub fn authorize_endpoint(&self) -> Url {
        self.endpoint("authorize")
    }

    fn endpoint(&self, leaf: &str) -> Url {
        let mut url = self.authority.clone();
        let path = format!("{}/oauth2/v2.0/{leaf}", url.path().trim_end_matches('/'));
        url.set_path(&path);
        url
    }

    /// A profile with every built-in default.
    fn builtin(name: &str) -> Profile {
        let cloud = Cloud::Public;
        Profile {
            name: name.to_owned(),
            authority: cloud.authority(DEFAULT_TENANT),
            tenant: DEFAULT_TENANT.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            cloud,
            graph_resource: cloud.graph_resource().to_owned(),
            flow: SignInFlow::Auto,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            min_valid: DEFAULT_MIN_VALID,
            store: StoreKind::Keyring,
            login_hint: None,
            prompt: None,
            cae: false,
        }
    }
}

/// A Microsoft identity platform cloud: its login host and its Microsoft Graph endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cloud {
    /// The global cloud (also GCC).
    Public,
    /// US Government (GCC High).
    UsGov,
    /// US Government DoD.
    UsGovDod,
    /// China, operated by 21Vianet.
    China,
}

impl Cloud {
    pub const ALL: [Cloud; 4] = [Cloud::Public, Cloud::UsGov, Cloud::UsGovDod, Cloud::China];

    /// The spelling in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Public => "public",
            Cloud::UsGov => "usgov",
            Cloud::UsGovDod => "usgov-dod",
            Cloud::China => "china",
        }
    }

    /// The cloud a config file spelling names.
    pub fn from_name(name: &str) -> Option<Cloud> {
        Cloud::ALL.into_iter().find(|cloud| cloud.as_str() == name)
    }

    /// The login host. China's is `login.chinacloudapi.cn`, the one MSAL and the Graph docs use (the Entra docs
    /// also name `login.partner.microsoftonline.cn`).
    pub fn login_host(self) -> &'static str {
        match self {
            Cloud::Public => "login.microsoftonline.com",
            Cloud::UsGov | Cloud::UsGovDod => "login.microsoftonline.us",
            Cloud::China => "login.chinacloudapi.cn",
        }
    }

    /// The Microsoft Graph resource, which short scope names belong to.
    pub fn graph_resource(self) -> &'static str {
        match self {
            Cloud::Public => "https://graph.microsoft.com",
            Cloud::UsGov => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
        }
    }

    /// The cloud an explicit authority's host belongs to. US Gov and DoD share a login host, so it reads as US
    /// Gov; an unknown host (a loopback stand-in, a proxy) reads as public.
    fn from_login_host(host: &str) -> Cloud {
        match host.to_ascii_lowercase().as_str() {
            "login.microsoftonline.us" => Cloud::UsGov,
            "login.chinacloudapi.cn" | "login.partner.microsoftonline.cn" => Cloud::China,
            _ => Cloud::Public,
        }
    }

    /// `https://{login host}/{tenant}`. Only called with a tenant that passed `check_tenant` (letters, digits,
    /// `-`, `.`, `_`), which always forms a valid URL with a constant host.
    fn authority(self, tenant: &str) -> Url {
        Url::parse(&format!("https://{}/{tenant}", self.login_host()))
            .expect("a login host and a validated tenant form a URL")
    }
}

impl fmt::Display for Cloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the configuration cannot be used. Each message names the file and, where it applies, the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A file named on the command line or by the environment does not exist.
    #[error("config file {} (named by {named_by}) does not exist: create it, or name another file", .path.display())]
    NotFound { path: PathBuf, named_by: String },

    /// The file exists but cannot be read.
    #[error("cannot read config file {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Not valid TOML, an unknown key, or a value of the wrong type. `at` is `:line:column` when known.
    #[error("{}{at}: {}{message}", .path.display(), key_prefix(.key))]
    Syntax { path: PathBuf, at: String, key: Option<String>, message: String },

    /// A value that parses but is not allowed.
    #[error("{}: {key}: {message}", .path.display())]
    Invalid { path: PathBuf, key: String, message: String },
}

fn key_prefix(key: &Option<String>) -> String {
    key.as_ref().map(|key| format!("{key}: ")).unwrap_or_default()
}

/// The file as written: every key optional, enumerations as strings so that resolution can say what is allowed.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    default_profile: Option<String>,
    keyring_service: Option<String>,
    /// Seconds.
    http_timeout: Option<u64>,
    browser_command: Option<Vec<String>>,
    /// Seconds.
    browser_timeout: Option<u64>,
    #[serde(default)]
    profiles: BTreeMap<String, RawProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    tenant: Option<String>,
    client_id: Option<String>,
    cloud: Option<String>,
    authority: Option<String>,
    flow: Option<String>,
    scopes: Option<Vec<String>>,
    /// Seconds.
    min_valid: Option<u64>,
    store: Option<String>,
    login_hint: Option<String>,
    prompt: Option<String>,
    cae: Option<bool>,
}

/// Where the config file came from, for the error when it is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    CommandLine,
    Environment,
    DefaultLocation,
}

impl Config {
    /// The configuration with no file: the `default` profile with every built-in default.
    pub fn defaults() -> Config {
        let profile = Profile::builtin(DEFAULT_PROFILE);
        Config {
            default_profile: DEFAULT_PROFILE.to_owned(),
            profiles: BTreeMap::from([(DEFAULT_PROFILE.to_owned(), profile)]),
            keyring_service: graphbroker_store::DEFAULT_SERVICE.to_owned(),
            http_timeout: DEFAULT_HTTP_TIMEOUT,
            browser_command: None,
            browser_timeout: DEFAULT_BROWSER_TIMEOUT,
            source: None,
        }
    }

    /// Reads the configuration from, in order of precedence: `explicit` (the command line), the file named by
    /// `$GRAPHBROKER_CONFIG`, or [`default_path`]. A file missing at the default location means the defaults; a
    /// missing file that was named explicitly is an error.
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_from(explicit, |name| std::env::var_os(name), default_path())
    }

    /// [`Config::load`] with the environment and the default location passed in, so tests need not change either.
    fn load_from(
        explicit: Option<&Path>,
        env: impl Fn(&str) -> Option<OsString>,
        default_location: Option<PathBuf>,
    ) -> Result<Config, ConfigError> {
        let (path, origin) = match (explicit, env(CONFIG_ENV).filter(|value| !value.is_empty())) {
            (Some(path), _) => (path.to_path_buf(), Origin::CommandLine),
            (None, Some(value)) => (PathBuf::from(value), Origin::Environment),
            (None, None) => match default_location {
                Some(path) => (path, Origin::DefaultLocation),
                None => return Ok(Config::defaults()),
            },
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => match origin {
                Origin::DefaultLocation => Ok(Config::defaults()),
                Origin::CommandLine => Err(ConfigError::NotFound { path, named_by: "the command line".to_owned() }),
                Origin::Environment => Err(ConfigError::NotFound { path, named_by: format!("${CONFIG_ENV}") }),
            },
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and resolves the text of a config file; `origin` is the file's path, for messages and `source`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|err| syntax_error(text, origin, &err))?;
        Resolver { path: origin }.config(raw)
    }

    /// The profile called `name`, or the default profile for `None`.
    pub fn profile(&self, name: Option<&str>) -> Option<&Profile> {
        self.profiles.get(name.unwrap_or(&self.default_profile))
    }
}

/// The config file at the platform's config directory: `$XDG_CONFIG_HOME/graphbroker/config.toml` (or
/// `~/.config/…`) on Linux, `~/Library/Application Support/graphbroker/config.toml` on macOS. `None` when there is
/// no home directory to put it in.
pub fn default_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("graphbroker").join("config.toml"))
}

/// A TOML or serde error, located by line and column, with the key it is about when that can be read off the
/// line (`key = value` under a `[table]` header).
fn syntax_error(text: &str, path: &Path, err: &toml::de::Error) -> ConfigError {
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
struct Resolver<'a> {
    path: &'a Path,
}

impl Resolver<'_> {
    fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.path.to_path_buf(), key: key.into(), message: message.into() }
    }

    fn config(&self, raw: RawConfig) -> Result<Config, ConfigError> {
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
            source: Some(self.path.to_path_buf()),
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
                let cloud = match raw.cloud.as_deref() {
                    None => Cloud::Public,
                    Some(text) => Cloud::from_name(text).ok_or_else(|| {
                        self.invalid(key("cloud"), format!("{text:?} is not a cloud: use {}", one_of(Cloud::ALL)))
                    })?,
                };
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

        let flow = match raw.flow.as_deref() {
            None | Some("auto") => SignInFlow::Auto,
            Some("browser") => SignInFlow::Browser,
            Some("device") => SignInFlow::Device,
            Some(other) => {
                return Err(self.invalid(key("flow"), format!("{other:?} is not a flow: use auto, browser or device")));
            }
        };

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

        let store = match raw.store.as_deref() {
            None | Some("keyring") => StoreKind::Keyring,
            Some("memory") => StoreKind::Memory,
            Some(other) => {
                return Err(self.invalid(key("store"), format!("{other:?} is not a store: use keyring or memory")));
            }
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

        Ok(Profile {
            name: name.to_owned(),
            authority,
            tenant,
            client_id,
            cloud,
            graph_resource: cloud.graph_resource().to_owned(),
            flow,
            scopes,
            min_valid,
            store,
            login_hint,
            prompt,
            cae: raw.cae.unwrap_or(false),
        })
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

fn one_of(clouds: [Cloud; 4]) -> String {
    clouds.map(Cloud::as_str).join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "/etc/graphbroker-test/config.toml";

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new(FILE))
    }

    /// The error for `text`, checked to name the file and `key`; returns the message for further checks.
    fn error_naming(text: &str, key: &str) -> String {
        let err = parse(text).expect_err(text);
        let message = err.to_string();
        assert!(message.starts_with(FILE), "names the file: {message}");
        assert!(message.contains(&format!("{key}: ")), "names {key}: {message}");
        message
    }

    #[test]
    fn no_file_at_the_default_location_means_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load_from(None, |_| None, Some(dir.path().join("config.toml"))).unwrap();
        assert_eq!(config, Config::defaults());
        assert_eq!(config.source, None);
        assert_eq!(config.default_profile, "default");
        assert_eq!(config.keyring_service, "graphbroker");
        assert_eq!(config.http_timeout, Duration::from_secs(10));

        let profile = config.profile(None).unwrap();
        assert_eq!(profile.name, "default");
        assert_eq!(profile.authority.as_str(), "https://login.microsoftonline.com/common");
        assert_eq!(profile.tenant, "common");
        assert_eq!(profile.client_id, DEFAULT_CLIENT_ID);
        assert_eq!(profile.cloud, Cloud::Public);
        assert_eq!(profile.graph_resource, "https://graph.microsoft.com");
        assert_eq!(profile.flow, SignInFlow::Auto);
        assert_eq!(profile.scopes, ["User.Read"]);
        assert_eq!(profile.min_valid, Duration::from_secs(300));
        assert_eq!(profile.store, StoreKind::Keyring);
        assert_eq!(profile.login_hint, None);
        assert!(!profile.cae);
        assert_eq!(profile.token_endpoint().as_str(), "https://login.microsoftonline.com/common/oauth2/v2.0/token");
        assert_eq!(
            profile.device_code_endpoint().as_str(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/devicecode"
        );
        assert_eq!(
            profile.authorize_endpoint().as_str(),
            "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
        );
    }

    #[test]
    fn the_keyring_service_default_is_the_stores() {
        assert_eq!(Config::defaults().keyring_service, graphbroker_store::DEFAULT_SERVICE);
    }

    #[test]
    fn an_empty_file_means_the_defaults_read_from_it() {
        let config = parse("# nothing yet\n").unwrap();
        assert_eq!(config.source.as_deref(), Some(Path::new(FILE)));
        assert_eq!(Config { source: None, ..config }, Config::defaults());
    }

    #[test]
    fn the_design_example_parses() {
        let config = parse(
            r#"
default_profile = "work"              # the profile used when a request names none ("default" if absent)

[profiles.work]
tenant = "contoso.onmicrosoft.com"    # common | organizations | consumers | a GUID | a domain
client_id = "00000000-0000-0000-0000-000000000000"
cloud = "public"                      # public | usgov | usgov-dod | china
# authority = "https://login.microsoftonline.com/contoso.onmicrosoft.com"   # replaces tenant + cloud
flow = "auto"                         # auto | browser | device
scopes = ["User.Read"]                # used when a request names none
min_valid = 300                       # seconds a served token must still be valid
store = "keyring"                     # keyring | memory
login_hint = "adele@contoso.com"
"#,
        )
        .unwrap();
        assert_eq!(config.default_profile, "work");
        assert_eq!(config.profiles.len(), 1);
        let work = config.profile(None).unwrap();
        assert_eq!(work, config.profile(Some("work")).unwrap());
        assert_eq!(work.name, "work");
        assert_eq!(work.authority.as_str(), "https://login.microsoftonline.com/contoso.onmicrosoft.com");
        assert_eq!(work.tenant, "contoso.onmicrosoft.com");
        assert_eq!(work.client_id, "00000000-0000-0000-0000-000000000000");
        assert_eq!(work.cloud, Cloud::Public);
        assert_eq!(work.flow, SignInFlow::Auto);
        assert_eq!(work.scopes, ["User.Read"]);
        assert_eq!(work.min_valid, Duration::from_secs(300));
        assert_eq!(work.store, StoreKind::Keyring);
        assert_eq!(work.login_hint.as_deref(), Some("adele@contoso.com"));
        assert_eq!(
            work.token_endpoint().as_str(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        assert!(config.profile(Some("default")).is_none());
    }

    #[test]
    fn every_other_key_parses() {
        let config = parse(
            r#"
keyring_service = "graphbroker-test-42"
http_timeout = 5

[profiles.default]

[profiles.mail]
flow = "device"
scopes = ["https://outlook.office.com/IMAP.AccessAsUser.All", "https://outlook.office.com/SMTP.Send"]
store = "memory"
cae = true
min_valid = 0
"#,
        )
        .unwrap();
        assert_eq!(config.keyring_service, "graphbroker-test-42");
        assert_eq!(config.http_timeout, Duration::from_secs(5));
        assert_eq!(config.default_profile, "default");
        assert_eq!(config.profile(None).unwrap(), &Profile::builtin("default"));
        let mail = config.profile(Some("mail")).unwrap();
        assert_eq!(mail.flow, SignInFlow::Device);
        assert_eq!(mail.store, StoreKind::Memory);
        assert!(mail.cae);
        assert_eq!(mail.min_valid, Duration::ZERO);
        assert_eq!(mail.scopes.len(), 2);
        assert!(config.profile(Some("nope")).is_none());
    }

    #[test]
    fn a_default_profile_with_no_profiles_gets_the_builtin_defaults() {
        let config = parse("default_profile = \"me\"\n").unwrap();
        assert_eq!(config.default_profile, "me");
        assert_eq!(config.profile(None).unwrap(), &Profile::builtin("me"));
    }

    #[test]
    fn clouds_map_to_their_login_host_and_graph() {
        let cases = [
            ("public", "https://login.microsoftonline.com/t1", "https://graph.microsoft.com"),
            ("usgov", "https://login.microsoftonline.us/t1", "https://graph.microsoft.us"),
            ("usgov-dod", "https://login.microsoftonline.us/t1", "https://dod-graph.microsoft.us"),
            ("china", "https://login.chinacloudapi.cn/t1", "https://microsoftgraph.chinacloudapi.cn"),
        ];
        for (name, authority, graph) in cases {
            let config = parse(&format!("[profiles.default]\ncloud = \"{name}\"\ntenant = \"t1\"\n")).unwrap();
            let profile = config.profile(None).unwrap();
            assert_eq!(profile.cloud.as_str(), name);
            assert_eq!(Cloud::from_name(name), Some(profile.cloud));
            assert_eq!(profile.authority.as_str(), authority, "{name}");
            assert_eq!(profile.graph_resource, graph, "{name}");
        }
    }

    #[test]
    fn an_explicit_authority_is_trimmed_and_gives_tenant_and_cloud() {
        let config =
            parse("[profiles.default]\nauthority = \"https://login.microsoftonline.us/contoso.onmicrosoft.us/\"\n")
                .unwrap();
        let profile = config.profile(None).unwrap();
        assert_eq!(profile.authority.as_str(), "https://login.microsoftonline.us/contoso.onmicrosoft.us");
        assert_eq!(profile.tenant, "contoso.onmicrosoft.us");
        assert_eq!(profile.cloud, Cloud::UsGov);
        assert_eq!(profile.graph_resource, "https://graph.microsoft.us");
        assert_eq!(
            profile.authorize_endpoint().as_str(),
            "https://login.microsoftonline.us/contoso.onmicrosoft.us/oauth2/v2.0/authorize"
        );

        let china = parse("[profiles.default]\nauthority = \"https://login.partner.microsoftonline.cn/t\"\n").unwrap();
        assert_eq!(china.profile(None).unwrap().cloud, Cloud::China);
    }

    #[test]
    fn http_authority_is_allowed_only_to_loopback() {
        for authority in
            ["http://127.0.0.1:8400/common", "http://[::1]:8400/tenant/", "http://localhost:1/t", "http://127.0.0.2/t"]
        {
            let config = parse(&format!("[profiles.default]\nauthority = \"{authority}\"\n")).unwrap();
            let profile = config.profile(None).unwrap();
            assert!(!profile.authority.as_str().ends_with('/'), "{}", profile.authority);
            assert_eq!(profile.cloud, Cloud::Public);
            assert!(profile.token_endpoint().as_str().ends_with("/oauth2/v2.0/token"));
        }
        let config = parse("[profiles.default]\nauthority = \"http://127.0.0.1:8400/common\"\n").unwrap();
        assert_eq!(
            config.profile(None).unwrap().device_code_endpoint().as_str(),
            "http://127.0.0.1:8400/common/oauth2/v2.0/devicecode"
        );

        for authority in
            ["http://login.microsoftonline.com/common", "http://10.0.0.1/common", "http://localhost.evil.example/t"]
        {
            let message = error_naming(
                &format!("[profiles.default]\nauthority = \"{authority}\"\n"),
                "profiles.default.authority",
            );
            assert!(message.contains("loopback"), "{message}");
        }
    }

    #[test]
    fn each_mistake_names_the_file_the_key_and_what_is_allowed() {
        let cases: &[(&str, &str, &str)] = &[
            ("colour = \"blue\"\n", "colour", "unknown field"),
            ("[profiles.work]\nflw = \"auto\"\n", "profiles.work.flw", "unknown field"),
            ("[profiles.work]\nmin_valid = \"5m\"\n", "profiles.work.min_valid", "invalid type"),
            ("[profiles.default]\nflow = \"sideways\"\n", "profiles.default.flow", "auto, browser or device"),
            ("[profiles.default]\ncloud = \"mars\"\n", "profiles.default.cloud", "public, usgov, usgov-dod, china"),
            ("[profiles.default]\nstore = \"file\"\n", "profiles.default.store", "keyring or memory"),
            ("[profiles.default]\nauthority = \"not a url\"\n", "profiles.default.authority", "not a URL"),
            ("[profiles.default]\nauthority = \"ftp://x/t\"\n", "profiles.default.authority", "use https"),
            ("[profiles.default]\nauthority = \"https://h/t?x=1\"\n", "profiles.default.authority", "query"),
            ("[profiles.default]\nauthority = \"https://h/t#f\"\n", "profiles.default.authority", "fragment"),
            ("[profiles.default]\nauthority = \"https://h/\"\n", "profiles.default.authority", "names no tenant"),
            ("[profiles.default]\nauthority = \"https://u:p@h/t\"\n", "profiles.default.authority", "password"),
            (
                "[profiles.default]\nauthority = \"https://h/t\"\ntenant = \"t\"\n",
                "profiles.default.authority",
                "cannot be combined",
            ),
            (
                "[profiles.default]\nauthority = \"https://h/t\"\ncloud = \"china\"\n",
                "profiles.default.authority",
                "cannot be combined",
            ),
            ("[profiles.default]\nclient_id = \"\"\n", "profiles.default.client_id", "client) id"),
            ("[profiles.default]\nclient_id = \"a b\"\n", "profiles.default.client_id", "without spaces"),
            (
                "default_profile = \"home\"\n[profiles.work]\n",
                "default_profile",
                "add [profiles.home] or use one of work",
            ),
            ("[profiles.work]\n[profiles.home]\n", "default_profile", "set default_profile to one of home, work"),
            ("[profiles.default]\nmin_valid = 86401\n", "profiles.default.min_valid", "at most 86400"),
            ("[profiles.default]\ntenant = \"contoso/evil\"\n", "profiles.default.tenant", "not a tenant"),
            ("[profiles.default]\ntenant = \"\"\n", "profiles.default.tenant", "not a tenant"),
            ("[profiles.default]\ntenant = \"a b\"\n", "profiles.default.tenant", "not a tenant"),
            ("[profiles.default]\nscopes = []\n", "profiles.default.scopes", "at least one scope"),
            ("[profiles.default]\nscopes = [\"User.Read Mail.Read\"]\n", "profiles.default.scopes", "own string"),
            ("[profiles.default]\nlogin_hint = \"\"\n", "profiles.default.login_hint", "must not be empty"),
            ("[profiles.\"my work\"]\n", "profiles.my work", "letters, digits"),
            ("default_profile = \"a.b\"\n", "default_profile", "letters, digits"),
            ("http_timeout = 0\n", "http_timeout", "between 1 and 600"),
            ("browser_timeout = 5\n", "browser_timeout", "between 10 and 3600"),
            ("browser_command = []\n", "browser_command", "must name a program"),
            ("[profiles.default]\nprompt = \"always\"\n", "profiles.default.prompt", "select_account"),
            ("http_timeout = 601\n", "http_timeout", "between 1 and 600"),
            ("keyring_service = \" \"\n", "keyring_service", "must not be empty"),
            ("[profiles.default]\ncae = \"yes\"\n", "profiles.default.cae", "invalid type"),
        ];
        for (text, key, allowed) in cases {
            let message = error_naming(text, key);
            assert!(message.contains(allowed), "{text:?} should say {allowed:?}: {message}");
        }
    }

    #[test]
    fn syntax_errors_give_the_line() {
        let err = parse("# first\n[profiles.work]\n\nflw = \"auto\"\n").unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.starts_with(&format!("{FILE}:4:1: profiles.work.flw: unknown field `flw`")), "{message}");
        assert!(message.contains("expected one of"), "{message}");

        let message = parse("[profiles.work\n").unwrap_err().to_string();
        assert!(message.starts_with(&format!("{FILE}:1:")), "{message}");
    }

    /// Three files with different `keyring_service`s, to see which one was read.
    fn three_files(dir: &Path) -> [PathBuf; 3] {
        ["flag", "env", "default"].map(|name| {
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, format!("keyring_service = \"{name}\"\n")).unwrap();
            path
        })
    }

    fn env_with(value: &Path) -> impl Fn(&str) -> Option<OsString> {
        let value = value.as_os_str().to_owned();
        move |name| (name == CONFIG_ENV).then(|| value.clone())
    }

    #[test]
    fn the_command_line_wins_over_the_environment_over_the_default_location() {
        let dir = tempfile::tempdir().unwrap();
        let [flag, env, default] = three_files(dir.path());
        let read = |explicit: Option<&Path>, env: &dyn Fn(&str) -> Option<OsString>| {
            let config = Config::load_from(explicit, env, Some(default.clone())).unwrap();
            assert_eq!(
                config.source.as_ref().map(|p| p.file_stem().unwrap().to_owned()),
                Some(config.keyring_service.clone().into())
            );
            config.keyring_service
        };
        assert_eq!(read(Some(&flag), &env_with(&env)), "flag");
        assert_eq!(read(None, &env_with(&env)), "env");
        assert_eq!(read(None, &|_| None), "default");
        assert_eq!(read(None, &|_| Some(OsString::new())), "default", "an empty variable counts as unset");
    }

    #[test]
    fn a_missing_file_that_was_named_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");

        let err = Config::load_from(Some(&missing), |_| None, None).unwrap_err();
        assert!(matches!(err, ConfigError::NotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("missing.toml") && message.contains("command line"), "{message}");

        let message = Config::load_from(None, env_with(&missing), None).unwrap_err().to_string();
        assert!(message.contains("missing.toml") && message.contains("$GRAPHBROKER_CONFIG"), "{message}");
    }

    #[test]
    fn no_home_directory_means_the_defaults() {
        assert_eq!(Config::load_from(None, |_| None, None).unwrap(), Config::defaults());
    }

    #[test]
    fn an_unreadable_file_is_an_error_even_at_the_default_location() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: reading it fails with something other than NotFound.
        let err = Config::load_from(None, |_| None, Some(dir.path().to_path_buf())).unwrap_err();
        assert!(matches!(err, ConfigError::Read { .. }), "{err:?}");
    }

    #[test]
    fn a_bad_file_at_the_default_location_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "[profiles.default]\nflow = \"telepathy\"\n").unwrap();
        let message = Config::load_from(None, |_| None, Some(path.clone())).unwrap_err().to_string();
        assert!(message.starts_with(&path.display().to_string()), "{message}");
        assert!(message.contains("profiles.default.flow"), "{message}");
    }

    #[test]
    fn default_path_is_under_the_config_dir() {
        if let Some(path) = default_path() {
            assert!(path.ends_with("graphbroker/config.toml"), "{}", path.display());
        }
    }
}
