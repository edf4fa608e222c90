//! The `graphbroker-client` binary against a scripted daemon: what goes to stdout, what to stderr, which status.

mod support;

use std::path::Path;
use std::process::Output;

use support::{
    ACCESS_TOKEN, DEVICE_MESSAGE, MockDaemon, Reply, daemon_error, header_body, signin_required, token_body,
};

/// Runs the binary with `args` against `socket`, with no inherited socket or daemon settings.
async fn run(socket: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_graphbroker-client"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("GRAPHBROKER_SOCKET")
        .env_remove("GRAPHBROKERD_PATH")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// The one error line every failure ends with.
fn error_line(output: &Output) -> String {
    let stderr = text(&output.stderr);
    let last = stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("graphbroker-client: "), "stderr: {stderr}");
    last
}

#[tokio::test]
async fn token_goes_to_stdout_and_the_prompt_to_stderr() {
    let daemon = MockDaemon::start(|_, index| if index == 0 { signin_required() } else { Reply::ok(token_body()) });
    let output = run(daemon.socket(), &["token", "--scopes", "User.Read", "--profile", "work"]).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(text(&output.stdout), format!("{ACCESS_TOKEN}\n"));
    assert!(stderr.contains(DEVICE_MESSAGE), "stderr: {stderr}");
    assert!(!stderr.contains(ACCESS_TOKEN), "stderr: {stderr}");
    let requests = daemon.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].param("wait").as_deref(), Some("60"));
    assert_eq!(requests[1].param("profile").as_deref(), Some("work"));
}

#[tokio::test]
async fn header_prints_one_authorization_line() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(header_body()));
    let output = run(daemon.socket(), &["header", "--scopes", "User.Read,Mail.Read"]).await;
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("Authorization: Bearer {ACCESS_TOKEN}\n"));
    assert_eq!(daemon.requests()[0].path, "/v1/header");
    assert_eq!(daemon.requests()[0].param("scopes").as_deref(), Some("User.Read Mail.Read"));
}

#[tokio::test]
async fn token_formats_as_header_or_json() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(token_body()));
    let output = run(daemon.socket(), &["token", "--format", "header"]).await;
    assert_eq!(text(&output.stdout), format!("Authorization: Bearer {ACCESS_TOKEN}\n"));
    let output = run(daemon.socket(), &["token", "--format", "json"]).await;
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json, token_body());
    // No scopes given: the daemon chooses the profile's.
    assert!(daemon.requests().iter().all(|request| request.param("scopes").is_none()));
}

#[tokio::test]
async fn no_wait_shows_the_prompt_and_exits_4() {
    let daemon = MockDaemon::start(|_, _| signin_required());
    let output = run(daemon.socket(), &["token", "--scopes", "User.Read", "--no-wait"]).await;
    assert_eq!(output.status.code(), Some(4));
    assert_eq!(text(&output.stdout), "");
    assert!(text(&output.stderr).contains(DEVICE_MESSAGE), "stderr: {}", text(&output.stderr));
    assert!(error_line(&output).contains("sign-in required"));
    assert_eq!(daemon.requests().len(), 1);
    assert_eq!(daemon.requests()[0].param("wait").as_deref(), Some("0"));
}

#[tokio::test]
async fn no_daemon_and_no_autostart_exits_3() {
    let dir = support::private_tempdir();
    let output = run(&dir.path().join("graphbroker.sock"), &["token", "--no-autostart"]).await;
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(text(&output.stderr).lines().count(), 1, "stderr: {}", text(&output.stderr));
    assert!(error_line(&output).starts_with("graphbroker-client: graphbrokerd is not running"));
}

#[tokio::test]
async fn an_unknown_profile_exits_8_with_the_daemons_sentence() {
    let daemon = MockDaemon::start(|_, _| daemon_error(404, "unknown_profile", "no profile named \"home\"; add it"));
    let output = run(daemon.socket(), &["token", "--profile", "home"]).await;
    assert_eq!(output.status.code(), Some(8));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(error_line(&output), "graphbroker-client: no profile named \"home\"; add it (unknown_profile)");
}

