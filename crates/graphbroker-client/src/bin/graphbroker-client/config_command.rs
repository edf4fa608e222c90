//! `config init` (write the commented config file where graphbrokerd reads it) and `config show` (the running
//! daemon's configuration, each value with the file line it came from, aligned like `git config --show-origin`).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use graphbroker_client::protocol::{ConfigOrigin, ConfigValue};
use graphbroker_client::{Client, ConfigResponse, config_file};

use crate::exit_status::{ExitStatus, Failure};
use crate::output::print_line;

/// Writes [`config_file::TEMPLATE`] to `explicit`, else where graphbrokerd looks. The file is 0600 and a missing
/// parent directory is made 0700 (the daemon refuses a file others may write). An existing file is kept unless
/// `force`; then the new one is written beside it and renamed over it, so the old file stays whole until then.
pub fn init(explicit: Option<&Path>, force: bool) -> Result<(), Failure> {
    let path = config_file::resolve_path(explicit, |name| std::env::var_os(name)).ok_or_else(|| {
        Failure::new(ExitStatus::Other, "there is no home directory to put the config file in: name it with --config")
    })?;
    let failed = |what: &str, error: std::io::Error| {
        Failure::new(ExitStatus::Other, format!("could not {what} {}: {error}", path.display()))
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    DirBuilder::new().recursive(true).mode(0o700).create(parent).map_err(|e| failed("make the directory of", e))?;
    if force {
        replace(&path, parent).map_err(|e| failed("write", e))?;
    } else {
        match write_new(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Failure::new(
                    ExitStatus::Other,
                    format!(
                        "{} exists already and was left as it is: edit it, or replace it with `graphbroker-client \
                         config init --force`",
                        path.display()
                    ),
                ));
            }
            Err(error) => return Err(failed("write", error)),
        }
    }
    print_line(&format!(
        "wrote {}: every key is commented out with its default; uncomment a line to change it",
        path.display()
    ))
}

/// Creates `path` (never following or replacing anything already there) and writes the template into it.
fn write_new(path: &Path) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    if let Err(error) = file.write_all(config_file::TEMPLATE.as_bytes()).and_then(|()| file.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(error);
    }
    Ok(())
}

/// Writes the template to a new file in `parent` and renames it over `path`.
fn replace(path: &Path, parent: &Path) -> std::io::Result<()> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "config.toml".into());
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    write_new(&temporary)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// Prints the running daemon's configuration: `--json` the daemon's answer, else one aligned line per key.
pub async fn show(client: &Client, json: bool) -> Result<(), Failure> {
    let answer = client.config().await?;
    if json {
        let text = serde_json::to_string_pretty(&answer)
            .map_err(|error| Failure::new(ExitStatus::Other, error.to_string()))?;
        return print_line(&text);
    }
    print_line(render(&answer).trim_end())
}

/// The text of `config show`: a first line naming the file, then `ORIGIN  key = value` per key, the origin being
/// `FILE:LINE` or `default`, padded so that the keys line up.
pub fn render(answer: &ConfigResponse) -> String {
    let origin = |line: Option<u32>, origin: ConfigOrigin| match (origin, &answer.file, line) {
        (ConfigOrigin::File, Some(file), Some(line)) => format!("{file}:{line}"),
        (origin, _, _) => origin.as_str().to_owned(),
    };
    let origins: Vec<String> = answer.entries.iter().map(|entry| origin(entry.line, entry.origin)).collect();
    let width = origins.iter().map(|o| o.chars().count()).max().unwrap_or(0);
    let mut out = match &answer.file {
        Some(file) => format!("# graphbrokerd's configuration, read from {file}\n"),
        None => "# graphbrokerd read no config file: every value is a default\n".to_owned(),
    };
    for (entry, origin) in answer.entries.iter().zip(origins) {
        let value = match &entry.value {
            Some(value) => format!("= {}", toml_value(value)),
            None => "(not set)".to_owned(),
        };
        out.push_str(&format!("{origin:<width$}  {} {value}\n", entry.key));
    }
    out
}

/// `value` written as TOML writes it (a JSON string is a valid TOML basic string).
fn toml_value(value: &ConfigValue) -> String {
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"));
    match value {
        ConfigValue::Bool(value) => value.to_string(),
        ConfigValue::Integer(value) => value.to_string(),
        ConfigValue::Text(text) => quote(text),
        ConfigValue::List(items) => format!("[{}]", items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use graphbroker_client::protocol::ConfigEntry;

    use super::*;

    fn entry(key: &str, value: Option<ConfigValue>, line: Option<u32>) -> ConfigEntry {
        let origin = if line.is_some() { ConfigOrigin::File } else { ConfigOrigin::Default };
        ConfigEntry { key: key.into(), value, origin, line }
    }

    #[test]
    fn origins_are_aligned_and_values_written_as_toml() {
        let answer = ConfigResponse {
            file: Some("/home/adele/.config/graphbroker/config.toml".into()),
            entries: vec![
                entry("http_timeout", Some(10.into()), None),
                entry("profiles.work.tenant", Some("contoso.onmicrosoft.com".into()), Some(12)),
                entry("profiles.work.scopes", Some(vec!["User.Read".to_owned(), "Mail.Read".to_owned()].into()), None),
                entry("profiles.work.login_hint", None, None),
                entry("profiles.work.cae", Some(true.into()), Some(3)),
            ],
        };
        assert_eq!(
            render(&answer),
            "# graphbrokerd's configuration, read from /home/adele/.config/graphbroker/config.toml\n\
             default                                         http_timeout = 10\n\
             /home/adele/.config/graphbroker/config.toml:12  profiles.work.tenant = \"contoso.onmicrosoft.com\"\n\
             default                                         profiles.work.scopes = [\"User.Read\", \"Mail.Read\"]\n\
             default                                         profiles.work.login_hint (not set)\n\
             /home/adele/.config/graphbroker/config.toml:3   profiles.work.cae = true\n"
        );
    }

    #[test]
    fn no_file_says_so() {
        let answer = ConfigResponse { file: None, entries: vec![entry("http_timeout", Some(10.into()), None)] };
        assert_eq!(
            render(&answer),
            "# graphbrokerd read no config file: every value is a default\ndefault  http_timeout = 10\n"
        );
    }
}
