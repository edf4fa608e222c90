//! The daemon's config file as the client knows it: where graphbrokerd looks for it, and the commented template
//! `graphbroker-client config init` writes there.
//!
//! The daemon's own loader is the authority on both; graphbrokerd's tests hold this module to it (the same
//! default path, the template loading to exactly the defaults, every key of the file documented here).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The commented config file: every key with its default, commented out, so that it loads to the defaults as
/// written and uncommenting any example line gives a valid configuration.
pub const TEMPLATE: &str = include_str!("config_template.toml");

/// The environment variable naming the config file, as graphbrokerd reads it (`--config` wins over it).
pub const CONFIG_ENV: &str = "GRAPHBROKER_CONFIG";

/// The config file at the platform's config directory, where graphbrokerd looks when neither `--config` nor
/// [`CONFIG_ENV`] names one: `$XDG_CONFIG_HOME/graphbroker/config.toml` (or `~/.config/…`) on Linux,
/// `~/Library/Application Support/graphbroker/config.toml` on macOS. `None` without a home directory.
pub fn default_path() -> Option<PathBuf> {
    directories::BaseDirs::new().map(|dirs| dirs.config_dir().join("graphbroker").join("config.toml"))
}

/// Which file graphbrokerd would read, by its rule: `explicit` (a `--config` flag), else a non-empty
/// [`CONFIG_ENV`] as `env` reports it, else [`default_path`].
pub fn resolve_path(explicit: Option<&Path>, env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(path) = explicit {
        return Some(path.to_path_buf());
    }
    match env(CONFIG_ENV).filter(|value| !value.is_empty()) {
        Some(value) => Some(PathBuf::from(value)),
        None => default_path(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flag_wins_then_the_environment_then_the_default_location() {
        let env = |value: &'static str| move |name: &str| (name == CONFIG_ENV).then(|| OsString::from(value));
        assert_eq!(resolve_path(Some(Path::new("/flag.toml")), env("/env.toml")), Some("/flag.toml".into()));
        assert_eq!(resolve_path(None, env("/env.toml")), Some("/env.toml".into()));
        assert_eq!(resolve_path(None, env("")), default_path(), "an empty variable counts as unset");
        assert_eq!(resolve_path(None, |_| None), default_path());
    }
}
