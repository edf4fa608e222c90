//! The daemon's configuration: a TOML file of named profiles, read in two steps.
//!
//! `RawConfig` only parses (serde: unknown keys and unknown `cloud`, `flow` or `store` values are refused with the
//! line and the key); its `Resolver` then applies the defaults, turns cloud and tenant into an authority URL, and
//! validates, so every error names the file, the key and what is allowed. Both live in `resolve`, [`Cloud`] in
//! `cloud`; this module holds the resolved [`Config`] and [`Profile`], the defaults and limits, and where the file
//! is looked for. No file at all is a working configuration: one profile, `default`, signing in to tenant `common`
//! with the public client id of Microsoft Graph Command Line Tools. `docs/configuration.md` documents every key.

mod cloud;
mod origin;
pub mod policy;
mod report;
mod resolve;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use graphbroker_protocol::{SignInFlow, StoreKind};
use url::Url;

pub use cloud::Cloud;
pub use origin::Origins;
use resolve::{RawConfig, Resolver, syntax_error};

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

/// How long Entra keeps an unused refresh token: its default inactivity limit (AADSTS700082 says "inactive for
/// 90.00:00:00"). Tenants can shorten it only through sign-in frequency policies, which end sessions by their own
/// rule (AADSTS70043) rather than this one.
pub const REFRESH_TOKEN_INACTIVITY: Duration = Duration::from_secs(90 * 24 * 60 * 60);

/// How long an account may go unused before the rolling refresh redeems its refresh token (key `rolling_refresh`,
/// seconds). A week leaves 83 days before the inactivity limit, so a machine that is off or asleep for weeks still
/// gets its daily check in time, while an account nobody uses costs the platform one request a week.
pub const DEFAULT_ROLLING_REFRESH: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// How long before the inactivity limit `status` warns that a sign-in will soon be needed: two weeks gives the
/// user time to notice, and is well past what a working rolling refresh (a week, checked daily) lets happen.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(14 * 24 * 60 * 60);

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
    /// Show a sign-in's prompt as a desktop notification when no terminal is showing it (key `notifications`,
    /// off by default: a daemon on a shared or headless machine should not pop anything up unasked).
    pub notifications: bool,
    /// The file this was read from; `None` for the built-in defaults.
    pub source: Option<PathBuf>,
    /// The line of each key set in `source`, read from the same text (empty for the built-in defaults).
    pub origins: Origins,
    /// `[policy]`: who may have which token (`crate::policy`).
    pub policy: policy::PolicyConfig,
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
    /// Where the Graph proxy forwards to, e.g. `https://graph.microsoft.com/`: the `graph_url` key (a Graph host of
    /// a cloud, or a loopback stand-in), else the cloud's Graph endpoint.
    pub graph_url: Url,
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
    /// Redeem the refresh token of an account unused for this long, before the platform's inactivity limit ends
    /// its session (key `rolling_refresh`, seconds; `0` turns it off: `None`).
    pub rolling_refresh: Option<Duration>,
    /// The `test_setup` key: a real cloud's sign-in with a loopback `graph_url` is allowed.
    pub test_setup: bool,
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
            graph_url: Url::parse(cloud.graph_resource()).expect("a cloud's Graph resource is a URL"),
            authority: cloud.authority(DEFAULT_TENANT),
            tenant: DEFAULT_TENANT.to_owned(),
            client_id: DEFAULT_CLIENT_ID.to_owned(),
            cloud,
            graph_resource: cloud.graph_resource().to_owned(),
            flow: SignInFlow::Auto,
            scopes: DEFAULT_SCOPES.iter().map(|s| (*s).to_owned()).collect(),
            min_valid: DEFAULT_MIN_VALID,
            store: StoreKind::Auto,
            login_hint: None,
            prompt: None,
            cae: false,
            rolling_refresh: Some(DEFAULT_ROLLING_REFRESH),
            test_setup: false,
        }
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

    /// The file belongs to someone other than the user (or root), or others may write to it: whoever can write it
    /// chooses the identity platform the daemon signs in to. Refused as ssh refuses such a `~/.ssh/config`.
    #[error(
        "bad owner or permissions on config file {}: owned by uid {owner} with mode {mode:04o}; it must be owned by \
         you (uid {uid}) or root and not writable by group or others (`chmod go-w {}`)",
        .path.display(),
        .path.display()
    )]
    Permissions { path: PathBuf, owner: u32, mode: u32, uid: u32 },

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
            notifications: false,
            source: None,
            origins: Origins::default(),
            policy: Default::default(),
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
        match read_trusted(&path, nix::unistd::getuid().as_raw()) {
            Ok(text) => Config::parse(&text, &path),
            Err(ReadFailure::Untrusted(err)) => Err(err),
            Err(ReadFailure::Io(err)) if err.kind() == std::io::ErrorKind::NotFound => match origin {
                Origin::DefaultLocation => Ok(Config::defaults()),
                Origin::CommandLine => Err(ConfigError::NotFound { path, named_by: "the command line".to_owned() }),
                Origin::Environment => Err(ConfigError::NotFound { path, named_by: format!("${CONFIG_ENV}") }),
            },
            Err(ReadFailure::Io(source)) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Parses and resolves the text of a config file; `origin` is the file's path, for messages and `source`.
    pub fn parse(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|err| syntax_error(text, origin, &err))?;
        let raw_policy = raw.policy.take();
        let config = Resolver { path: origin }.config(raw)?;
        let policy = policy::PolicyConfig::resolve(raw_policy, &config.profiles, text, origin)?;
        Ok(Config { origins: Origins::of_text(text), policy, ..config })
    }

    /// The profile called `name`, or the default profile for `None`.
    pub fn profile(&self, name: Option<&str>) -> Option<&Profile> {
        self.profiles.get(name.unwrap_or(&self.default_profile))
    }
}

/// Why [`read_trusted`] returned no text.
enum ReadFailure {
    Io(std::io::Error),
    Untrusted(ConfigError),
}

/// Reads the file at `path` if it passes [`check_ownership`] for user `uid`. The check is on the opened file
/// (`fstat`), so the file read is the file checked, even if the path is swapped in between.
fn read_trusted(path: &Path, uid: u32) -> Result<String, ReadFailure> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(ReadFailure::Io)?;
    let meta = file.metadata().map_err(ReadFailure::Io)?;
    check_ownership(path, &meta, uid).map_err(ReadFailure::Untrusted)?;
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(ReadFailure::Io)?;
    Ok(text)
}

/// The rule for the config file, ssh's for `~/.ssh/config`: owned by the user or by root, and not writable by
/// group or others. Root-owned is accepted because root can change any file of the user's anyway, and an
/// administrator may provide the file; a group-writable file is refused even when the group is the user's alone,
/// since the daemon cannot tell who else may join it.
fn check_ownership(path: &Path, meta: &std::fs::Metadata, uid: u32) -> Result<(), ConfigError> {
    use std::os::unix::fs::MetadataExt as _;
    let (owner, mode) = (meta.uid(), meta.mode() & 0o7777);
    if (owner == uid || owner == 0) && mode & 0o022 == 0 {
        return Ok(());
    }
    Err(ConfigError::Permissions { path: path.to_owned(), owner, mode, uid })
}

/// The config file at the platform's config directory: `$XDG_CONFIG_HOME/graphbroker/config.toml` (or
/// `~/.config/…`) on Linux, `~/Library/Application Support/graphbroker/config.toml` on macOS. `None` when there is
/// no home directory to put it in.
pub fn default_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("graphbroker").join("config.toml"))
}
