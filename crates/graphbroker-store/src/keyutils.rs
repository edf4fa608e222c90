//! The Linux kernel keyring store: one `user` key per profile in the user keyring (`@u`), readable only by a
//! process that possesses it. For headless machines with no Secret Service; it does not survive a reboot.
//!
//! **Possession.** Every key is given the mask `0x3f000000`: all rights to a possessor, none to the owning user,
//! group or others. A process possesses a key only when the key is reachable from its thread, process or session
//! keyring (keyrings(7)). A login session's keyring links `@u` (pam_keyinit), but a service's often does not:
//! systemd gives system services a private session keyring, and `keyctl session -` (which `scripts/test` runs
//! the suite under) gives a fresh one that links nothing. Without possession the daemon could not read, update
//! or delete its own keys by id (EACCES), even as their owner. So before every operation the store links `@u`
//! into the daemon's **process keyring**: that keyring belongs to this process alone (its threads share it, a
//! child gets none across fork and exec clears it), so the daemon possesses `@u` without changing the session
//! keyring other processes share, and nothing it spawns (a browser) inherits the possession.
//!
//! **Writes.** A new key is made in the process keyring with a one-byte placeholder, narrowed to the
//! possessor-only mask, filled with the entry, then linked into `@u` — where it displaces the older key of the
//! same description in one step — and unlinked from the process keyring. The secret is never in a key whose mask
//! is wider (a fresh key lets its owner view it), and a daemon that dies half-way leaves nothing in `@u`.
//!
//! **Names.** The key's description is `graphbroker:<service>:<profile>`. Profile names never contain `:`
//! (config allows letters, digits, `-` and `_`; the store refuses others), so two `(service, profile)` pairs never
//! share a description. The payload is the same versioned record the Secret Service item holds (`record.rs`).

use graphbroker_protocol::StoreKind;
use linux_keyutils::{Key, KeyError, KeyPermissionsBuilder, KeyRing, KeyRingIdentifier, Permission};
use zeroize::Zeroizing;

use crate::record::{decode, encode};
use crate::{SecretStore, StoreError, StoredAccount};

/// The prefix of every key description, so the daemon's keys are recognisable in `keyctl show @u`.
pub const DESCRIPTION_PREFIX: &str = "graphbroker:";

/// The mask of every key: all rights for a possessor, nothing for user, group or others.
pub const POSSESSOR_ONLY: u32 = 0x3f00_0000;

/// A `user` key's payload is at most 32767 bytes; one byte more tells a longer answer apart.
const MAX_PAYLOAD: usize = 32 * 1024;

/// How many keys of one description [`KeyutilsStore::delete`] removes at most (normally one: a link into `@u`
/// displaces the older key), so that a keyring someone filled on purpose cannot keep it looping.
const MAX_DUPLICATES: usize = 16;

/// The kernel keyring. One key per profile under one service name (see [`crate::DEFAULT_SERVICE`]).
#[derive(Debug, Clone)]
pub struct KeyutilsStore {
    service: String,
}

impl KeyutilsStore {
    /// A store whose keys are described `graphbroker:<service>:<profile>`. Nothing is touched until the first call.
    pub fn new(service: impl Into<String>) -> KeyutilsStore {
        KeyutilsStore { service: service.into() }
    }

    /// The service name keys are filed under.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The description of `profile`'s key, as `keyctl search @u user DESCRIPTION` finds it.
    pub fn description(&self, profile: &str) -> String {
        format!("{DESCRIPTION_PREFIX}{}:{profile}", self.service)
    }

    fn checked_description(&self, profile: &str) -> Result<String, StoreError> {
        if profile.is_empty() || profile.contains(':') || profile.contains('\0') || self.service.contains('\0') {
            return Err(StoreError::Failed {
                message: format!("profile name {profile:?} cannot name a kernel key: use letters, digits, - and _"),
            });
        }
        Ok(self.description(profile))
    }

    /// The user keyring, and the process keyring with `@u` linked into it (see the module docs: possession).
    fn keyrings(&self) -> Result<Keyrings, StoreError> {
        let unavailable = |what: &str, err: KeyError| StoreError::Unavailable {
            message: format!(
                "the kernel keyring cannot be used ({what}: {}): check that keyctl works here (a container's seccomp \
                 profile may forbid it), or choose another store",
                describe(err)
            ),
        };
        let user =
            KeyRing::from_special_id(KeyRingIdentifier::User, true).map_err(|e| unavailable("user keyring", e))?;
        let process = KeyRing::from_special_id(KeyRingIdentifier::Process, true)
            .map_err(|e| unavailable("process keyring", e))?;
        process.link_keyring(user).map_err(|e| unavailable("linking the user keyring into the process keyring", e))?;
        Ok(Keyrings { user, process })
    }

    /// The profile's key in `@u`, if there is one.
    fn find(&self, rings: &Keyrings, description: &str, profile: &str) -> Result<Option<Key>, StoreError> {
        match rings.user.search(description) {
            Ok(key) => Ok(Some(key)),
            Err(KeyError::KeyDoesNotExist | KeyError::KeyRevoked | KeyError::KeyExpired) => Ok(None),
            Err(err) => Err(self.failed("look up", profile, err)),
        }
    }

