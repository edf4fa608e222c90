//! `graphbrokerd --generate-man DIR`: the page packaging installs, generated from the daemon's clap definition.
//! Every flag `--help` shows must be on the page, and the hidden ones (tests' knobs, this one) must not.

use std::process::Command;

#[test]
fn the_man_page_lists_every_visible_flag_and_no_hidden_one() {
    let daemon = env!("CARGO_BIN_EXE_graphbrokerd");
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(daemon).arg("--generate-man").arg(dir.path()).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let page_path = dir.path().join("graphbrokerd.1");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), page_path.display().to_string());
    let written: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(written, ["graphbrokerd.1"]);

    // roff escapes the hyphens of flags (`\-\-socket`).
    let page = std::fs::read_to_string(&page_path).unwrap().replace("\\-", "-");
    assert!(page.starts_with(".ie") || page.contains(".TH graphbrokerd 1"), "not a man page:\n{page}");
    let help = Command::new(daemon).arg("--help").output().unwrap();
    let help = String::from_utf8(help.stdout).unwrap();
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|line| line.split_whitespace().find(|word| word.starts_with("--")))
        .map(|word| word.trim_end_matches(','))
        .collect();
    assert!(flags.contains(&"--socket") && flags.contains(&"--idle-exit"), "{help}");
    for flag in flags {
        assert!(page.contains(flag), "the page lacks {flag}");
    }
    for hidden in ["--generate-man", "--max-connections", "--header-read-timeout-ms"] {
        assert!(!page.contains(hidden), "the page shows the hidden {hidden}");
    }
}
