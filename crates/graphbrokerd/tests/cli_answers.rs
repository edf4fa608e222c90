//! What a careful user tripped over, through the real client and daemon: `--format env` prints nothing on a
//! failure (and the documented `set -e` form stops), and `status` counts the expected `signin_required` answers
//! apart from the errors.

mod support;

use std::process::{Command, Output, Stdio};

use graphbroker_protocol::{ErrorCode, TokenQuery};
use support::*;

fn run(daemon: &Daemon, args: &[&str]) -> Output {
    Command::new(client_bin())
        .args(["--no-autostart", "--socket"])
        .arg(&daemon.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("client")
}

#[test]
fn format_env_prints_nothing_on_a_failure_and_the_documented_form_stops_a_script() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("env-fail"), ""));

    for args in [
        // The fast path hands the daemon's error to the full path; both must keep stdout empty.
        &["token", "--scopes", "User.Read", "--profile", "nope", "--format", "env"][..],
        &["token", "--scopes=User.Read", "--profile=nope", "--format=env", "--timeout", "5"][..],
        // Nobody signed in and no wait: exit 4 with the prompt on stderr, nothing on stdout.
        &["token", "--scopes", "User.Read", "--no-wait", "--format", "env"][..],
    ] {
        let output = run(&daemon, args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}: stdout {:?}", String::from_utf8_lossy(&output.stdout));
        assert!(!output.stderr.is_empty(), "{args:?}: the failure is said on stderr");
    }

    // docs/cli.md's form for scripts: the assignment fails under `set -e`, so the script stops there.
    let script = format!(
        "set -e\nvars=$('{}' --no-autostart --socket '{}' token --scopes User.Read --profile nope --format env)\n\
         eval \"$vars\"\necho reached\n",
        client_bin().display(),
        daemon.socket.display()
    );
    let output = Command::new("sh").arg("-c").arg(&script).stdin(Stdio::null()).output().expect("sh");
    assert_eq!(output.status.code(), Some(8), "the client's exit status (unknown profile) ends the script");
    assert!(!String::from_utf8_lossy(&output.stdout).contains("reached"), "the script went on");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signin_required_answers_are_counted_apart_from_errors() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("counters"), ""));
    let client = daemon.client();

    // A clean demo: two requests that do not wait while nobody is signed in, then the sign-in.
    let no_wait = TokenQuery { scopes: Some("User.Read".into()), wait: Some(0), ..TokenQuery::default() };
    for _ in 0..2 {
        let error = client.token(&no_wait).await.expect_err("nobody is signed in");
        assert_eq!(error.code(), Some(ErrorCode::SigninRequired), "{error}");
    }
    sign_in(&client, &fake, "User.Read", ALICE).await;
    let counters = client.status().await.expect("status").counters;
    assert_eq!(counters.errors, 0, "expected answers are not errors: {counters:?}");
    assert!(counters.signin_required >= 2, "{counters:?}");
    let text = String::from_utf8(run(&daemon, &["status"]).stdout).unwrap();
    assert!(text.contains(&format!(", signin_required {}, errors 0\n", counters.signin_required)), "{text}");

    // A real error still counts as one.
    let unknown = TokenQuery { profile: Some("nope".into()), ..no_wait.clone() };
    let error = client.token(&unknown).await.expect_err("unknown profile");
    assert_eq!(error.code(), Some(ErrorCode::UnknownProfile), "{error}");
    let after = client.status().await.expect("status").counters;
    assert_eq!((after.errors, after.signin_required), (1, counters.signin_required), "{after:?}");
}
