//! The OS keychain store, through the `keyring` crate.
//!
//! `keyring` (v4, feature `v1`) picks the platform store once per process: the Secret Service over D-Bus (`zbus`,
//! pure Rust) on Linux and the BSDs, the login Keychain on macOS. An entry is `(service, profile)`; on the Secret
//! Service that is an item in the default collection with the attributes `service` and `username`, labelled
//! `keyring:<profile>@<service>`.

use graphbroker_protocol::StoreKind;
use keyring::{Entry, Error as KeyringError};
use zeroize::Zeroizing;

use crate::record::{decode, encode};
use crate::{SecretStore, StoreError, StoredAccount};

/// The user name of the entry [`KeyringStore::probe`] looks up. Config restricts profile names to letters, digits,
/// `-` and `_`, so no real profile can be called this, and the entry is never written.
const PROBE_USER: &str = "(probe)";

/// The OS keychain. One entry per profile under one service name (see [`crate::DEFAULT_SERVICE`]).
#[derive(Debug, Clone)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// A store whose entries are filed under `service`. Nothing is contacted until the first call.
    pub fn new(service: impl Into<String>) -> KeyringStore {
        KeyringStore { service: service.into() }
    }

    /// The service name entries are filed under.
    pub fn service(&self) -> &str {
        &self.service
    }

    fn entry(&self, profile: &str) -> Result<Entry, StoreError> {
        Entry::new(&self.service, profile).map_err(|err| self.describe(err, profile))
    }

    /// Why the keychain does not answer, in the platform's words and without advice (for `store = "auto"`'s
    /// reason); `None` when it answers.
    pub fn unavailable_cause(&self) -> Option<String> {
        let result = Entry::new(&self.service, PROBE_USER).and_then(|entry| entry.get_secret());
        match result {
            Ok(mut bytes) => {
                zeroize::Zeroize::zeroize(&mut bytes);
                None
            }
            Err(KeyringError::NoEntry) => None,
            Err(KeyringError::NoDefaultStore) => Some(match Entry::store_status() {
                Err(cause) => cause.to_string(),
                Ok(()) => "the store could not be set up".to_owned(),
            }),
            Err(KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..)) => None,
            Err(other) => Some(other.to_string()),
        }
    }

    /// Turns a keychain error into a [`StoreError`] whose message says what to do. Never prints the error's
    /// `Debug`: `BadEncoding` and `BadDataFormat` carry the secret's bytes.
    fn describe(&self, err: KeyringError, profile: &str) -> StoreError {
        let service = &self.service;
        match err {
            KeyringError::NoDefaultStore => {
                // keyring sets its store up once per process, on first use; a failure sticks until restart.
                let detail = match Entry::store_status() {
                    Err(cause) => cause.to_string(),
                    Ok(()) => "the store could not be set up".to_owned(),
                };
                StoreError::Unavailable { message: no_store_message(&detail) }
            }
            KeyringError::NoStorageAccess(cause) => {
                StoreError::Unavailable { message: locked_message(&cause.to_string()) }
            }
            KeyringError::PlatformFailure(cause) => StoreError::Unavailable {
                message: format!(
                    "the keychain service failed ({cause}): {PLATFORM_HINT}, or set store = \"memory\" for this profile"
                ),
            },
            KeyringError::BadEncoding(_) | KeyringError::BadDataFormat(..) => StoreError::Corrupt {
                profile: profile.to_owned(),
                message: "the stored secret is not in a readable format".to_owned(),
            },
            KeyringError::Ambiguous(entries) => StoreError::Failed {
                message: format!(
                    "{} keychain entries match profile {profile} of service {service}: delete them ({DELETE_HINT}) and sign in again",
                    entries.len()
                ),
            },
            KeyringError::TooLong(what, limit) => StoreError::Failed {
                message: format!("the entry's {what} is longer than the keychain allows ({limit})"),
            },
            KeyringError::Invalid(what, reason) => StoreError::Failed {
                message: format!("the keychain refused the entry's {what} for profile {profile}: {reason}"),
            },
            // The rest (unsupported operations, a malformed store, NoEntry where callers did not expect it, and
            // variants added later) have no remedy of their own; their Display carries no secret data.
            other => StoreError::Failed { message: other.to_string() },
        }
    }
}

