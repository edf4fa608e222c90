//! What the client generates from its clap definition: the shell completions (`completions SHELL`) and the man
//! pages (`__generate man DIR`). The expectations come from the program's own `--help`, not from a list kept
//! here, so a subcommand or flag missing from a script or a page fails.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};

fn client_bin() -> &'static str {
    env!("CARGO_BIN_EXE_graphbroker-client")
}

fn run(args: &[&str]) -> Output {
    // No runtime directory, no socket: generating must need neither.
    let output = Command::new(client_bin()).args(args).env_remove("XDG_RUNTIME_DIR").output().unwrap();
    assert!(output.status.success(), "{args:?}: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    output
}

fn stdout(args: &[&str]) -> String {
    String::from_utf8(run(args).stdout).unwrap()
}

fn on_path(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(program).is_file())
}

/// The subcommands `--help` lists under "Commands:" (clap's own `help` left out: it is no page of its own).
fn subcommands(args: &[&str]) -> BTreeSet<String> {
    let help = stdout(&[args, &["--help"]].concat());
    let section = help.split_once("Commands:\n").expect("a Commands section").1;
    section
        .lines()
        .take_while(|line| line.starts_with("  "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect()
}

/// The long flags `--help` lists under "Options:" (and "Arguments"-less), `--help` and `--version` included.
fn long_flags(args: &[&str]) -> BTreeSet<String> {
    let help = stdout(&[args, &["--help"]].concat());
    let section = help.split_once("Options:\n").expect("an Options section").1;
    section
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix("-").map(|rest| format!("-{rest}")))
        .filter_map(|line| line.split([' ', ',', '=', '<']).find(|word| word.starts_with("--")).map(str::to_owned))
        .collect()
}

/// Runs bash with the completion script sourced, completing the words of `line` (the last one being completed),
/// and returns what the completion function offered.
fn bash_complete(script: &Path, words: &[&str]) -> BTreeSet<String> {
    let program = r#"
        set -u
        source "$SCRIPT"
        spec=$(complete -p graphbroker-client) || { echo "no completion registered" >&2; exit 2; }
        function=$(sed -n 's/.*-F \([^ ]*\).*/\1/p' <<<"$spec")
        [ -n "$function" ] || { echo "no completion function in: $spec" >&2; exit 2; }
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        "$function" graphbroker-client "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", program, "complete"])
        .args(words)
        .env("SCRIPT", script)
        .output()
        .unwrap();
    assert!(output.status.success(), "bash: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(|l| l.trim().to_owned()).collect()
}

#[test]
fn the_bash_completion_parses_and_completes_subcommands_flags_and_values() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("graphbroker-client.bash");
    std::fs::write(&script, run(&["completions", "bash"]).stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(syntax.status.success(), "bash -n: {}", String::from_utf8_lossy(&syntax.stderr));

    let commands = subcommands(&[]);
    assert!(commands.contains("token") && commands.contains("completions"), "{commands:?}");
    let offered = bash_complete(&script, &["graphbroker-client", ""]);
    for command in &commands {
        assert!(offered.contains(command), "{command} is not offered: {offered:?}");
    }
    assert!(!offered.iter().any(|word| word.starts_with("__")), "a hidden command is offered: {offered:?}");

    assert_eq!(bash_complete(&script, &["graphbroker-client", "tok"]), BTreeSet::from(["token".to_owned()]));
    let flags = bash_complete(&script, &["graphbroker-client", "token", "--"]);
    for flag in long_flags(&["token"]) {
        assert!(flags.contains(&flag), "token {flag} is not offered: {flags:?}");
    }
    let formats = bash_complete(&script, &["graphbroker-client", "token", "--format", ""]);
    for format in ["raw", "json", "env", "header", "xoauth2"] {
        assert!(formats.contains(format), "--format {format} is not offered: {formats:?}");
    }
    let actions = bash_complete(&script, &["graphbroker-client", "service", ""]);
    for action in subcommands(&["service"]) {
        assert!(actions.contains(&action), "service {action} is not offered: {actions:?}");
    }
}

#[test]
fn the_zsh_and_fish_completions_name_every_subcommand() {
    let commands = subcommands(&[]);
    for shell in ["zsh", "fish"] {
        let script = stdout(&["completions", shell]);
        for command in &commands {
            assert!(script.contains(command.as_str()), "{shell}: no {command}");
        }
        assert!(script.contains("xoauth2") && script.contains("min-valid"), "{shell}: token's flags are missing");
        assert!(!script.contains("__generate"), "{shell}: the hidden command is in the script");
        // The shell itself checks the syntax where it is installed.
        if on_path(shell) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join(format!("script.{shell}"));
            std::fs::write(&file, &script).unwrap();
            let check = Command::new(shell).arg("-n").arg(&file).output().unwrap();
            assert!(check.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&check.stderr));
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let output = Command::new(client_bin()).args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("bash"), "the error lists the shells");
}

/// A page as `man` shows it: rendered by `man -l` when man is installed (lines wide enough not to break
/// words), else the roff source with its escaped hyphens undone.
fn man_text(page: &Path) -> String {
    if on_path("man") {
        let output = Command::new("man")
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "250")
            .env("MANPAGER", "cat")
            .env("MAN_DISABLE_SECCOMP", "1")
            .output()
            .unwrap();
        assert!(output.status.success(), "man -l {}: {}", page.display(), String::from_utf8_lossy(&output.stderr));
        // Bold and underline come as overstrikes when the output is not a terminal.
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let mut plain = String::new();
        for c in text.chars() {
            if c == '\u{8}' {
                plain.pop();
            } else {
                plain.push(c);
            }
        }
        plain.replace(['\u{2010}', '\u{2212}'], "-")
    } else {
        std::fs::read_to_string(page).unwrap().replace("\\-", "-")
    }
}

#[test]
fn the_man_pages_cover_every_subcommand_and_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("man1");
    run(&["__generate", "man", out.to_str().unwrap()]);

    let mut expected: BTreeSet<String> = BTreeSet::from(["graphbroker-client.1".to_owned()]);
    for command in subcommands(&[]) {
        expected.insert(format!("graphbroker-client-{command}.1"));
    }
    for action in subcommands(&["service"]) {
        expected.insert(format!("graphbroker-client-service-{action}.1"));
    }
    let written: BTreeSet<String> =
        std::fs::read_dir(&out).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(written, expected);

    let main = man_text(&out.join("graphbroker-client.1"));
    for command in subcommands(&[]) {
        assert!(main.contains(&format!("graphbroker-client-{command}(1)")), "the main page does not list {command}");
    }
    assert!(main.contains("EXIT STATUS") || main.contains("Exit status"), "the exit statuses are missing");
    for command in ["token", "header", "signin", "status", "completions"] {
        let page = man_text(&out.join(format!("graphbroker-client-{command}.1")));
        assert!(page.contains(&format!("graphbroker-client {command}")), "{command}: no synopsis");
        for flag in long_flags(&[command]) {
            if flag != "--help" {
                assert!(page.contains(&flag), "{command}'s page lacks {flag}");
            }
        }
    }
}
