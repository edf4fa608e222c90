//! `store = "auto"`: the OS keychain when it answers, otherwise the kernel keyring — decided once per profile,
//! and never by silently leaving a stored sign-in behind.
//!
//! The rule, applied to a profile at its first store operation in a daemon run (its load at start, or when a
//! reload adds it) and then kept until the daemon stops:
//!
//! 1. The keychain (Secret Service, macOS Keychain) answers a probe and holds the profile's account: the keychain.
//! 2. Otherwise, the kernel keyring holds the profile's account: the kernel keyring — the account stays where
//!    it was stored, also when a Secret Service has appeared since (sign out and in again to move it).
//! 3. Otherwise, no account anywhere: the keychain if it answered, else the kernel keyring (Linux), with a
//!    warning that it does not survive a reboot.
//!
//! A Secret Service that appears or vanishes later does not change the choice while the daemon runs: a running
//! daemon never switches stores under an account. On macOS (and wherever there is no kernel keyring) the only
//! candidate is the keychain, whose errors then stand as they would with `store = "keyring"`. Never a plaintext
//! file.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use graphbroker_protocol::StoreKind;

use crate::{SecretStore, StoreChoice, StoreError, StoredAccount};

/// Picks, per profile, the keychain or the kernel keyring (see the module docs).
pub struct AutoStore {
    keychain: Arc<dyn SecretStore>,
    /// The kernel keyring; `None` where there is none (macOS).
    fallback: Option<Arc<dyn SecretStore>>,
    /// Says, when the probe fails, why no keychain answered (e.g. that the session bus address is unset).
    explain: Box<dyn Fn() -> Option<String> + Send + Sync>,
    choices: Mutex<HashMap<String, Chosen>>,
    warned: AtomicBool,
}

impl std::fmt::Debug for AutoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutoStore")
            .field("keychain", &self.keychain)
            .field("fallback", &self.fallback)
            .field("choices", &*self.choices())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Chosen {
    store: Arc<dyn SecretStore>,
    reason: String,
}

impl AutoStore {
    /// `keychain` first; `fallback` (the kernel keyring) when the keychain does not answer or the account is
    /// there. `explain` adds what the environment says about a keychain that did not answer.
    pub fn new(
        keychain: Arc<dyn SecretStore>,
        fallback: Option<Arc<dyn SecretStore>>,
        explain: impl Fn() -> Option<String> + Send + Sync + 'static,
    ) -> AutoStore {
        let explain = Box::new(explain);
        AutoStore { keychain, fallback, explain, choices: Mutex::default(), warned: AtomicBool::new(false) }
    }

    /// The system's candidates: the `keyring` crate's keychain, and on Linux the kernel keyring.
    pub fn system(service: &str) -> AutoStore {
        let keyring = crate::KeyringStore::new(service);
        let keychain: Arc<dyn SecretStore> = Arc::new(keyring.clone());
        #[cfg(target_os = "linux")]
        let fallback: Option<Arc<dyn SecretStore>> = Some(Arc::new(crate::KeyutilsStore::new(service)));
        #[cfg(not(target_os = "linux"))]
        let fallback: Option<Arc<dyn SecretStore>> = None;
        AutoStore::new(keychain, fallback, move || session_bus_hint().or_else(|| keyring.unavailable_cause()))
    }

    /// The store chosen for `profile`, choosing it now if this is the profile's first operation.
    fn store_for(&self, profile: &str) -> Arc<dyn SecretStore> {
        if let Some(chosen) = self.choices().get(profile) {
            return chosen.store.clone();
        }
        // Chosen without holding the lock: the probe is a D-Bus round trip. The daemon runs one operation per
        // profile at a time, so two choices for one profile never race; if they did, the first would stay.
        let chosen = self.choose(profile);
        self.choices().entry(profile.to_owned()).or_insert(chosen).store.clone()
    }