    fn failed(&self, what: &str, profile: &str, err: KeyError) -> StoreError {
        let detail = describe(err);
        let hint = match err {
            KeyError::QuotaExceeded => {
                "; the user's kernel key quota is full (kernel.keys.maxbytes, 20000 bytes by default): remove unused \
                 keys (`keyctl show @u`) or raise the quota"
            }
            KeyError::AccessDenied | KeyError::PermissionDenied => {
                "; this process does not possess the key (keyrings(7)), or its permissions were changed: remove it \
                 (`keyctl purge user DESCRIPTION` from a login shell) and sign in again"
            }
            _ => "",
        };
        StoreError::Failed {
            message: format!(
                "could not {what} the kernel key of profile {profile} (service {}): {detail}{hint}",
                self.service
            ),
        }
    }

    /// Writes `payload` into a new possessor-only key and links it into `@u` in place of the old one.
    fn write(&self, rings: &Keyrings, description: &str, profile: &str, payload: &[u8]) -> Result<(), StoreError> {
        let staged = rings.process.add_key(description, b"-").map_err(|e| self.failed("create", profile, e))?;
        let result = (|| {
            let mask = KeyPermissionsBuilder::builder().posessor(Permission::ALL).build();
            staged.set_perms(mask).map_err(|e| self.failed("restrict", profile, e))?;
            staged.update(&payload).map_err(|e| self.failed("write", profile, e))?;
            rings.user.link_key(staged).map_err(|e| self.failed("store", profile, e))
        })();
        // Whether or not it reached `@u`, the staged link goes: a failed key is then unreferenced and destroyed.
        let _ = rings.process.unlink_key(staged);
        if result.is_err() {
            let _ = staged.invalidate();
        }
        result
    }
}

struct Keyrings {
    user: KeyRing,
    process: KeyRing,
}

/// A kernel error by name and errno meaning; `KeyError` carries no payload bytes.
fn describe(err: KeyError) -> String {
    match err {
        KeyError::AccessDenied => "access denied (EACCES)".to_owned(),
        KeyError::PermissionDenied => "operation not permitted (EPERM)".to_owned(),
        KeyError::QuotaExceeded => "quota exceeded (EDQUOT)".to_owned(),
        KeyError::InvalidArguments => "invalid argument (EINVAL; an entry over 32767 bytes?)".to_owned(),
        KeyError::Unknown(38) => "not implemented by this kernel (ENOSYS)".to_owned(),
        other => format!("{other:?}"),
    }
}

impl SecretStore for KeyutilsStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Keyutils
    }

    fn probe(&self) -> Result<(), StoreError> {
        self.keyrings().map(|_| ())
    }

    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
        let description = self.checked_description(profile)?;
        let rings = self.keyrings()?;
        let Some(key) = self.find(&rings, &description, profile)? else { return Ok(None) };
        // A buffer of our own, zeroized on drop, big enough for any `user` key: no reallocation leaves a copy.
        let mut buffer = Zeroizing::new(vec![0u8; MAX_PAYLOAD]);
        let len = match key.read(&mut *buffer) {
            Ok(len) => len,
            // Deleted between the search and the read (a sign-out in another daemon of the same service).
            Err(KeyError::KeyDoesNotExist | KeyError::KeyRevoked | KeyError::KeyExpired) => return Ok(None),
            Err(err) => return Err(self.failed("read", profile, err)),
        };
        if len > buffer.len() {
            return Err(StoreError::Corrupt {
                profile: profile.to_owned(),
                message: format!("the kernel key holds {len} bytes, more than a user key can"),
            });
        }
        decode(profile, &buffer[..len]).map(Some)
    }

    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
        let description = self.checked_description(profile)?;
        let payload = encode(account)?;
        let rings = self.keyrings()?;
        self.write(&rings, &description, profile, &payload)
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        let description = self.checked_description(profile)?;
        let rings = self.keyrings()?;
        let mut deleted = false;
        for _ in 0..MAX_DUPLICATES {
            let Some(key) = self.find(&rings, &description, profile)? else { break };
            // Invalidation removes the key from every keyring that links it, at once, and the kernel wipes the
            // payload as it frees it.
            match key.invalidate() {
                Ok(()) => deleted = true,
                Err(KeyError::KeyDoesNotExist | KeyError::KeyRevoked | KeyError::KeyExpired) => {}
                Err(err) => return Err(self.failed("delete", profile, err)),
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_keep_services_and_profiles_apart() {
        let a = KeyutilsStore::new("a:b").description("c");
        let b = KeyutilsStore::new("a").description("b_c");
        assert_eq!(a, "graphbroker:a:b:c");
        assert_ne!(a, b);
        assert!(KeyutilsStore::new("svc").checked_description("b:c").is_err());
        assert!(KeyutilsStore::new("svc").checked_description("").is_err());
    }

    #[test]
    fn the_mask_grants_the_possessor_only() {
        let mask = KeyPermissionsBuilder::builder().posessor(Permission::ALL).build();
        assert_eq!(mask.bits(), POSSESSOR_ONLY);
    }

    #[test]
    fn quota_errors_say_what_to_do() {
        let err = KeyutilsStore::new("svc").failed("create", "work", KeyError::QuotaExceeded);
        assert!(err.to_string().contains("kernel.keys.maxbytes"), "{err}");
    }
}