#[tokio::test]
async fn a_keychain_problem_exits_7() {
    let daemon = MockDaemon::start(|_, _| daemon_error(503, "keychain_unavailable", "unlock the keychain"));
    let output = run(daemon.socket(), &["header"]).await;
    assert_eq!(output.status.code(), Some(7));
}

#[tokio::test]
async fn a_declined_sign_in_exits_5() {
    let daemon = MockDaemon::start(|_, index| match index {
        0 => signin_required(),
        _ => daemon_error(401, "signin_declined", "the sign-in was declined; run the command again to retry"),
    });
    let output = run(daemon.socket(), &["token"]).await;
    assert_eq!(output.status.code(), Some(5));
    assert!(error_line(&output).contains("declined"));
}

#[tokio::test]
async fn signin_waits_for_the_sign_in_it_started() {
    let daemon = MockDaemon::start(|request, _| match request.path.as_str() {
        "/v1/signin" => Reply::ok(serde_json::json!({
            "profile": "work", "state": "pending", "signin": support::device_prompt(),
        })),
        "/v1/token" if request.param("wait").as_deref() == Some("0") => signin_required(),
        _ => Reply::ok(token_body()),
    });
    let output = run(daemon.socket(), &["signin", "--flow", "device"]).await;
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "stderr: {stderr}");
    assert_eq!(text(&output.stdout), "signed in as adele@contoso.com (profile work)\n");
    // Shown once, although the token request that followed answered the same prompt again.
    assert_eq!(stderr.matches(DEVICE_MESSAGE).count(), 1, "stderr: {stderr}");
    let requests = daemon.requests();
    assert_eq!(requests[0].query, "flow=device");
    assert!(requests[1..].iter().all(|request| request.param("profile").as_deref() == Some("work")));
}

#[tokio::test]
async fn status_never_starts_a_daemon_and_version_reports_both_sides() {
    let dir = support::private_tempdir();
    let output = run(&dir.path().join("graphbroker.sock"), &["status"]).await;
    assert_eq!(output.status.code(), Some(3));

    let daemon = MockDaemon::start(|_, _| Reply::ok(serde_json::json!({"protocol": 2, "daemon": "9.9.9"})));
    let output = run(daemon.socket(), &["version"]).await;
    assert!(output.status.success());
    let stdout = text(&output.stdout);
    assert!(stdout.ends_with("graphbrokerd 9.9.9 (protocol 2)\n"), "{stdout}");
    assert!(text(&output.stderr).contains("warning: graphbrokerd speaks protocol 2"), "{}", text(&output.stderr));
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = support::private_tempdir();
    let output = run(&dir.path().join("graphbroker.sock"), &["token", "--format", "yaml"]).await;
    assert_eq!(output.status.code(), Some(2));
}

#[tokio::test]
async fn a_daemon_program_that_cannot_start_exits_3() {
    let dir = support::private_tempdir();
    let socket = dir.path().join("graphbroker.sock");
    for (program, expected) in
        [("/bin/false", "stopped as it started"), ("/nonexistent/graphbrokerd", "could not start")]
    {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_graphbroker-client"))
            .arg("--socket")
            .arg(&socket)
            .arg("token")
            .env("GRAPHBROKERD_PATH", program)
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(3), "{program}");
        assert_eq!(text(&output.stdout), "");
        assert!(error_line(&output).contains(expected), "{}", text(&output.stderr));
    }
}

/// A token answer whose token carries what shells and PowerShell treat specially, so that the quoting is tested.
/// (Real tokens are base64url and dots; the formats must not depend on it.)
const AWKWARD_TOKEN: &str = "it's $HOME `id` \"x\" \u{2019}q\u{2019} \\n";

fn awkward_token_body() -> serde_json::Value {
    let mut body = token_body();
    body["access_token"] = AWKWARD_TOKEN.into();
    body
}

#[tokio::test]
async fn raw_and_its_old_name_token_print_the_bare_token() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(token_body()));
    for format in ["raw", "token"] {
        let output = run(daemon.socket(), &["token", "--format", format]).await;
        assert!(output.status.success(), "{format}: {}", text(&output.stderr));
        assert_eq!(text(&output.stdout), format!("{ACCESS_TOKEN}\n"), "{format}");
    }
}

