//! The config file `graphbroker-client config init` writes, held to the daemon's real loader: as written it is the
//! defaults, it documents every key the loader accepts (found by asking the loader, not from a list kept here),
//! each line showing a default really is the default, and its example lines, uncommented, load.
//!
//! A key added to the daemon's config without a line in `crates/graphbroker-client/src/config_template.toml`, or
//! without an entry in `Config::report` (`GET /v1/config`), fails here.

use std::collections::BTreeSet;
use std::path::Path;

use graphbroker_client::config_file::{self, TEMPLATE};
use graphbrokerd::config::{Config, Origins};

const FILE: &str = "/test/config.toml";

fn parse(text: &str) -> Result<Config, String> {
    Config::parse(text, Path::new(FILE)).map_err(|err| err.to_string())
}

/// A loaded config with what says where it was read from taken out, to compare values only.
fn values(config: Config) -> Config {
    Config { source: None, origins: Origins::default(), ..config }
}

/// Whether `line` is an example line: a key or a table header commented out by a `#` right before it (prose
/// comments have a space after the `#`).
fn is_example(line: &str) -> bool {
    line.strip_prefix('#').is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_alphabetic() || c == '['))
}

/// Example lines that show a value to adapt rather than the default.
fn is_marked_example(line: &str) -> bool {
    line.trim_end().ends_with("# example")
}

fn uncommented(keep: impl Fn(usize, &str) -> bool) -> String {
    let lines = TEMPLATE.lines().enumerate();
    lines
        .map(|(i, line)| if is_example(line) && keep(i, line) { &line[1..] } else { line })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The fields serde lists for an unknown key `__probe` at `header` (`None`: the top level), when the loader
/// answers with an unknown-field error there; `None` when the place is no table of named fields.
fn fields_at(header: Option<&str>) -> Option<Vec<String>> {
    let text = match header {
        Some(header) => format!("[{header}]\n__probe = 1\n"),
        None => "__probe = 1\n".to_owned(),
    };
    let message = parse(&text).expect_err("an unknown key is refused");
    let (_, expected) = message.split_once("unknown field `__probe`, ")?;
    Some(expected.split('`').skip(1).step_by(2).map(str::to_owned).collect())
}

/// Every key path the loader accepts, as (table, key): table `""` for the top level, `profiles.*` for a key of
/// any profile. Found by probing the loader: a key that is a table of named fields, or a map of such tables,
/// is followed into.
fn accepted_keys() -> Vec<(String, String)> {
    let top = fields_at(None).expect("the top level refuses unknown keys, listing the known ones");
    assert!(top.len() >= 5, "the probe reads serde's list: {top:?}");
    let mut keys = Vec::new();
    for key in top {
        if let Some(fields) = fields_at(Some(&key)) {
            keys.extend(fields.into_iter().map(|field| (key.clone(), field)));
        } else if let Some(fields) = fields_at(Some(&format!("{key}.probe"))) {
            keys.extend(fields.into_iter().map(|field| (format!("{key}.*"), field)));
        } else {
            keys.push((String::new(), key));
        }
    }
    keys
}

/// The (table, key) of every example line of the template; a table named under a map of tables is `map.*`.
fn template_keys() -> BTreeSet<(String, String)> {
    let mut table = String::new();
    let mut keys = BTreeSet::new();
    for line in TEMPLATE.lines() {
        let line = line.strip_prefix('#').filter(|_| is_example(line)).unwrap_or(line);
        if let Some(header) = line.strip_prefix('[') {
            let name = header.split(']').next().unwrap_or_default().trim();
            table = match name.split_once('.') {
                Some((map, _)) => format!("{map}.*"),
                None => name.to_owned(),
            };
        } else if let Some((key, _)) = line.split_once('=')
            && !line.starts_with('#')
        {
            keys.insert((table.clone(), key.trim().to_owned()));
        }
    }
    keys
}

#[test]
fn the_template_as_written_is_exactly_the_defaults() {
    let config = parse(TEMPLATE).unwrap_or_else(|e| panic!("the template loads: {e}"));
    assert_eq!(config.source.as_deref(), Some(Path::new(FILE)));
    assert_eq!(values(config), Config::defaults());
}

#[test]
fn every_key_the_daemon_accepts_is_in_the_template() {
    let documented = template_keys();
    let missing: Vec<String> = accepted_keys()
        .into_iter()
        .filter(|key| !documented.contains(key))
        .map(|(table, key)| if table.is_empty() { key } else { format!("{table}.{key}") })
        .collect();
    assert!(
        missing.is_empty(),
        "keys the daemon accepts but the template does not show (add a commented line with the default to \
         crates/graphbroker-client/src/config_template.toml): {missing:?}"
    );
    // And nothing in the template that the daemon would refuse.
    let accepted: BTreeSet<_> = accepted_keys().into_iter().collect();
    let unknown: Vec<_> = documented.difference(&accepted).collect();
    assert!(unknown.is_empty(), "template keys the daemon refuses: {unknown:?}");
}

#[test]
fn every_key_the_daemon_accepts_is_in_the_config_report() {
    let report = Config::defaults().report();
    let reported: BTreeSet<&str> = report.entries.iter().map(|entry| entry.key.as_str()).collect();
    for (table, key) in accepted_keys() {
        let path = match table.as_str() {
            "" => key.clone(),
            map if map.ends_with(".*") => format!("{}.default.{key}", map.trim_end_matches(".*")),
            table => format!("{table}.{key}"),
        };
        if table.is_empty() && fields_at(Some(&format!("{key}.probe"))).is_some() {
            continue;
        }
        assert!(reported.contains(path.as_str()), "GET /v1/config leaves out {path} (config/report.rs)");
    }
}

#[test]
fn each_default_line_uncommented_alone_changes_nothing() {
    let mut checked = 0;
    for (index, line) in TEMPLATE.lines().enumerate() {
        if !is_example(line) || is_marked_example(line) {
            continue;
        }
        let text = uncommented(|i, _| i == index);
        let config = parse(&text).unwrap_or_else(|e| panic!("line {}: {line}: {e}", index + 1));
        assert_eq!(values(config), Config::defaults(), "line {} is not the default: {line}", index + 1);
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} default lines found");
}

#[test]
fn each_example_line_uncommented_alone_loads_and_changes_its_key() {
    let mut checked = 0;
    for (index, line) in TEMPLATE.lines().enumerate() {
        if !is_example(line) || !is_marked_example(line) {
            continue;
        }
        let text = uncommented(|i, _| i == index);
        let config = parse(&text).unwrap_or_else(|e| panic!("line {}: {line}: {e}", index + 1));
        assert_ne!(values(config), Config::defaults(), "line {} is marked as an example but is the default", index + 1);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} example lines found");
}

#[test]
fn every_example_line_uncommented_at_once_loads() {
    let text = uncommented(|_, _| true);
    assert!(!text.lines().any(is_example), "everything uncommented");
    let config = parse(&text).unwrap_or_else(|e| panic!("the template with every line uncommented: {e}\n{text}"));
    assert!(config.profiles.len() >= 2, "the example profile is there too");
    let uncommented_keys = config.origins.iter().count();
    assert!(uncommented_keys >= template_keys().len(), "{uncommented_keys} keys read");
}

#[test]
fn the_client_looks_for_the_file_where_the_daemon_does() {
    assert_eq!(config_file::default_path(), graphbrokerd::config::default_path());
    assert_eq!(config_file::CONFIG_ENV, graphbrokerd::config::CONFIG_ENV);
}
