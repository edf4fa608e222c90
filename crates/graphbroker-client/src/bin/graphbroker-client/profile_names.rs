//! `--profile <TAB>`: the completion scripts ask `graphbroker-client __profiles` for the names of the profiles in
//! the daemon's config file, instead of completing file names.
//!
//! `__profiles` is a command line of its own, like `__generate`: clap_complete would put a hidden subcommand of
//! `Cli` into the scripts. It reads the file graphbrokerd would read (`$GRAPHBROKER_CONFIG`, else the default
//! location), never the daemon, so it needs no running daemon and starts none. A file that is missing or does not
//! parse completes nothing: a completion has no one to tell.
//!
//! clap_complete generates a file-name completion for a value it knows nothing about; [`complete_profiles`]
//! rewrites that one spot of the bash, zsh and fish scripts.

use std::process::ExitCode;

use clap_complete::Shell;

/// The word that selects this command line; no subcommand of `Cli` starts with underscores.
pub const PROFILES: &str = "__profiles";

/// The command the scripts run; the completion is registered for this name, so it is the one on `PATH`.
const LIST_COMMAND: &str = "graphbroker-client __profiles 2>/dev/null";

/// `__profiles`: the config file's profile names, one a line, on stdout.
pub fn run() -> ExitCode {
    let path = graphbroker_client::config_file::resolve_path(None, |name| std::env::var_os(name));
    let text = path.and_then(|path| std::fs::read_to_string(path).ok()).unwrap_or_default();
    for name in names(&text) {
        println!("{name}");
    }
    ExitCode::SUCCESS
}

/// The keys of `[profiles]`, in the file's order as `toml` keeps it (sorted).
fn names(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else { return Vec::new() };
    match table.get("profiles") {
        Some(toml::Value::Table(profiles)) => profiles.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// `script` with `--profile`'s value completed from [`LIST_COMMAND`] (bash, zsh, fish; others as they are).
pub fn complete_profiles(shell: Shell, script: &str) -> String {
    match shell {
        Shell::Bash => {
            // clap_complete: `--profile)` then `COMPREPLY=($(compgen -f "${cur}"))` in each subcommand's arm.
            let file_names = r#"COMPREPLY=($(compgen -f "${cur}"))"#;
            let profiles = format!(r#"COMPREPLY=($(compgen -W "$({LIST_COMMAND})" -- "${{cur}}"))"#);
            let mut out = String::with_capacity(script.len() + 1024);
            let mut after_profile = false;
            for line in script.split_inclusive('\n') {
                if after_profile && line.trim() == file_names {
                    out.push_str(&line.replacen(file_names, &profiles, 1));
                } else {
                    out.push_str(line);
                }
                after_profile = line.trim() == "--profile)";
            }
            out
        }
        Shell::Zsh => {
            script.replace(":PROFILE:_default'", &format!(r#":PROFILE:{{compadd -- ${{(f)"$({LIST_COMMAND})"}}}}'"#))
        }
        Shell::Fish => script
            .split_inclusive('\n')
            .map(|line| match line.strip_suffix(" -r\n").filter(|_| line.contains(" -l profile ")) {
                Some(start) => format!("{start} -r -f -a \"({LIST_COMMAND})\"\n"),
                None => line.to_owned(),
            })
            .collect(),
        _ => script.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_are_the_keys_of_profiles() {
        let text = "default_profile = \"work\"\n[profiles.work]\nclient_id = \"x\"\n[profiles.\"home mail\"]\n";
        assert_eq!(names(text), ["home mail", "work"]);
        assert!(names("not toml [").is_empty());
        assert!(names("default_profile = \"work\"\n").is_empty());
    }

    #[test]
    fn every_profile_flag_of_each_script_is_rewritten() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut generated = Vec::new();
            clap_complete::generate(
                shell,
                &mut <crate::cli::Cli as clap::CommandFactory>::command(),
                "graphbroker-client",
                &mut generated,
            );
            let generated = String::from_utf8(generated).unwrap();
            let script = complete_profiles(shell, &generated);
            assert!(script.matches(PROFILES).count() >= 3, "{shell}: token, header, signin…:\n{script}");
            // Every `--profile` rewritten, none left completing file names.
            let lines: Vec<&str> = script.lines().collect();
            let left = match shell {
                Shell::Bash => lines
                    .windows(2)
                    .filter(|pair| pair[0].trim() == "--profile)" && !pair[1].contains(PROFILES))
                    .count(),
                Shell::Zsh => lines.iter().filter(|l| l.contains(":PROFILE:") && !l.contains(PROFILES)).count(),
                _ => lines.iter().filter(|l| l.contains(" -l profile ") && !l.contains(PROFILES)).count(),
            };
            assert_eq!(left, 0, "{shell}:\n{script}");
        }
    }
}