#[tokio::test]
async fn env_lines_evaluate_to_the_token_and_its_expiry() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(awkward_token_body()));
    let output = run(daemon.socket(), &["token", "--format", "env"]).await;
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let lines = text(&output.stdout);
    assert!(lines.lines().all(|line| line.starts_with("export ")), "{lines}");
    // `eval` in a real shell, then read the variables back out of a child process's environment.
    let evaluated = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"eval "$1" && printf '%s' "$GRAPHBROKER_ACCESS_TOKEN" && sh -c 'printf "\n%s" "$GRAPHBROKER_TOKEN_EXPIRES_AT"'"#)
        .arg("sh")
        .arg(&lines)
        .env("HOME", "/home/should-not-appear")
        .output()
        .unwrap();
    assert!(evaluated.status.success(), "sh: {}", text(&evaluated.stderr));
    let expires_at = token_body()["expires_at"].as_u64().unwrap();
    assert_eq!(text(&evaluated.stdout), format!("{AWKWARD_TOKEN}\n{expires_at}"));
}

#[tokio::test]
async fn xoauth2_is_base64_of_the_sasl_string_for_the_account() {
    use base64::Engine as _;
    let daemon = MockDaemon::start(|_, _| Reply::ok(token_body()));
    let output = run(daemon.socket(), &["token", "--format", "xoauth2"]).await;
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    let stdout = text(&output.stdout);
    let decoded = base64::engine::general_purpose::STANDARD.decode(stdout.trim_end_matches('\n')).unwrap();
    assert_eq!(text(&decoded), format!("user=adele@contoso.com\x01auth=Bearer {ACCESS_TOKEN}\x01\x01"));
}

#[tokio::test]
async fn header_powershell_is_a_hashtable_of_both_headers() {
    let daemon = MockDaemon::start(|_, _| {
        Reply::ok(
            serde_json::json!({"Authorization": format!("Bearer {AWKWARD_TOKEN}"), "Content-Type": "application/json"}),
        )
    });
    let output = run(daemon.socket(), &["header", "--powershell"]).await;
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(daemon.requests()[0].path, "/v1/header");
    let entries = parse_powershell_hashtable(text(&output.stdout).trim_end_matches('\n'));
    assert_eq!(
        entries,
        [
            ("Authorization".to_owned(), format!("Bearer {AWKWARD_TOKEN}")),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ]
    );
}

/// Reads `@{ 'k' = 'v'; … }` as PowerShell does for verbatim strings: any of the four single quote marks opens
/// and closes a string, and a doubled one stands for itself. Panics on anything else.
fn parse_powershell_hashtable(literal: &str) -> Vec<(String, String)> {
    let is_quote = |c: char| matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}');
    let inner = literal.strip_prefix("@{").and_then(|rest| rest.strip_suffix('}')).expect(literal);
    let mut chars = inner.chars().peekable();
    let mut strings = Vec::new();
    let mut separators = String::new();
    while let Some(c) = chars.next() {
        if !is_quote(c) {
            separators.push(c);
            continue;
        }
        let mut value = String::new();
        loop {
            let c = chars.next().expect("unterminated string");
            if is_quote(c) {
                if chars.peek().copied().is_some_and(is_quote) {
                    value.push(chars.next().unwrap());
                    continue;
                }
                break;
            }
            value.push(c);
        }
        strings.push(value);
    }
    assert_eq!(separators.split_whitespace().collect::<String>(), "=;=", "{literal}");
    strings.chunks(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect()
}

#[tokio::test]
async fn a_daemon_of_another_protocol_is_asked_once_and_named() {
    let daemon = MockDaemon::start(|_, _| Reply::ok(token_body()).speaking(Some("999")));
    for args in [&["token", "--no-autostart"][..], &["token"][..], &["header", "--powershell"][..]] {
        let output = run(daemon.socket(), args).await;
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert_eq!(text(&output.stdout), "", "{args:?}");
        assert!(error_line(&output).contains("protocol 999"), "{args:?}: {}", text(&output.stderr));
    }
    assert_eq!(daemon.requests().len(), 3, "one request per command");
}

/// A token that needs a sign-in whose token answer is held a while, as the daemon holds it while the user signs in.
fn held_signin() -> MockDaemon {
    MockDaemon::start(|_, index| if index == 0 { signin_required() } else { Reply::ok(token_body()).held_for(2) })
}

