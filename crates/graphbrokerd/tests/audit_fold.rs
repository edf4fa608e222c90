//! The audit log folds a connection's repeated cache hits: the real daemon on its socket, curl asking many times
//! on one keep-alive connection, and the lines the log holds for it.

mod support;

use std::path::Path;
use std::process::Command;

use graphbroker_protocol::{AuditEntry, AuditOutcome, AuditRoute};
use support::*;

/// curl asks `/v1/token` `times` times on one connection (curl reuses it for URLs given together).
fn curl_times(socket: &Path, times: usize) {
    let mut command = Command::new("curl");
    command.arg("-s").arg("--unix-socket").arg(socket);
    for _ in 0..times {
        command.args(["-o", "/dev/null", "http://localhost/v1/token?scopes=User.Read"]);
    }
    let out = command.output().expect("curl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

fn curls(lines: &[AuditEntry]) -> Vec<&AuditEntry> {
    lines.iter().filter(|l| l.program.exe.as_deref().is_some_and(|exe| exe.ends_with("/curl"))).collect()
}

/// The log once it holds at least `n` lines of curl's. The writer runs behind the answers, so the sign-in's own
/// lines may still be on their way when the test starts asking: only curl's lines are counted.
fn curl_lines(daemon: &Daemon, n: usize) -> Vec<AuditEntry> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let lines = daemon.audit_lines();
        if curls(&lines).len() >= n {
            return lines;
        }
        assert!(std::time::Instant::now() < deadline, "not {n} lines of curl's: {lines:#?}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_repeated_cache_hits_are_one_line_and_a_count() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("audit-fold"), ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;

    curl_times(&daemon.socket, 50);
    // The first hit is a line of its own; the 49 like it are one folded line, written once the connection closed.
    let lines = curl_lines(&daemon, 2);
    let mine = curls(&lines);
    assert_eq!(mine.len(), 2, "{lines:#?}");
    assert_eq!((mine[0].outcome, &mine[0].route, mine[0].repeats), (AuditOutcome::Cache, &AuditRoute::Token, None));
    assert_eq!(mine[1].repeats, Some(49), "{mine:#?}");
    assert_eq!((mine[1].outcome, &mine[1].scopes), (AuditOutcome::Cache, &mine[0].scopes));
    assert_eq!((mine[1].account.as_deref(), mine[1].program.pid), (Some(ALICE), mine[0].program.pid));
    assert!(mine[1].time >= mine[0].time);

    // Another connection is another run: its first hit is a line again, and a single hit owes no count.
    curl_times(&daemon.socket, 1);
    let lines = curl_lines(&daemon, 3);
    let mine = curls(&lines);
    assert_eq!(mine.len(), 3, "{lines:#?}");
    assert_eq!(mine[2].repeats, None);
    assert_ne!(mine[2].program.pid, mine[0].program.pid);

    // `graphbroker-client audit` shows the count.
    let out = Command::new(client_bin())
        .args(["audit", "--since", "1h"])
        .env("XDG_STATE_HOME", daemon.dir.path().join("state"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.lines().any(|l| l.contains("cache ×49") && l.contains("/curl")), "{text}");
}