impl SecretStore for KeyringStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Keyring
    }

    fn probe(&self) -> Result<(), StoreError> {
        match self.entry(PROBE_USER)?.get_secret() {
            Ok(mut bytes) => {
                // Not ours to read; the store answered, which is all the probe asks.
                zeroize::Zeroize::zeroize(&mut bytes);
                Ok(())
            }
            Err(KeyringError::NoEntry) => Ok(()),
            Err(err) => Err(self.describe(err, PROBE_USER)),
        }
    }

    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
        let secret = match self.entry(profile)?.get_secret() {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(KeyringError::NoEntry) => return Ok(None),
            Err(err) => return Err(self.describe(err, profile)),
        };
        decode(profile, &secret).map(Some)
    }

    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
        let secret = encode(account)?;
        // Replaces the item in place when it exists, so a rotation is one write.
        self.entry(profile)?.set_secret(&secret).map_err(|err| self.describe(err, profile))
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        match self.entry(profile)?.delete_credential() {
            Ok(()) => Ok(true),
            Err(KeyringError::NoEntry) => Ok(false),
            Err(err) => Err(self.describe(err, profile)),
        }
    }
}

#[cfg(target_os = "macos")]
const PLATFORM_HINT: &str = "check that the login keychain exists and is unlocked (Keychain Access)";
#[cfg(not(target_os = "macos"))]
const PLATFORM_HINT: &str =
    "check that a Secret Service provider (gnome-keyring, KeePassXC, KWallet) is running in this session";

#[cfg(target_os = "macos")]
const DELETE_HINT: &str = "Keychain Access, or `security delete-generic-password`";
#[cfg(not(target_os = "macos"))]
const DELETE_HINT: &str = "Seahorse, or `secret-tool clear service SERVICE username PROFILE`";

#[cfg(target_os = "macos")]
fn no_store_message(detail: &str) -> String {
    format!(
        "the macOS keychain cannot be opened ({detail}): check the login keychain in Keychain Access and restart \
         graphbrokerd, or set store = \"memory\" for this profile"
    )
}

#[cfg(not(target_os = "macos"))]
fn no_store_message(detail: &str) -> String {
    format!(
        "no Secret Service found ({detail}): start gnome-keyring or another Secret Service provider in this session \
         (graphbrokerd needs DBUS_SESSION_BUS_ADDRESS) and restart graphbrokerd, or set store = \"memory\" for this \
         profile"
    )
}

/// `NoStorageAccess`: the store is there but would not open the entry. On the Secret Service the cause is one of
/// `secret_service::Error::{Locked, Prompt, NoResult}`; only its text reaches us, so the text picks the advice and
/// an unrecognised cause gets the general one.
fn locked_message(detail: &str) -> String {
    if detail.contains("result not returned") {
        // No `default` collection: gnome-keyring started without `--unlock` (or with an empty password).
        format!(
            "the keychain has no default keyring ({detail}): create or unlock the login keyring (e.g. log in to the \
             desktop session, or use Seahorse) and retry, or set store = \"memory\" for this profile"
        )
    } else {
        format!("the keychain is locked ({detail}): unlock it (e.g. log in to the desktop session) and retry")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_what_to_do() {
        let store = KeyringStore::new("svc");
        let locked = store.describe(KeyringError::NoStorageAccess("SS error: prompt dismissed".into()), "work");
        assert!(matches!(locked, StoreError::Unavailable { .. }));
        assert!(locked.to_string().contains("unlock it"), "{locked}");

        let no_collection =
            store.describe(KeyringError::NoStorageAccess("SS error: result not returned from SS API".into()), "work");
        assert!(no_collection.to_string().contains("no default keyring"), "{no_collection}");

        let ambiguous = store.describe(KeyringError::Ambiguous(Vec::new()), "work");
        assert!(ambiguous.to_string().contains("profile work of service svc"), "{ambiguous}");
    }

    #[test]
    fn bad_bytes_are_corrupt_and_never_shown() {
        let store = KeyringStore::new("svc");
        let err = store.describe(KeyringError::BadEncoding(b"very-secret-token\xff".to_vec()), "work");
        let shown = format!("{err} {err:?}");
        assert!(matches!(err, StoreError::Corrupt { .. }));
        assert!(!shown.contains("very-secret"), "{shown}");
        let err = store.describe(KeyringError::BadDataFormat(b"very-secret-token".to_vec(), "bad".into()), "work");
        assert!(!format!("{err} {err:?}").contains("very-secret"));
    }
}