#[tokio::test]
async fn no_spinner_when_stderr_is_not_a_terminal() {
    let daemon = held_signin();
    let output = run(daemon.socket(), &["token"]).await;
    assert!(output.status.success(), "stderr: {}", text(&output.stderr));
    assert_eq!(text(&output.stdout), format!("{ACCESS_TOKEN}\n"));
    let stderr = text(&output.stderr);
    assert!(stderr.contains(DEVICE_MESSAGE), "stderr: {stderr}");
    assert!(!stderr.contains("waiting for sign-in"), "stderr: {stderr:?}");
    assert!(!stderr.contains(['\r', '\x1b', '⠋', '⠙']), "no terminal control or spinner frames: {stderr:?}");
}

#[tokio::test]
async fn a_spinner_turns_on_a_terminal_and_is_cleared_before_the_token() {
    let daemon = held_signin();
    // script(1) runs the command on a pseudo-terminal and copies what it writes there to its own stdout.
    let output = tokio::process::Command::new("script")
        .args(["-qec", r#""$GB_CLIENT" --socket "$GB_SOCKET" token"#, "/dev/null"])
        .env("GB_CLIENT", env!("CARGO_BIN_EXE_graphbroker-client"))
        .env("GB_SOCKET", daemon.socket())
        .env_remove("GRAPHBROKER_SOCKET")
        .env_remove("GRAPHBROKERD_PATH")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("script (util-linux) runs");
    let terminal = text(&output.stdout);
    assert!(output.status.success(), "{terminal}");
    assert!(terminal.contains("waiting for sign-in ("), "the spinner was drawn: {terminal:?}");
    // The token's line, after the last carriage return: the spinner line erased (ESC [2K), then the token alone.
    let token_line = terminal.lines().find(|line| line.contains(ACCESS_TOKEN)).expect("the token was printed");
    let last = token_line.trim_end_matches('\r').rsplit('\r').next().unwrap_or_default();
    assert_eq!(last.strip_prefix("\x1b[2K").unwrap_or(last), ACCESS_TOKEN, "{token_line:?}");
}

/// Attack D: the platform's device-code message and an error description carry escape sequences (a screen
/// clear, an OSC 8 link that shows a Microsoft URL and points elsewhere, a bidi override, a C1 CSI). Nothing
/// of it reaches the terminal as an escape: stderr holds no ESC, C1 or bidi control byte, only their visible form.
#[tokio::test]
async fn text_from_outside_reaches_the_terminal_without_its_escapes() {
    let hostile = "\x1b[2J\x1b]8;;https://evil.example/\x1b\\https://microsoft.com/devicelogin\x1b]8;;\x1b\\ \u{202e}edoc\u{9b}31m";
    let prompt = serde_json::json!({
        "flow": "device",
        "verification_uri": "https://microsoft.com/devicelogin",
        "user_code": "ABCD1234",
        "message": format!("To sign in, open {hostile} and enter ABCD1234"),
        "expires_at": 4_099_999_999u64,
    });
    let daemon = MockDaemon::start(move |_, _| {
        Reply::error(
            401,
            serde_json::json!({"error": {"code": "signin_required", "message": format!("sign in: {hostile}"),
                "reason": "no_account", "signin": prompt.clone()}}),
        )
    });
    let output = run(daemon.socket(), &["token", "--scopes", "User.Read", "--no-wait"]).await;
    assert_eq!(output.status.code(), Some(4));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("\\u{1b}]8;;https://evil.example/"), "the escapes are shown: {stderr}");
    for forbidden in ['\x1b', '\u{9b}', '\u{202e}'] {
        assert!(!stderr.contains(forbidden), "{forbidden:?} reached the terminal: {stderr:?}");
    }
    let daemon =
        MockDaemon::start(move |_, _| daemon_error(502, "identity_provider_error", &format!("AADSTS1: {hostile}")));
    let output = run(daemon.socket(), &["token", "--scopes", "User.Read", "--no-wait"]).await;
    let stderr = text(&output.stderr);
    assert!(!stderr.contains('\x1b') && !stderr.contains('\u{202e}'), "{stderr:?}");
}