    fn choose(&self, profile: &str) -> Chosen {
        let keychain_name = keychain_name(self.keychain.kind());
        let answered = self.keychain.probe();
        let holds = |store: &Arc<dyn SecretStore>| matches!(store.load(profile), Ok(Some(_)));
        let chosen = match (answered, &self.fallback) {
            (Ok(()), _) if holds(&self.keychain) => {
                Chosen { store: self.keychain.clone(), reason: format!("auto: the {keychain_name} answered") }
            }
            (Ok(()), Some(fallback)) if holds(fallback) => Chosen {
                store: fallback.clone(),
                reason: "auto: the account was stored here while no Secret Service answered; sign out and in \
                         again to move it to the Secret Service"
                    .to_owned(),
            },
            (Ok(()), _) => {
                Chosen { store: self.keychain.clone(), reason: format!("auto: the {keychain_name} answered") }
            }
            (Err(err), Some(fallback)) => {
                let detail = (self.explain)().unwrap_or_else(|| err.to_string());
                let reason = if holds(fallback) {
                    format!("auto: no Secret Service answered on the session bus ({detail}); the account is here")
                } else {
                    format!("auto: no Secret Service answered on the session bus ({detail})")
                };
                Chosen { store: fallback.clone(), reason }
            }
            (Err(err), None) => {
                Chosen { store: self.keychain.clone(), reason: format!("auto: the {keychain_name} ({err})") }
            }
        };
        if chosen.store.kind() == StoreKind::Keyutils {
            if !self.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    profile,
                    "storing refresh tokens in the kernel keyring ({}): they survive a daemon restart but not a \
                     reboot; run a Secret Service (gnome-keyring, KeePassXC) to keep sign-ins across reboots",
                    chosen.reason
                );
            } else {
                tracing::info!(profile, "kernel keyring chosen ({})", chosen.reason);
            }
        } else {
            tracing::info!(profile, "{keychain_name} chosen ({})", chosen.reason);
        }
        chosen
    }

    fn choices(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chosen>> {
        // Entries are inserted whole, so a panic elsewhere while holding the lock leaves the map usable.
        self.choices.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn keychain_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Keyring if cfg!(target_os = "macos") => "macOS Keychain",
        StoreKind::Keyring => "Secret Service",
        _ => "keychain",
    }
}

/// What the environment says about the session bus, when a probe of the Secret Service failed.
fn session_bus_hint() -> Option<String> {
    match std::env::var_os("DBUS_SESSION_BUS_ADDRESS") {
        None => Some("DBUS_SESSION_BUS_ADDRESS is unset".to_owned()),
        Some(value) if value.is_empty() => Some("DBUS_SESSION_BUS_ADDRESS is empty".to_owned()),
        Some(_) => None,
    }
}

