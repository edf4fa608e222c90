//! A store in process memory: the explicit opt-in for machines without a keychain, and the test double.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use graphbroker_protocol::StoreKind;

use crate::{SecretStore, StoreError, StoredAccount};

/// Keeps accounts in memory only: everything is lost when the process exits, so the user signs in again after
/// every restart. Never chosen silently in place of an unavailable keychain; a profile has to ask for it.
#[derive(Debug, Default)]
pub struct MemoryStore {
    accounts: Mutex<HashMap<String, StoredAccount>>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    fn accounts(&self) -> MutexGuard<'_, HashMap<String, StoredAccount>> {
        // No operation leaves the map half-updated, so a panic elsewhere while holding the lock leaves it usable.
        self.accounts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SecretStore for MemoryStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Memory
    }

    fn probe(&self) -> Result<(), StoreError> {
        Ok(())
    }

    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError> {
        Ok(self.accounts().get(profile).cloned())
    }

    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError> {
        self.accounts().insert(profile.to_owned(), account.clone());
        Ok(())
    }

    fn delete(&self, profile: &str) -> Result<bool, StoreError> {
        Ok(self.accounts().remove(profile).is_some())
    }
}

#[cfg(test)]
mod tests {
    use secrecy::{ExposeSecret, SecretString};

    use super::*;
    use crate::AccountRecord;

    fn stored(token: &str, user: &str) -> StoredAccount {
        StoredAccount {
            refresh_token: SecretString::from(token),
            account: AccountRecord {
                username: user.into(),
                home_account_id: "oid.tid".into(),
                tenant_id: "tid".into(),
                authority: "https://login.microsoftonline.com/common".into(),
                client_id: "client".into(),
                granted_scopes: vec!["User.Read".into()],
                refreshed_at: None,
                session_ended: None,
            },
        }
    }

    #[test]
    fn save_load_overwrite_delete() {
        let store = MemoryStore::new();
        assert_eq!(store.kind(), StoreKind::Memory);
        store.probe().unwrap();
        assert!(store.load("work").unwrap().is_none());

        store.save("work", &stored("rt-1", "adele@contoso.com")).unwrap();
        let loaded = store.load("work").unwrap().unwrap();
        assert_eq!(loaded.refresh_token.expose_secret(), "rt-1");
        assert_eq!(loaded.account.username, "adele@contoso.com");

        store.save("work", &stored("rt-2", "adele@contoso.com")).unwrap();
        assert_eq!(store.load("work").unwrap().unwrap().refresh_token.expose_secret(), "rt-2");

        assert!(store.delete("work").unwrap());
        assert!(!store.delete("work").unwrap());
        assert!(store.load("work").unwrap().is_none());
    }

    #[test]
    fn profiles_are_separate() {
        let store = MemoryStore::new();
        store.save("a", &stored("rt-a", "a@x")).unwrap();
        store.save("b", &stored("rt-b", "b@x")).unwrap();
        assert!(store.delete("a").unwrap());
        assert_eq!(store.load("b").unwrap().unwrap().refresh_token.expose_secret(), "rt-b");
    }

    #[test]
    fn debug_redacts_tokens() {
        let store = MemoryStore::new();
        store.save("work", &stored("very-secret-rt", "adele@contoso.com")).unwrap();
        let printed = format!("{store:?}");
        assert!(!printed.contains("very-secret-rt"), "{printed}");
    }

    #[test]
    fn usable_as_a_trait_object() {
        let store: Box<dyn SecretStore> = Box::new(MemoryStore::new());
        store.save("p", &stored("rt", "u")).unwrap();
        assert!(store.load("p").unwrap().is_some());
    }
}
