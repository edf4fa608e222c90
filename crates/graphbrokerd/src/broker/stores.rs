//! Where the refresh tokens are kept: the [`StoreFactory`] seam, the real stores behind it, and the set of stores
//! one configuration opens.

use std::sync::Arc;

use graphbroker_protocol::StoreKind;
#[cfg(not(target_os = "linux"))]
use graphbroker_store::StoreError;
use graphbroker_store::{AutoStore, KeyringStore, MemoryStore, SecretStore};

use super::persist::Persistence;

/// Where the refresh tokens are kept: the factory the broker opens its stores with.
pub trait StoreFactory: Send + Sync + std::fmt::Debug {
    /// The store of `kind`; `keyring_service` names the keychain service entries are filed under.
    fn open(&self, kind: StoreKind, keyring_service: &str) -> Arc<dyn SecretStore>;
}

/// The real stores: the OS keychain, and one process-wide memory store (which outlives reloads).
#[derive(Debug, Default)]
pub struct SystemStores {
    memory: Arc<MemoryStore>,
}

impl StoreFactory for SystemStores {
    fn open(&self, kind: StoreKind, keyring_service: &str) -> Arc<dyn SecretStore> {
        match kind {
            StoreKind::Keyring => Arc::new(KeyringStore::new(keyring_service)),
            StoreKind::Memory => self.memory.clone(),
            StoreKind::Keyutils => keyutils(keyring_service),
            StoreKind::Auto => Arc::new(AutoStore::system(keyring_service)),
        }
    }
}

#[cfg(target_os = "linux")]
fn keyutils(keyring_service: &str) -> Arc<dyn SecretStore> {
    Arc::new(graphbroker_store::KeyutilsStore::new(keyring_service))
}

/// Config refuses `store = "keyutils"` off Linux; this is only reached if that check is bypassed.
#[cfg(not(target_os = "linux"))]
fn keyutils(_keyring_service: &str) -> Arc<dyn SecretStore> {
    Arc::new(UnavailableStore(StoreKind::Keyutils))
}

/// A store that exists on other platforms only: every operation says so.
#[cfg(not(target_os = "linux"))]
#[derive(Debug)]
struct UnavailableStore(StoreKind);

#[cfg(not(target_os = "linux"))]
impl SecretStore for UnavailableStore {
    fn kind(&self) -> StoreKind {
        self.0
    }
    fn probe(&self) -> Result<(), StoreError> {
        Err(StoreError::Unavailable {
            message: "the kernel keyring exists on Linux only: choose store = \"auto\" or \"keyring\"".into(),
        })
    }
    fn load(&self, _: &str) -> Result<Option<graphbroker_store::StoredAccount>, StoreError> {
        Err(self.probe().unwrap_err())
    }
    fn save(&self, _: &str, _: &graphbroker_store::StoredAccount) -> Result<(), StoreError> {
        Err(self.probe().unwrap_err())
    }
    fn delete(&self, _: &str) -> Result<bool, StoreError> {
        Err(self.probe().unwrap_err())
    }
}

/// The stores of one configuration: the keychain, the kernel keyring and the automatic choice between them under
/// its service name, and the memory store.
#[derive(Debug, Clone)]
pub(super) struct StoreSet {
    pub(super) keyring_service: String,
    keyring: Arc<Persistence>,
    keyutils: Arc<Persistence>,
    /// One per service name, so that its per-profile choices hold across reloads that keep the name.
    auto: Arc<Persistence>,
    pub(super) memory: Arc<Persistence>,
}

impl StoreSet {
    /// The stores for `keyring_service`, sharing `memory` (which outlives reloads).
    pub(super) fn open(stores: &dyn StoreFactory, keyring_service: &str, memory: Option<Arc<Persistence>>) -> StoreSet {
        let open = |kind| Arc::new(Persistence::new(stores.open(kind, keyring_service)));
        StoreSet {
            keyring_service: keyring_service.to_owned(),
            keyring: open(StoreKind::Keyring),
            keyutils: open(StoreKind::Keyutils),
            auto: open(StoreKind::Auto),
            memory: memory.unwrap_or_else(|| open(StoreKind::Memory)),
        }
    }

    pub(super) fn for_kind(&self, kind: StoreKind) -> Arc<Persistence> {
        match kind {
            StoreKind::Keyring => self.keyring.clone(),
            StoreKind::Memory => self.memory.clone(),
            StoreKind::Keyutils => self.keyutils.clone(),
            StoreKind::Auto => self.auto.clone(),
        }
    }
}
