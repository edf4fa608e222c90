//! `KeyringStore` against the real OS keychain (on Linux, the Secret Service), checked from outside with
//! `secret-tool` (libsecret-tools).
//!
//! `scripts/test` runs these on a private D-Bus session with a freshly unlocked gnome-keyring. Where no keychain can
//! be reached each test prints why to stderr and passes, unless `GRAPHBROKER_TEST_KEYCHAIN=required`, which makes it
//! fail instead. Every test files its entries under a service name of its own, so tests running in parallel (or
//! next to a real daemon) never see each other's entries, and a guard deletes them again.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use graphbroker_store::{ExposeSecret, KeyringStore, SecretStore, StoreError, StoreKind};

mod support;

use support::{REQUIRED_ENV, Scratch, stored};

fn required() -> bool {
    std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "required")
}

/// A store on a service name no other test uses, or `None` (after saying why) when there is no keychain here.
fn scratch(test: &str, profiles: &[&'static str]) -> Option<Scratch<KeyringStore>> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let service = format!("graphbroker-test-{}-{}-{test}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let store = KeyringStore::new(service);
    match store.probe() {
        Ok(()) => Some(Scratch { store, profiles: profiles.to_vec() }),
        Err(err) if required() => {
            panic!("{REQUIRED_ENV}=required but the keychain cannot be used: {err}")
        }
        Err(err) => {
            eprintln!("skipping {test}: no usable keychain ({err}); set {REQUIRED_ENV}=required to fail instead");
            None
        }
    }
}

/// The Secret Service items filed under one service, as `secret-tool search --all` shows them, without secrets.
/// It prints each item's label on stdout and its attributes on stderr, so with several items the attributes cannot
/// be told apart; the tests check attributes only where one item is expected.
#[derive(Debug)]
struct Items {
    labels: Vec<String>,
    attributes: Vec<(String, String)>,
}

impl Items {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str())
    }
}

