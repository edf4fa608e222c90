//! The daemon's memory is out of reach of core dumps and of the user's other processes (hardening.rs).

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use support::*;

/// `/proc/<pid>/limits`' line for core files: soft and hard limit.
fn core_limit(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("limits");
    let line = limits.lines().find(|l| l.starts_with("Max core file size")).expect("core line").to_owned();
    let fields: Vec<&str> = line["Max core file size".len()..].split_whitespace().collect();
    (fields[0].to_owned(), fields[1].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_writes_no_core_file() {
    use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
    // Started with core dumps allowed, as from a shell after `ulimit -c unlimited`: the daemon inherits this
    // test's limit and must lower it itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_CORE).expect("getrlimit");
    let raised = if nix::unistd::getuid().is_root() { RLIM_INFINITY } else { hard };
    setrlimit(Resource::RLIMIT_CORE, raised, raised).expect("raise the core limit");
    assert_ne!(
        core_limit(std::process::id()),
        ("0".into(), "0".into()),
        "the test must start the daemon with cores allowed"
    );
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("core"), ""));
    assert_eq!(core_limit(daemon.pid()), ("0".into(), "0".into()), "soft and hard core limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_process_of_the_same_user_cannot_read_the_daemons_memory() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipping: needs root to run the daemon and the reader as another user");
        return;
    }
    let fake = fake();
    let nobody = nix::unistd::User::from_name("nobody").ok().flatten().expect("user nobody");
    let daemon = Daemon::start_as(&config(&fake, "memory", &unique_service("dumpable"), ""), &nobody);
    let pid = daemon.pid();
    // A non-dumpable process's /proc files belong to root, whoever runs it.
    let owner = std::fs::metadata(format!("/proc/{pid}/environ")).expect("environ").uid();
    assert_eq!(owner, 0, "/proc/{pid}/environ belongs to uid {owner}: the daemon is dumpable");
    // The attack: a process of the daemon's own user reads its memory map and environment.
    for file in ["environ", "maps"] {
        let read = Command::new("setpriv")
            .args(["--reuid", &nobody.uid.to_string(), "--regid", &nobody.gid.to_string(), "--clear-groups"])
            .args(["cat", &format!("/proc/{pid}/{file}")])
            .output()
            .expect("setpriv runs");
        assert!(!read.status.success(), "uid {} read /proc/{pid}/{file}", nobody.uid);
    }
    // The daemon still serves its user's clients (its socket is nobody's; root is refused, which shows it answers).
    let (status, _) = raw_get(&daemon.socket, "/v1/status").await;
    assert_eq!(status, 403);
}

/// How many times `needle` occurs in the writable memory of process `pid` (root only: the daemon is not
/// dumpable).
fn occurrences_in_memory(pid: u32, needle: &[u8]) -> usize {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("maps");
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("mem");
    let mut found = 0;
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with("rw") {
            continue;
        }
        let (start, end) = range.split_once('-').expect("range");
        let (start, end) = (u64::from_str_radix(start, 16).unwrap(), u64::from_str_radix(end, 16).unwrap());
        let mut region = vec![0u8; (end - start) as usize];
        if mem.read_exact_at(&mut region, start).is_err() {
            continue; // a guard page or a mapping that went away
        }
        found += region.windows(needle.len()).filter(|w| *w == needle).count();
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn served_answers_leave_one_shared_copy_while_cached_and_none_after_sign_out() {
    if !nix::unistd::getuid().is_root() {
        eprintln!("skipping: needs root to read the daemon's memory");
        return;
    }
    let fake = fake();
    let daemon = Daemon::start(&config(&fake, "memory", &unique_service("zeroize"), ""));
    let client = daemon.client();
    let token = sign_in(&client, &fake, "User.Read", ALICE).await.access_token;
    // Many answers at once, so that many answer buffers are alive together and freed together: some of them
    // would survive in freed memory if they were not wiped.
    for _ in 0..3 {
        let mut answers = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (a, b) = (client.clone(), client.clone());
            answers.spawn(async move { a.token(&query("User.Read")).await.expect("token").access_token });
            answers.spawn(async move { b.header(&query("User.Read")).await.expect("header").authorization });
        }
        while let Some(answer) = answers.join_next().await {
            assert!(answer.expect("request").ends_with(&token));
        }
    }
    // Both byte strings exist only in the daemon's serialized answers: the platform's own answer orders its
    // fields differently, and the cache holds the bare token.
    let in_token_answer = format!("{token}\",\"expires_at\":");
    let in_header_answer = format!("\"Authorization\":\"Bearer {token}\"");
    let pid = daemon.pid();
    // While the token is cached, its answers are kept once each and shared by every hit: 120 answers, one copy
    // of each (an answer of an earlier second of `expires_in` was replaced, and wiped when its last hit was sent).
    assert_eq!(occurrences_in_memory(pid, in_token_answer.as_bytes()), 1, "token answers: one shared copy");
    assert_eq!(occurrences_in_memory(pid, in_header_answer.as_bytes()), 1, "header answers: one shared copy");
    // Signing out drops the cached token, and with it the shared answers, wiped.
    client.signout(None).await.expect("signout");
    assert_eq!(occurrences_in_memory(pid, in_token_answer.as_bytes()), 0, "a token answer stayed in memory");
    assert_eq!(occurrences_in_memory(pid, in_header_answer.as_bytes()), 0, "a header answer stayed in memory");
    // (The zeros are not blindness: the same scan found each answer once above.)
}
