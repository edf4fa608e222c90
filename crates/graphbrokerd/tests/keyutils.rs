//! The kernel keyring store through the real daemon: `store = "auto"` with no Secret Service reachable signs in
//! once, survives a daemon restart in the same boot, says so in `status`, and forgets the key on sign-out.
//!
//! Each daemon runs in a fresh session keyring that does not link the user keyring (`keyctl session -`), as a
//! systemd service would: it must find its keys through its own process keyring (see graphbroker-store's
//! keyutils.rs). The user keyring is shared by every run, so each test uses a service name of its own and a guard
//! purges its key whatever happens. Where the kernel keyring cannot be used the tests print why and pass, unless
//! `GRAPHBROKER_TEST_KEYCHAIN=required`.
#![cfg(target_os = "linux")]

mod support;

use std::process::{Command, Output};

use graphbroker_protocol::{ProfileStatus, StoreKind};
use graphbroker_store::{KeyutilsStore, POSSESSOR_ONLY, SecretStore};
use support::*;

/// The kernel key of one test's profile, purged on drop.
struct KernelKey {
    description: String,
}

impl Drop for KernelKey {
    fn drop(&mut self) {
        let _ = keyctl_possessing(&["purge", "user", &self.description]);
    }
}

fn kernel_keyring_available(test: &str) -> bool {
    let usable = KeyutilsStore::new("probe").probe().map_err(|e| e.to_string()).and_then(|()| {
        Command::new("keyctl").arg("--version").output().map(|_| ()).map_err(|e| format!("keyctl: {e}"))
    });
    match usable {
        Ok(()) => true,
        Err(err) if std::env::var("GRAPHBROKER_TEST_KEYCHAIN").as_deref() == Ok("required") => {
            panic!("{test}: the kernel keyring cannot be used ({err}) but GRAPHBROKER_TEST_KEYCHAIN=required")
        }
        Err(err) => {
            eprintln!("skipping {test}: the kernel keyring cannot be used here ({err})");
            false
        }
    }
}

/// `keyctl ARGS` from a process that possesses the user keyring (a fresh session keyring linking it).
fn keyctl_possessing(args: &[&str]) -> Output {
    Command::new("keyctl")
        .args(["session", "-", "sh", "-c", "keyctl link @u @s && exec keyctl \"$@\"", "keyctl"])
        .args(args)
        .output()
        .expect("keyctl runs")
}

