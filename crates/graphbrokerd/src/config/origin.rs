//! Where each value of a config file was written: the line of every key, read from the same text the
//! [`Config`](super::Config) was parsed from, so that `GET /v1/config` names lines that agree with the values.
//!
//! This re-reads the text as a spanned TOML document (`toml::de::DeTable`) instead of threading spans through the
//! serde structs of `resolve.rs`: those stay plain, and every key, whoever adds it, gets its line here for free.

use std::collections::BTreeMap;

use toml::de::{DeTable, DeValue};

/// The 1-based line of every key in a config file that holds a value (tables themselves have none), by dotted key
/// path (`http_timeout`, `profiles.work.tenant`). Empty for the built-in defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    lines: BTreeMap<String, u32>,
}

impl Origins {
    /// The lines of the keys of `text`. Text that is not a TOML document gives no lines: the caller has parsed it
    /// already, so that only happens if the two parsers disagree, and then no line is better than a wrong one.
    pub fn of_text(text: &str) -> Origins {
        let mut lines = BTreeMap::new();
        if let Ok(document) = DeTable::parse(text) {
            collect(text, "", document.get_ref(), &mut lines);
        }
        Origins { lines }
    }

    /// The line of the key `path` (dotted), when the file sets it.
    pub fn line(&self, path: &str) -> Option<u32> {
        self.lines.get(path).copied()
    }

    /// Every key the file sets with its line, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.lines.iter().map(|(key, line)| (key.as_str(), *line))
    }
}

fn collect(text: &str, prefix: &str, table: &DeTable<'_>, lines: &mut BTreeMap<String, u32>) {
    for (key, value) in table {
        let path = format!("{prefix}{}", key.get_ref());
        match value.get_ref() {
            DeValue::Table(inner) => collect(text, &format!("{path}."), inner, lines),
            _ => {
                lines.insert(path, line_of(text, key.span().start));
            }
        }
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_of(text: &str, offset: usize) -> u32 {
    let before = text.get(..offset).unwrap_or(text);
    u32::try_from(before.matches('\n').count() + 1).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_has_the_line_of_its_key() {
        let text = "# a comment\n\
                    default_profile = \"work\"\n\
                    \n\
                    [profiles.work]\n\
                    tenant = \"contoso.onmicrosoft.com\"\n\
                    scopes = [\n  \"User.Read\",\n]\n\
                    cae = true\n\
                    [profiles.home]\n\
                    flow = \"device\"\n";
        let origins = Origins::of_text(text);
        let found: Vec<(&str, u32)> = origins.iter().collect();
        assert_eq!(
            found,
            [
                ("default_profile", 2),
                ("profiles.home.flow", 11),
                ("profiles.work.cae", 9),
                ("profiles.work.scopes", 6),
                ("profiles.work.tenant", 5),
            ]
        );
        assert_eq!(origins.line("profiles.work"), None, "a table is not a value");
        assert_eq!(origins.line("keyring_service"), None);
    }

    #[test]
    fn dotted_keys_and_inline_tables_are_found_by_their_full_path() {
        let text = "[profiles]\nwork.tenant = \"a\"\nhome = { flow = \"device\" }\n";
        let origins = Origins::of_text(text);
        assert_eq!(origins.line("profiles.work.tenant"), Some(2));
        assert_eq!(origins.line("profiles.home.flow"), Some(3));
    }

    #[test]
    fn text_that_does_not_parse_has_no_lines() {
        assert_eq!(Origins::of_text("[unclosed\nx = 1\n"), Origins::default());
        assert_eq!(Origins::of_text(""), Origins::default());
    }
}
