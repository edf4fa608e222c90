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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connections_repeated_cache_hits_are_one_line_and_a_count() {
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("audit-fold"), ""));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    let before = daemon.audit_lines().len();

    curl_times(&daemon.socket, 50);
    // The first hit is a line of its own; the 49 like it are one folded line, written once the connection closed.
    let lines = daemon.audit_wait(before + 2);
    let mine = curls(&lines);
    assert_eq!(mine.len(), 2, "{lines:#?}");
    assert_eq!((mine[0].outcome, &mine[0].route, mine[0].repeats), (AuditOutcome::Cache, &AuditRoute::Token, None));
    assert_eq!(mine[1].repeats, Some(49), "{mine:#?}");
    assert_eq!((mine[1].outcome, &mine[1].scopes), (AuditOutcome::Cache, &mine[0].scopes));
    assert_eq!((mine[1].account.as_deref(), mine[1].program.pid), (Some(ALICE), mine[0].program.pid));
    assert!(mine[1].time >= mine[0].time);

    // Another connection is another run: its first hit is a line again, and a single hit owes no count.
    curl_times(&daemon.socket, 1);
    let lines = daemon.audit_wait(before + 3);
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