/// The key's `type;uid;gid;perm;description`, or `None` when there is no such key in the user keyring.
fn described(description: &str) -> Option<String> {
    let found = keyctl_possessing(&["search", "@u", "user", description]);
    if !found.status.success() {
        return None;
    }
    let id = String::from_utf8_lossy(&found.stdout).trim().to_owned();
    let out = keyctl_possessing(&["rdescribe", &id]);
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Starts (or starts again) the daemon in a session keyring of its own, with `bus` as its session bus address
/// (`None`: unset) and a runtime dir with no bus in it, so no Secret Service can answer.
fn spawn_without_secret_service(daemon: &mut Daemon, bus: Option<&str>) {
    let (config, socket, runtime) =
        (daemon.config_path.clone(), daemon.socket.clone(), daemon.dir.path().join("runtime"));
    std::fs::create_dir_all(&runtime).unwrap();
    daemon.spawn_program("keyctl", |command| {
        command.args(["session", "-", graphbrokerd_bin(), "--config"]).arg(&config).arg("--socket").arg(&socket);
        command.env("XDG_RUNTIME_DIR", &runtime);
        match bus {
            Some(address) => command.env("DBUS_SESSION_BUS_ADDRESS", address),
            None => command.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
    });
}

async fn work_status(daemon: &Daemon) -> ProfileStatus {
    let status = daemon.client().status().await.expect("status");
    status.profiles.into_iter().find(|p| p.name == "work").expect("profile work")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_without_a_secret_service_keeps_the_sign_in_across_a_restart() {
    if !kernel_keyring_available("auto_restart") {
        return;
    }
    let fake = fake();
    let service = unique_service("kernel-auto");
    let key = KernelKey { description: KeyutilsStore::new(service.as_str()).description("work") };
    let mut daemon = Daemon::unstarted(&config(&fake, "auto", &service, ""));
    let nowhere = format!("unix:path={}", daemon.dir.path().join("no-bus").display());
    spawn_without_secret_service(&mut daemon, Some(&nowhere));

    let before = work_status(&daemon).await;
    assert_eq!(before.store, StoreKind::Keyutils, "{before:?}");
    let reason = before.store_reason.clone().unwrap_or_default();
    assert!(reason.contains("no Secret Service answered on the session bus"), "{reason}");
    assert!(daemon.log().contains("does not survive a reboot") || daemon.log().contains("not a reboot"));

    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    assert_eq!(fake.stats().devicecode, 1);
    let shown = described(&key.description).expect("the refresh token is in the user keyring");
    let fields: Vec<&str> = shown.split(';').collect();
    assert_eq!(fields[0], "user", "{shown}");
    assert_eq!(u32::from_str_radix(fields[3], 16).unwrap(), POSSESSOR_ONLY, "{shown}");

    // Stopped and started again in another fresh session keyring: only the user keyring carries the account over.
    let status = daemon.stop_with(nix::sys::signal::Signal::SIGTERM);
    assert!(status.success(), "{status}:\n{}", daemon.log());
    spawn_without_secret_service(&mut daemon, Some(&nowhere));
    let token = daemon.client().token(&query("User.Read")).await.expect("token after restart, no sign-in");
    assert_eq!(token.account.username, ALICE);
    assert_eq!(fake.stats().devicecode, 1, "no second sign-in");
    assert_eq!(fake.stats().token.refresh_token, 1, "the access token came from the stored refresh token");
    let after = work_status(&daemon).await;
    assert_eq!(after.store, StoreKind::Keyutils);
    assert_eq!(after.account.map(|a| a.username).as_deref(), Some(ALICE));

    let signed_out = daemon.client().signout(None).await.expect("signout");
    assert_eq!(signed_out.account.map(|a| a.username).as_deref(), Some(ALICE));
    assert!(described(&key.description).is_none(), "signout deleted the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_kernel_keyring_store_says_configured_and_lost_at_reboot() {
    if !kernel_keyring_available("explicit") {
        return;
    }
    let fake = fake();
    let service = unique_service("kernel-explicit");
    let key = KernelKey { description: KeyutilsStore::new(service.as_str()).description("work") };
    let mut daemon = Daemon::unstarted(&config(&fake, "keyutils", &service, ""));
    spawn_without_secret_service(&mut daemon, None);
    let status = work_status(&daemon).await;
    assert_eq!(status.store, StoreKind::Keyutils);
    assert_eq!(status.store_reason.as_deref(), Some("configured"));

    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    assert!(described(&key.description).is_some());
    let text = Command::new(client_bin())
        .arg("status")
        .env("GRAPHBROKER_SOCKET", &daemon.socket)
        .output()
        .expect("graphbroker-client status runs");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains("store      kernel keyring (lost at reboot)"), "{text}");
    daemon.client().signout(None).await.expect("signout");
    assert!(described(&key.description).is_none(), "signout deleted the key");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_with_a_secret_service_uses_it() {
    if !keychain_available("auto_secret_service") || !kernel_keyring_available("auto_secret_service") {
        return;
    }
    let fake = fake();
    let service = unique_service("auto-ss");
    let key = KernelKey { description: KeyutilsStore::new(service.as_str()).description("work") };
    let daemon = Daemon::start(&config(&fake, "auto", &service, ""));
    let status = work_status(&daemon).await;
    assert_eq!(status.store, StoreKind::Keyring, "{status:?}");
    assert_eq!(status.store_reason.as_deref(), Some("auto: the Secret Service answered"));
    sign_in(&daemon.client(), &fake, "User.Read", ALICE).await;
    assert_eq!(keychain_items(&service), 1, "the account is in the Secret Service");
    assert!(described(&key.description).is_none(), "and not in the kernel keyring");
    daemon.client().signout(None).await.expect("signout");
    assert_eq!(keychain_items(&service), 0);
}
