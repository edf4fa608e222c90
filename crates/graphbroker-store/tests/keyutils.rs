//! `KeyutilsStore` against the real Linux kernel keyring, checked from outside with `keyctl` (keyutils).
//!
//! Where the kernel keyring cannot be used (a seccomp profile that forbids keyctl) each test prints why and
//! passes, unless `GRAPHBROKER_TEST_KEYCHAIN=required`. The user keyring is shared by every run of the suite (and
//! by anything else of this uid), so each test files its keys under a service name of its own and deletes them.
#![cfg(target_os = "linux")]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use graphbroker_store::{ExposeSecret, KeyutilsStore, POSSESSOR_ONLY, SecretStore, StoreError, StoreKind};

mod support;

use support::{REQUIRED_ENV, Scratch, stored};

fn scratch(test: &str, profiles: &[&'static str]) -> Option<Scratch<KeyutilsStore>> {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let service = format!("gb-test-{}-{}-{test}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
    let store = KeyutilsStore::new(service);
    let usable = store.probe().and_then(|()| which("keyctl"));
    match usable {
        Ok(()) => Some(Scratch { store, profiles: profiles.to_vec() }),
        Err(err) if std::env::var(REQUIRED_ENV).is_ok_and(|v| v == "required") => {
            panic!("{REQUIRED_ENV}=required but the kernel keyring cannot be used: {err}")
        }
        Err(err) => {
            eprintln!("skipping {test}: {err}");
            None
        }
    }
}

fn which(program: &str) -> Result<(), StoreError> {
    Command::new(program).arg("--version").output().map(|_| ()).map_err(|e| StoreError::Unavailable {
        message: format!("{program} not found ({e}); install keyutils (scripts/test does)"),
    })
}

/// Runs `keyctl ARGS` in a fresh session keyring that links the user keyring: a process of this uid that
/// possesses the user keyring, as a login shell does.
fn keyctl_possessing(args: &[&str]) -> Output {
    Command::new("keyctl")
        .args(["session", "-", "sh", "-c", "keyctl link @u @s && exec keyctl \"$@\"", "keyctl"])
        .args(args)
        .output()
        .expect("keyctl runs")
}

/// Runs `keyctl ARGS` in a fresh session keyring that links nothing: this uid, but no possession.
fn keyctl_not_possessing(args: &[&str]) -> Output {
    Command::new("keyctl").args(["session", "-", "keyctl"]).args(args).output().expect("keyctl runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// The id of the key described `description` in the user keyring, found from outside; `None` when absent.
fn key_id(description: &str) -> Option<String> {
    let out = keyctl_possessing(&["search", "@u", "user", description]);
    out.status.success().then(|| stdout(&out))
}

#[test]
fn save_load_replace_delete_round_trip() {
    let Some(s) = scratch("round", &["work"]) else { return };
    assert_eq!(s.store.kind(), StoreKind::Keyutils);
    assert!(s.store.load("work").unwrap().is_none());

    s.store.save("work", &stored("rt-1-very-secret")).unwrap();
    let loaded = s.store.load("work").unwrap().expect("saved account");
    assert_eq!(loaded.refresh_token.expose_secret(), "rt-1-very-secret");
    assert_eq!(loaded.account.username, "adele@contoso.com");
    let first = key_id(&s.store.description("work")).expect("the key is in @u");

    s.store.save("work", &stored("rt-2-very-secret")).unwrap();
    assert_eq!(s.store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-2-very-secret");
    let second = key_id(&s.store.description("work")).expect("the key is in @u");
    assert_ne!(first, second, "a rotation links a new key in place of the old");
    let old = keyctl_possessing(&["print", &first]);
    assert!(!old.status.success(), "the replaced key is gone: {}", stdout(&old));

    assert!(s.store.delete("work").unwrap());
    assert!(key_id(&s.store.description("work")).is_none());
    assert!(s.store.load("work").unwrap().is_none());
    assert!(!s.store.delete("work").unwrap());
}

#[test]
fn the_key_is_possessor_only_and_holds_the_documented_record() {
    let Some(s) = scratch("mask", &["work"]) else { return };
    s.store.save("work", &stored("rt-mask-very-secret")).unwrap();
    let description = s.store.description("work");
    let id = key_id(&description).expect("the key is in @u");

    // `type;uid;gid;perm;description`, read by a process that possesses the key.
    let out = keyctl_possessing(&["rdescribe", &id]);
    let fields: Vec<String> = stdout(&out).split(';').map(str::to_owned).collect();
    assert_eq!(fields.len(), 5, "{fields:?}");
    assert_eq!(fields[0], "user");
    assert_eq!(u32::from_str_radix(&fields[3], 16).unwrap(), POSSESSOR_ONLY, "{fields:?}");
    assert_eq!(fields[4], description);
    let uid = nix_uid();
    assert_eq!(fields[1], uid.to_string());

    let payload = keyctl_possessing(&["pipe", &id]);
    let value: serde_json::Value = serde_json::from_slice(&payload.stdout).expect("the payload is the JSON record");
    assert_eq!(value["v"], 1);
    assert_eq!(value["refresh_token"], "rt-mask-very-secret");
    assert_eq!(value["account"]["username"], "adele@contoso.com");

    // The same uid without possession (a fresh session keyring that does not link @u) cannot read it by id.
    let out = keyctl_not_possessing(&["pipe", &id]);
    assert!(!out.status.success(), "read without possession");
    assert!(!String::from_utf8_lossy(&out.stdout).contains("very-secret"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
}

fn nix_uid() -> u32 {
    let out = Command::new("id").arg("-u").output().expect("id runs");
    stdout(&out).parse().expect("a uid")
}

#[test]
fn another_uid_cannot_read_the_key() {
    let Some(s) = scratch("otheruid", &["work"]) else { return };
    if nix_uid() != 0 {
        if std::env::var("GRAPHBROKER_TEST_ROOT").as_deref() == Ok("required") {
            panic!("another_uid_cannot_read_the_key needs root (setpriv), but GRAPHBROKER_TEST_ROOT=required");
        }
        eprintln!("skipping another_uid_cannot_read_the_key: needs root to run keyctl as uid 65534");
        return;
    }
    s.store.save("work", &stored("rt-uid-very-secret")).unwrap();
    let id = key_id(&s.store.description("work")).expect("the key is in @u");
    // As uid 65534, in a session keyring of its own (one inherited from us would link our @u, and possession
    // goes by keyrings, not uids: see docs/security.md).
    for args in [["pipe", id.as_str()], ["describe", id.as_str()]] {
        let out = Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "keyctl", "session", "-", "keyctl"])
            .args(args)
            .output()
            .expect("setpriv runs");
        assert!(!out.status.success(), "uid 65534 ran keyctl {args:?}: {}", stdout(&out));
        assert!(!String::from_utf8_lossy(&out.stdout).contains("very-secret"));
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"), "{out:?}");
    }
}

#[test]
fn services_and_profiles_are_separate() {
    let Some(a) = scratch("sep-a", &["work", "mail"]) else { return };
    let Some(b) = scratch("sep-b", &["work"]) else { return };
    a.store.save("work", &stored("rt-a-work")).unwrap();
    a.store.save("mail", &stored("rt-a-mail")).unwrap();
    b.store.save("work", &stored("rt-b-work")).unwrap();
    assert!(a.store.delete("work").unwrap());
    assert_eq!(a.store.load("mail").unwrap().unwrap().refresh_token.expose_secret(), "rt-a-mail");
    assert_eq!(b.store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-b-work");
    assert!(a.store.load("work").unwrap().is_none());
}

#[test]
fn an_unreadable_key_is_corrupt_and_not_quoted() {
    let Some(s) = scratch("corrupt", &["work"]) else { return };
    let description = s.store.description("work");
    let out = keyctl_possessing(&["add", "user", &description, "not-json-very-secret", "@u"]);
    assert!(out.status.success(), "{out:?}");
    let err = s.store.load("work").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("very-secret"));
    // Signing out deletes it, whatever its mask.
    assert!(s.store.delete("work").unwrap());
    assert!(key_id(&description).is_none());
}

#[test]
fn parallel_use_from_threads() {
    let Some(s) = scratch("threads", &["p0", "p1", "p2", "p3"]) else { return };
    std::thread::scope(|scope| {
        for (i, profile) in ["p0", "p1", "p2", "p3"].into_iter().enumerate() {
            let store = &s.store;
            scope.spawn(move || {
                for round in 0..5 {
                    let token = format!("rt-{i}-{round}");
                    store.save(profile, &stored(&token)).unwrap();
                    assert_eq!(store.load(profile).unwrap().unwrap().refresh_token.expose_secret(), token);
                }
            });
        }
    });
}