impl SecretStore for AutoStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Auto
    }

    fn chosen(&self, profile: &str) -> Option<StoreChoice> {
        self.choices()
            .get(profile)
            .map(|chosen| StoreChoice { kind: chosen.store.kind(), reason: chosen.reason.clone() })
    }

    fn probe(&self) -> Result<(), StoreError> {
        match self.keychain.probe() {
            Ok(()) => Ok(()),
            Err(err) => self.fallback.as_ref().map_or(Err(err), |fallback| fallback.probe()),
        }
    }

    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
        self.store_for(profile).load(profile)
    }

    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
        self.store_for(profile).save(profile, account)
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        self.store_for(profile).delete(profile)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::{AccountRecord, MemoryStore};

    /// A store of a given kind that answers its probe or not.
    #[derive(Debug)]
    struct Fake {
        kind: StoreKind,
        answers: bool,
        inner: MemoryStore,
    }

    impl Fake {
        fn new(kind: StoreKind, answers: bool) -> Arc<Fake> {
            Arc::new(Fake { kind, answers, inner: MemoryStore::new() })
        }
    }

    impl SecretStore for Fake {
        fn kind(&self) -> StoreKind {
            self.kind
        }
        fn probe(&self) -> Result<(), StoreError> {
            if self.answers { Ok(()) } else { Err(StoreError::Unavailable { message: "nobody home".into() }) }
        }
        fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
            self.probe()?;
            self.inner.load(profile)
        }
        fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
            self.probe()?;
            self.inner.save(profile, account)
        }
        fn delete(&self, profile: &str) -> Result<bool, StoreError> {
            self.probe()?;
            self.inner.delete(profile)
        }
    }

    fn stored(token: &str) -> StoredAccount {
        StoredAccount {
            refresh_token: SecretString::from(token),
            account: AccountRecord {
                username: "adele@contoso.com".into(),
                home_account_id: "oid.tid".into(),
                tenant_id: "tid".into(),
                authority: "https://login.microsoftonline.com/common".into(),
                client_id: "client".into(),
                granted_scopes: vec![],
                refreshed_at: None,
                session_ended: None,
            },
        }
    }

    fn auto(keychain: &Arc<Fake>, kernel: &Arc<Fake>) -> AutoStore {
        AutoStore::new(keychain.clone(), Some(kernel.clone()), || None)
    }

    #[test]
    fn an_answering_keychain_is_used_when_no_account_is_anywhere() {
        let (keychain, kernel) = (Fake::new(StoreKind::Keyring, true), Fake::new(StoreKind::Keyutils, true));
        let store = auto(&keychain, &kernel);
        assert!(store.chosen("work").is_none(), "nothing is chosen before the first operation");
        assert!(store.load("work").unwrap().is_none());
        store.save("work", &stored("rt")).unwrap();
        assert!(keychain.inner.load("work").unwrap().is_some());
        assert!(kernel.inner.load("work").unwrap().is_none());
        let choice = store.chosen("work").unwrap();
        assert_eq!(choice.kind, StoreKind::Keyring);
        assert!(choice.reason.contains("Secret Service answered") || choice.reason.contains("Keychain"));
    }

    #[test]
    fn without_a_keychain_the_kernel_keyring_is_used_and_says_why() {
        let (keychain, kernel) = (Fake::new(StoreKind::Keyring, false), Fake::new(StoreKind::Keyutils, true));
        let store = auto(&keychain, &kernel);
        store.save("work", &stored("rt")).unwrap();
        assert_eq!(kernel.inner.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt");
        let choice = store.chosen("work").unwrap();
        assert_eq!(choice.kind, StoreKind::Keyutils);
        assert!(choice.reason.contains("no Secret Service answered") && choice.reason.contains("nobody home"));
        assert!(store.delete("work").unwrap());
        assert!(kernel.inner.load("work").unwrap().is_none());
    }

    #[test]
    fn a_later_secret_service_never_strands_an_account_in_the_kernel_keyring() {
        // An earlier run stored the account in the kernel keyring; now a Secret Service answers.
        let (keychain, kernel) = (Fake::new(StoreKind::Keyring, true), Fake::new(StoreKind::Keyutils, true));
        kernel.inner.save("work", &stored("rt-kernel")).unwrap();
        let store = auto(&keychain, &kernel);
        assert_eq!(store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-kernel");
        store.save("work", &stored("rt-rotated")).unwrap();
        assert_eq!(kernel.inner.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-rotated");
        assert!(keychain.inner.load("work").unwrap().is_none());
        assert_eq!(store.chosen("work").unwrap().kind, StoreKind::Keyutils);
    }

    #[test]
    fn the_keychain_wins_when_it_holds_the_account() {
        let (keychain, kernel) = (Fake::new(StoreKind::Keyring, true), Fake::new(StoreKind::Keyutils, true));
        keychain.inner.save("work", &stored("rt-keychain")).unwrap();
        kernel.inner.save("work", &stored("rt-kernel")).unwrap();
        let store = auto(&keychain, &kernel);
        assert_eq!(store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-keychain");
    }

    #[test]
    fn profiles_choose_separately_and_keep_their_choice() {
        let (keychain, kernel) = (Fake::new(StoreKind::Keyring, true), Fake::new(StoreKind::Keyutils, true));
        kernel.inner.save("old", &stored("rt-old")).unwrap();
        let store = auto(&keychain, &kernel);
        store.load("old").unwrap();
        store.load("new").unwrap();
        assert_eq!(store.chosen("old").unwrap().kind, StoreKind::Keyutils);
        assert_eq!(store.chosen("new").unwrap().kind, StoreKind::Keyring);
        // Signing out of "old" does not move it: the choice holds for the rest of the run.
        assert!(store.delete("old").unwrap());
        store.save("old", &stored("rt-again")).unwrap();
        assert!(kernel.inner.load("old").unwrap().is_some());
    }

    #[test]
    fn without_a_fallback_the_keychain_error_stands() {
        let keychain = Fake::new(StoreKind::Keyring, false);
        let store = AutoStore::new(keychain, None, || None);
        assert!(matches!(store.load("work"), Err(StoreError::Unavailable { .. })));
        assert_eq!(store.chosen("work").unwrap().kind, StoreKind::Keyring);
    }
}