/// The items filed under `service`, or `None` when `secret-tool` cannot be run here (not Linux, or not installed)
/// and the check is left out. Secret lines are dropped before anything can print them.
fn secret_tool_items(service: &str) -> Option<Items> {
    if cfg!(target_os = "macos") {
        return None;
    }
    let output = match Command::new("secret-tool").args(["search", "--all", "service", service]).output() {
        Ok(output) => output,
        Err(err) if required() => panic!("{REQUIRED_ENV}=required but secret-tool cannot be run: {err}"),
        Err(err) => {
            eprintln!("not checking with secret-tool: {err}");
            return None;
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let labels = stdout.lines().filter_map(|line| line.strip_prefix("label = ")).map(str::to_owned).collect();
    let attributes = stderr
        .lines()
        .filter_map(|line| line.strip_prefix("attribute.")?.split_once(" = "))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
    Some(Items { labels, attributes })
}

#[test]
fn save_then_load_round_trips_and_files_one_item() {
    let Some(scratch) = scratch("round-trip", &["work"]) else { return };
    let store = &scratch.store;
    assert_eq!(store.kind(), StoreKind::Keyring);
    assert!(store.load("work").unwrap().is_none());

    store.save("work", &stored("rt-round-trip")).unwrap();
    let loaded = store.load("work").unwrap().expect("the saved account");
    assert_eq!(loaded.refresh_token.expose_secret(), "rt-round-trip");
    assert_eq!(loaded.account, stored("x").account);

    if let Some(items) = secret_tool_items(store.service()) {
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items.attribute("service"), Some(store.service()));
        assert_eq!(items.attribute("username"), Some("work"));
        assert_eq!(items.labels[0], format!("keyring:work@{}", store.service()));
    }
}

#[test]
fn entry_secret_is_the_documented_json() {
    let Some(scratch) = scratch("format", &["work"]) else { return };
    let store = &scratch.store;
    store.save("work", &stored("rt-format")).unwrap();
    if cfg!(target_os = "macos") {
        return;
    }
    let Ok(output) =
        Command::new("secret-tool").args(["lookup", "service", store.service(), "username", "work"]).output()
    else {
        assert!(!required(), "secret-tool cannot be run");
        return;
    };
    let value: serde_json::Value = serde_json::from_slice(&output.stdout).expect("the entry's secret is JSON");
    assert_eq!(value["v"], 1);
    assert_eq!(value["refresh_token"], "rt-format");
    assert_eq!(value["account"]["username"], "adele@contoso.com");
}

#[test]
fn saving_again_replaces_the_token_in_place() {
    let Some(scratch) = scratch("rotation", &["work"]) else { return };
    let store = &scratch.store;
    store.save("work", &stored("rt-1")).unwrap();
    let mut rotated = stored("rt-2");
    rotated.account.granted_scopes.push("https://graph.microsoft.com/Mail.Read".into());
    store.save("work", &rotated).unwrap();

    let loaded = store.load("work").unwrap().unwrap();
    assert_eq!(loaded.refresh_token.expose_secret(), "rt-2");
    assert_eq!(loaded.account.granted_scopes.len(), 3);
    if let Some(items) = secret_tool_items(store.service()) {
        assert_eq!(items.len(), 1, "a rotation must not leave the old item behind: {items:?}");
    }
}

#[test]
fn delete_removes_the_item() {
    let Some(scratch) = scratch("delete", &["work"]) else { return };
    let store = &scratch.store;
    store.save("work", &stored("rt-delete")).unwrap();
    assert!(store.delete("work").unwrap());
    assert!(store.load("work").unwrap().is_none());
    if let Some(items) = secret_tool_items(store.service()) {
        assert_eq!(items.len(), 0, "{items:?}");
    }
    assert!(!store.delete("work").unwrap(), "a second delete finds nothing");
}

#[test]
fn delete_of_a_missing_entry_is_false() {
    let Some(scratch) = scratch("delete-missing", &[]) else { return };
    assert!(!scratch.store.delete("never-saved").unwrap());
}

#[test]
fn profiles_and_services_are_separate() {
    let Some(first) = scratch("separate-a", &["work", "home"]) else { return };
    let Some(second) = scratch("separate-b", &["work"]) else { return };
    first.store.save("work", &stored("rt-a-work")).unwrap();
    first.store.save("home", &stored("rt-a-home")).unwrap();
    second.store.save("work", &stored("rt-b-work")).unwrap();

    assert!(first.store.delete("work").unwrap());
    assert_eq!(first.store.load("home").unwrap().unwrap().refresh_token.expose_secret(), "rt-a-home");
    assert_eq!(second.store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-b-work");
}

#[test]
fn probe_writes_nothing() {
    let Some(scratch) = scratch("probe", &[]) else { return };
    scratch.store.probe().unwrap();
    if let Some(items) = secret_tool_items(scratch.store.service()) {
        assert_eq!(items.len(), 0, "{items:?}");
    }
}

#[test]
fn an_unreadable_entry_is_corrupt_and_not_quoted() {
    let Some(scratch) = scratch("corrupt", &["work"]) else { return };
    let store = &scratch.store;
    if cfg!(target_os = "macos") {
        return;
    }
    let written = Command::new("sh")
        .args(["-c", "printf %s 'garbage very-secret' | secret-tool store --label=t service \"$0\" username work"])
        .arg(store.service())
        .status();
    match written {
        Ok(status) if status.success() => {}
        other => {
            assert!(!required(), "secret-tool store failed: {other:?}");
            return;
        }
    }
    let err = store.load("work").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { ref profile, .. } if profile == "work"), "{err:?}");
    let shown = format!("{err} {err:?}");
    assert!(!shown.contains("very-secret"), "{shown}");
    assert!(store.delete("work").unwrap(), "a corrupt entry can still be deleted");
}

#[test]
fn parallel_use_from_threads() {
    let Some(scratch) = scratch("threads", &["p0", "p1", "p2", "p3"]) else { return };
    let store = &scratch.store;
    std::thread::scope(|scope| {
        for profile in ["p0", "p1", "p2", "p3"] {
            scope.spawn(move || {
                let token = format!("rt-{profile}");
                store.save(profile, &stored(&token)).unwrap();
                assert_eq!(store.load(profile).unwrap().unwrap().refresh_token.expose_secret(), token.as_str());
            });
        }
    });
}
