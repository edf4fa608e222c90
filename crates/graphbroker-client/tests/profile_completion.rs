//! `--profile <TAB>` completes the profile names of the daemon's config file, not file names: bash sources the
//! generated script and runs its completion function, which asks `graphbroker-client __profiles`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

const CONFIG: &str = r#"default_profile = "work"

[profiles.work]
client_id = "14d82eec-204b-4c2f-b7e8-296a70dab67e"

[profiles.mail]
client_id = "14d82eec-204b-4c2f-b7e8-296a70dab67e"
"#;

fn client_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_graphbroker-client"))
}

/// What bash's completion of `words` (the last one being completed) offers, with `config` as the daemon's config
/// and this build's graphbroker-client first on `PATH`, run in `cwd`.
fn bash_complete(script: &Path, config: &Path, cwd: &Path, words: &[&str]) -> BTreeSet<String> {
    let program = r#"
        set -u
        source "$SCRIPT"
        function=$(complete -p graphbroker-client | sed -n 's/.*-F \([^ ]*\).*/\1/p')
        COMP_WORDS=("$@")
        COMP_CWORD=$(( $# - 1 ))
        COMP_LINE="$*"
        COMP_POINT=${#COMP_LINE}
        "$function" graphbroker-client "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
        printf '%s\n' "${COMPREPLY[@]}"
    "#;
    let path = std::env::join_paths(
        std::iter::once(client_bin().parent().unwrap().to_path_buf())
            .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )
    .unwrap();
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", program, "complete"])
        .args(words)
        .current_dir(cwd)
        .env("SCRIPT", script)
        .env("PATH", path)
        .env("GRAPHBROKER_CONFIG", config)
        .output()
        .expect("bash");
    assert!(output.status.success(), "bash: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn set(words: &[&str]) -> BTreeSet<String> {
    words.iter().map(|w| (*w).to_owned()).collect()
}

#[test]
fn bash_completes_profile_names_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let script = dir.path().join("graphbroker-client.bash");
    let generated = Command::new(client_bin()).args(["completions", "bash"]).output().unwrap();
    assert!(generated.status.success());
    std::fs::write(&script, generated.stdout).unwrap();
    // Files in the working directory that a file-name completion would offer.
    let cwd = dir.path().join("cwd");
    std::fs::create_dir(&cwd).unwrap();
    std::fs::write(cwd.join("wallpaper.png"), "").unwrap();

    for command in ["token", "header", "signin", "signout"] {
        let offered = bash_complete(&script, &config, &cwd, &["graphbroker-client", command, "--profile", ""]);
        assert_eq!(offered, set(&["mail", "work"]), "{command} --profile");
    }
    let offered = bash_complete(&script, &config, &cwd, &["graphbroker-client", "token", "--profile", "w"]);
    assert_eq!(offered, set(&["work"]), "only the matching name, not wallpaper.png");

    // No config file: nothing to offer, and no error on the terminal.
    let missing = dir.path().join("missing.toml");
    assert!(bash_complete(&script, &missing, &cwd, &["graphbroker-client", "token", "--profile", ""]).is_empty());
}

#[test]
fn profiles_prints_the_names_and_needs_no_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let output = Command::new(client_bin())
        .arg("__profiles")
        .env("GRAPHBROKER_CONFIG", &config)
        .env_remove("XDG_RUNTIME_DIR")
        .env("GRAPHBROKER_SOCKET", dir.path().join("nothing.sock"))
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "mail\nwork\n");
}
