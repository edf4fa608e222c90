//! Who asks, and the policy: the real daemon on its socket, with real programs as callers — two copies of curl at
//! two paths, a process whose pid is taken over after it exits, curl in a bubblewrap sandbox carrying a
//! `.flatpak-info` — and the audit log each decision leaves.

mod support;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use graphbroker_protocol::{AuditOutcome, AuditRoute};
use support::*;

/// `curl` copied to `dir/name`: the same program at another path.
fn curl_copy(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::copy("/usr/bin/curl", &path).expect("copy curl");
    path
}

/// `program` (a curl) asks `target` of the daemon on `socket`: (status, body).
fn curl(program: &Path, socket: &Path, target: &str) -> (u16, serde_json::Value) {
    curl_in(Command::new(program), socket, target)
}

fn curl_in(mut command: Command, socket: &Path, target: &str) -> (u16, serde_json::Value) {
    let out = command
        .arg("-s")
        .arg("--unix-socket")
        .arg(socket)
        .args(["-w", "\n%{http_code}", &format!("http://localhost{target}")])
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').expect("status line");
    (status.parse().expect("a status"), serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

fn code(body: &serde_json::Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn policy(extra: &str) -> String {
    format!("\n[policy]\ndefault = \"deny\"\n{extra}")
}

fn rule(key: &str, value: &str) -> String {
    format!("\n[[policy.rules]]\n{key} = \"{value}\"\n")
}

fn this_test() -> String {
    std::env::current_exe().unwrap().display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_copies_of_one_program_only_the_allowed_path_gets_tokens_and_the_log_says_which() {
    let fake = fake();
    let bin = private_tempdir();
    let allowed = curl_copy(bin.path(), "allowed-curl");
    let other = curl_copy(bin.path(), "other-curl");
    let rules = format!("{}{}", rule("program", &this_test()), rule("program", &allowed.display().to_string()));
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("policy"), &policy(&rules)));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;

    let (status, body) = curl(&allowed, &daemon.socket, "/v1/token?scopes=User.Read");
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());
    let (status, body) = curl(&other, &daemon.socket, "/v1/token?scopes=User.Read");
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&other.display().to_string()), "{message}");
    assert!(message.contains(&format!("graphbroker-client policy allow --program {}", other.display())), "{message}");

    // The Graph proxy is refused the same way, and serves the allowed copy.
    let (status, body) = curl(&other, &daemon.socket, "/graph/v1.0/me");
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");
    let (status, body) = curl(&allowed, &daemon.socket, "/graph/v1.0/me");
    assert_eq!(status, 200, "{body}");

    // sign-in (2 lines: the prompt's refusal, then the token) and the four requests above.
    let lines = daemon.audit_wait(6);
    let of = |exe: &Path| -> Vec<_> {
        lines.iter().filter(|l| l.program.exe.as_deref() == Some(&*exe.display().to_string())).collect()
    };
    let (mine, theirs) = (of(&allowed), of(&other));
    assert_eq!(mine.len(), 2, "{lines:#?}");
    assert_eq!(theirs.len(), 2, "{lines:#?}");
    assert_eq!(mine[0].outcome, AuditOutcome::Cache);
    assert_eq!(mine[0].route, AuditRoute::Token);
    assert_eq!(mine[0].account.as_deref(), Some(ALICE));
    assert_eq!(mine[0].scopes, ["https://graph.microsoft.com/User.Read"]);
    assert_eq!(mine[1].route, AuditRoute::Proxy { method: "GET".into(), path: "/graph/v1.0/me".into() });
    assert!(theirs.iter().all(|l| l.outcome == AuditOutcome::PolicyDenied), "{theirs:#?}");
    assert!(theirs.iter().all(|l| l.program.pid.is_some() && l.account.is_none()), "{theirs:#?}");
    // Never a token in the log.
    let text = std::fs::read_to_string(daemon.dir.path().join("state/graphbroker/audit.jsonl")).unwrap();
    assert!(!text.contains("eyJ") && !text.contains("access_token"), "{text}");
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(daemon.dir.path().join("state/graphbroker/audit.jsonl")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    // `graphbroker-client audit` reads the same log, filtered by program.
    let out = Command::new(client_bin())
        .args(["audit", "--since", "1h", "--program"])
        .arg(&other)
        .env("XDG_STATE_HOME", daemon.dir.path().join("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8(out.stdout).unwrap();
    assert_eq!(shown.lines().count(), 2, "{shown}");
    assert!(shown.lines().all(|l| l.contains("policy_denied") && l.contains(&*other.display().to_string())), "{shown}");
    assert!(shown.contains("GET /graph/v1.0/me"), "{shown}");
}

/// The socket request a perl process makes on a connection it opened, handed to its own child before it exits:
/// prints its pid, exits; the child waits for a line on stdin, then sends the request and prints the answer.
const HAND_OFF: &str = r#"
use IO::Socket::UNIX;
$| = 1;
my $s = IO::Socket::UNIX->new(Peer => $ARGV[0]) or die "connect: $!";
my $child = fork();
if ($child) { print "$$\n"; exit 0; }
close STDOUT; open STDOUT, ">", $ARGV[1] or die;
my $go = <STDIN>;
print $s "GET /v1/token?scopes=User.Read HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
print while <$s>;
"#;

#[test]
fn a_process_that_took_over_the_callers_pid_is_not_taken_for_it() {
    if !root_available("a_process_that_took_over_the_callers_pid_is_not_taken_for_it") {
        return;
    }
    let fake = fake();
    let bin = private_tempdir();
    let sleeper = bin.path().join("allowed-sleep");
    std::fs::copy("/bin/sleep", &sleeper).unwrap();
    let daemon = Daemon::start(&config(
        &fake,
        "memory",
        &unique_service("pidreuse"),
        &policy(&rule("program", &sleeper.display().to_string())),
    ));
    let answer = bin.path().join("answer");
    let mut asker = Command::new("perl")
        .args(["-e", HAND_OFF])
        .arg(&daemon.socket)
        .arg(&answer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("perl runs");
    let mut line = String::new();
    BufReader::new(asker.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let pid: u32 = line.trim().parse().expect("the asker's pid");
    // Kept open: `wait` would close it, and the child would take that for its signal to go.
    let mut go = asker.stdin.take().unwrap();
    asker.wait().unwrap();
    // The connecting process is gone and reaped: start the allowed program under its pid (ns_last_pid, as CRIU
    // restores processes), retrying while other processes of the machine take the pid first.
    let mut allowed = None;
    for _ in 0..500 {
        std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).expect("ns_last_pid");
        let mut child = Command::new(&sleeper).arg("60").spawn().unwrap();
        if child.id() == pid {
            allowed = Some(child);
            break;
        }
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let mut allowed = allowed.expect("the allowed program got the asker's pid");
    assert_eq!(std::fs::read_link(format!("/proc/{pid}/exe")).unwrap(), sleeper);

    go.write_all(b"go\n").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let text = loop {
        let text = std::fs::read_to_string(&answer).unwrap_or_default();
        if text.contains("\r\n\r\n{") && text.trim_end().ends_with('}') {
            break text;
        }
        assert!(Instant::now() < deadline, "no answer: {text:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    allowed.kill().unwrap();
    allowed.wait().unwrap();
    assert!(text.starts_with("HTTP/1.1 403"), "the request was served as the allowed program's: {text}");
    assert!(text.contains("policy_denied"), "{text}");
    let lines = daemon.audit_wait(1);
    assert_eq!(lines[0].program.exe, None, "{lines:#?}");
    assert_eq!(lines[0].program.pid, Some(pid as i32));
    assert!(lines[0].program.unknown.is_some(), "{lines:#?}");
}

/// curl in a bubblewrap sandbox whose root holds a `.flatpak-info` naming `app`.
fn sandboxed_curl(dir: &Path, daemon: &Daemon, app: &str) -> Command {
    let info = dir.join(format!("{app}.flatpak-info"));
    std::fs::write(&info, format!("[Application]\nname={app}\nruntime=runtime/org.example.Platform/x86_64/1\n"))
        .unwrap();
    let run = daemon.socket.parent().unwrap();
    let mut command = Command::new("bwrap");
    command.args(["--tmpfs", "/", "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib"]);
    command.args(["--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin", "--proc", "/proc"]);
    command.args(["--dev", "/dev", "--unshare-pid", "--ro-bind"]).arg(&info).arg("/.flatpak-info");
    command.arg("--bind").arg(run).arg(run).args(["--", "/usr/bin/curl"]);
    command
}

#[test]
fn a_sandboxed_app_is_known_by_its_app_id_and_matched_only_by_a_sandbox_rule() {
    if Command::new("bwrap").arg("--version").output().is_err() {
        assert!(
            std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() != Ok("required"),
            "bubblewrap is not installed (scripts/test installs it)"
        );
        eprintln!("skipped: bubblewrap is not installed");
        return;
    }
    let fake = fake();
    let dir = private_tempdir();
    // The sandbox runs /usr/bin/curl, which a program rule allows outside sandboxes.
    let rules = format!("{}{}", rule("program", "/usr/bin/curl"), rule("sandbox", "org.example.Mail"));
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("sandbox"), &policy(&rules)));

    let (status, body) = curl_in(sandboxed_curl(dir.path(), &daemon, "org.example.Other"), &daemon.socket, "/v1/token");
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("flatpak app org.example.Other"), "{message}");
    assert!(message.contains("--sandbox org.example.Other"), "{message}");
    // Allowed past the policy: it gets as far as the sign-in (nobody has signed in).
    let (status, body) = curl_in(sandboxed_curl(dir.path(), &daemon, "org.example.Mail"), &daemon.socket, "/v1/token");
    assert_eq!((status, code(&body)), (401, "signin_required"), "{body}");

    // Nor can it write itself a rule.
    let mut command = sandboxed_curl(dir.path(), &daemon, "org.example.Other");
    command.args(["-X", "POST"]);
    let (status, body) = curl_in(command, &daemon.socket, "/v1/policy/rules?action=allow&sandbox=org.example.Other");
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");
    assert!(!std::fs::read_to_string(&daemon.config_path).unwrap().contains("org.example.Other"));

    let lines = daemon.audit_wait(2);
    assert_eq!(lines[0].program.sandbox.as_deref(), Some("org.example.Other"));
    assert_eq!(lines[0].program.sandbox_kind.as_deref(), Some("flatpak"));
    assert_eq!(lines[0].program.exe.as_deref(), Some("/usr/bin/curl"));
    assert_eq!(lines[1].program.sandbox.as_deref(), Some("org.example.Mail"));
    assert_eq!(lines[1].outcome, AuditOutcome::Error);
    assert_eq!(lines[1].error.as_deref(), Some("signin_required"));
}

#[test]
fn a_rule_added_by_a_reload_takes_effect_without_a_restart() {
    let fake = fake();
    let bin = private_tempdir();
    let program = curl_copy(bin.path(), "later-curl");
    let base = config(&fake, "memory", &unique_service("reload"), &policy(""));
    let daemon = Daemon::start(&base);
    let (status, body) = curl(&program, &daemon.socket, "/v1/token");
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");

    // A rule that does not parse is refused with its line, and the old policy stays.
    write_config(&daemon.config_path, &format!("{base}\n[[policy.rules]]\nprogramm = \"/x\"\n"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::SIGHUP).unwrap();
    let bad_line = base.lines().count() + 3;
    wait_for_log(&daemon, &format!(":{bad_line}:"));

    write_config(&daemon.config_path, &format!("{base}{}", rule("program", &program.display().to_string())));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon.pid() as i32), nix::sys::signal::SIGHUP).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = curl(&program, &daemon.socket, "/v1/token");
        if (status, code(&body)) == (401, "signin_required") {
            break;
        }
        assert_eq!(code(&body), "policy_denied", "{body}");
        assert!(Instant::now() < deadline, "the reloaded rule never applied:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_for_log(daemon: &Daemon, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !daemon.log().contains(needle) {
        assert!(Instant::now() < deadline, "the log never said {needle:?}:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ask_is_answered_by_policy_approve_from_another_program_and_always_writes_a_rule() {
    let fake = fake();
    let bin = private_tempdir();
    let program = curl_copy(bin.path(), "asking-curl");
    let text = config(&fake, "memory", &unique_service("ask"), "\n[policy]\ndefault = \"ask\"\nask_timeout = 60\n");
    let daemon = Daemon::start(&text);
    let socket = daemon.socket.clone();
    let asker = program.clone();
    let asked = std::thread::spawn(move || curl(&asker, &socket, "/v1/token"));

    let id = wait_for_pending(&daemon);
    // The asking program cannot answer itself... (another copy at least is another process, so that is allowed;
    // here the CLI, a third program, answers).
    let out = Command::new(client_bin())
        .args(["policy", "approve", &id.to_string(), "--always"])
        .env("GRAPHBROKER_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = asked.join().unwrap();
    assert_eq!((status, code(&body)), (401, "signin_required"), "approved, it reaches the sign-in: {body}");
    // "Always" wrote a rule: the next request is not asked.
    let written = std::fs::read_to_string(&daemon.config_path).unwrap();
    assert!(written.contains(&format!("program = \"{}\"", program.display())), "{written}");
    let (status, body) = curl(&program, &daemon.socket, "/v1/token");
    assert_eq!((status, code(&body)), (401, "signin_required"), "{body}");
}

/// The id of the first ask waiting, from `GET /v1/policy`.
fn wait_for_pending(daemon: &Daemon) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = curl(Path::new("/usr/bin/curl"), &daemon.socket, "/v1/policy");
        if let Some(id) = body["pending"][0]["id"].as_u64() {
            return id;
        }
        assert!(Instant::now() < deadline, "no ask is pending: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn policy_allow_writes_a_rule_that_applies_at_once_and_policy_list_shows_it() {
    let fake = fake();
    let bin = private_tempdir();
    let program = curl_copy(bin.path(), "sync-curl");
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("allow"), &policy("")));
    let (_, body) = curl(&program, &daemon.socket, "/v1/token");
    assert_eq!(code(&body), "policy_denied", "{body}");
    let cli = |args: &[&str]| {
        let out = Command::new(client_bin()).args(args).env("GRAPHBROKER_SOCKET", &daemon.socket).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let program_text = program.display().to_string();
    cli(&["policy", "allow", "--program", &program_text, "--profile", "work", "--scopes", "User.Read"]);
    let (status, body) = curl(&program, &daemon.socket, "/v1/token?scopes=User.Read");
    assert_eq!((status, code(&body)), (401, "signin_required"), "allowed at once: {body}");
    // Only for the scopes it names.
    let (_, body) = curl(&program, &daemon.socket, "/v1/token?scopes=Mail.Read");
    assert_eq!(code(&body), "policy_denied", "{body}");
    let listed = cli(&["policy", "list"]);
    assert!(listed.contains("default: deny"), "{listed}");
    assert!(listed.contains(&format!("allow program {program_text} profiles work")), "{listed}");
}

#[test]
fn an_ask_refused_with_policy_deny_is_policy_denied_and_audited() {
    let fake = fake();
    let bin = private_tempdir();
    let program = curl_copy(bin.path(), "refused-curl");
    let text = config(&fake, "memory", &unique_service("ask-deny"), "\n[policy]\ndefault = \"ask\"\n");
    let daemon = Daemon::start(&text);
    let socket = daemon.socket.clone();
    let asker = program.clone();
    let asked = std::thread::spawn(move || curl(&asker, &socket, "/v1/token"));
    let id = wait_for_pending(&daemon);
    let out = Command::new(client_bin())
        .args(["policy", "deny", &id.to_string()])
        .env("GRAPHBROKER_SOCKET", &daemon.socket)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, body) = asked.join().unwrap();
    assert_eq!((status, code(&body)), (403, "policy_denied"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("the user said no"), "{body}");
    let lines = daemon.audit_wait(1);
    assert_eq!(lines[0].outcome, AuditOutcome::PolicyDenied);
    assert_eq!(lines[0].decided_by.as_deref(), Some(&*format!("ask:{id}")));
    assert_eq!(lines[0].program.exe.as_deref(), Some(&*program.display().to_string()));
}

#[test]
fn an_ask_answered_once_covers_its_own_request_and_the_next_one_is_asked_again() {
    // What the user allowed once must not carry over to the program's next request. (A request held for an ask
    // waited, so the daemon ends its connection after the answer: curl sends the second on a new one.)
    let fake = fake();
    let bin = private_tempdir();
    let program = curl_copy(bin.path(), "looping-curl");
    let text =
        config(&fake, "memory", &unique_service("ask-once"), "\n[policy]\ndefault = \"ask\"\nask_timeout = 60\n");
    let daemon = Daemon::start(&text);
    let socket = daemon.socket.clone();
    // One curl, two transfers.
    let asked = std::thread::spawn(move || {
        let out = Command::new(&program)
            .arg("-s")
            .arg("--unix-socket")
            .arg(&socket)
            .args(["-w", "\n%{http_code}\n", "http://localhost/v1/token", "http://localhost/v1/token"])
            .output()
            .expect("curl runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    });
    let answer = |id: u64, verb: &str| {
        let out = Command::new(client_bin())
            .args(["policy", verb, &id.to_string()])
            .env("GRAPHBROKER_SOCKET", &daemon.socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let first = wait_for_pending(&daemon);
    answer(first, "approve");
    // The second request is asked again: a new ask, refused this time.
    let deadline = Instant::now() + Duration::from_secs(20);
    let second = loop {
        let id = wait_for_pending(&daemon);
        if id != first {
            break id;
        }
        assert!(Instant::now() < deadline, "the second request was never asked");
        std::thread::sleep(Duration::from_millis(20));
    };
    answer(second, "deny");
    let out = asked.join().unwrap();
    let statuses: Vec<&str> = out.lines().filter(|line| line.len() == 3 && line.parse::<u16>().is_ok()).collect();
    assert_eq!(statuses, ["401", "403"], "approved once, then asked again and refused:\n{out}");
}
