//! Where graphbrokerd keeps each profile's refresh token and account record.
//!
//! **This crate is the only code in the project that touches the keychain.** Everything else reaches it through
//! [`SecretStore`], so the daemon can be tested with [`MemoryStore`] and the keychain's failure modes (absent,
//! locked, corrupt entry) are turned into [`StoreError`] in one place, with messages that say what to do.
//!
//! The stores:
//!
//! - [`KeyringStore`]: the OS keychain through the `keyring` crate (Secret Service on Linux and the BSDs, Keychain on
//!   macOS). One entry per profile, keyed by `(service, profile)`; on the Secret Service that is an item with the
//!   attributes `service = <service>` and `username = <profile>`, in the default collection.
//! - [`KeyutilsStore`] (Linux): the kernel keyring, one possessor-only `user` key per profile in the user keyring,
//!   described `graphbroker:<service>:<profile>`. Survives a daemon restart, not a reboot.
//! - [`AutoStore`]: the keychain when it answers, else the kernel keyring, chosen once per profile so that a stored
//!   sign-in is never left behind (its module docs give the rule).
//! - [`MemoryStore`]: process memory, lost when the daemon stops. Only ever used when a profile asks for it.
//!
//! There is no plaintext file store, by design.
//!
//! The entry's secret is a small versioned JSON document, `{"v":1,"refresh_token":"…","account":{…}}`, so the
//! account record travels with the token it belongs to and a rotation replaces both at once.
//!
//! All methods block (the Secret Service is a D-Bus round trip, and may wait on an unlock prompt): call them from
//! `tokio::task::spawn_blocking` or another thread that may block.
//!
//! Tokens never appear in an error, a log line or a `Debug` print: [`StoredAccount`] holds the refresh token in a
//! [`SecretString`], and the serialized entry is zeroized after use.

mod auto;
mod error;
mod keychain;
#[cfg(target_os = "linux")]
mod keyutils;
mod memory;
mod record;

pub use auto::AutoStore;
pub use error::StoreError;
pub use graphbroker_protocol::StoreKind;
pub use keychain::KeyringStore;
#[cfg(target_os = "linux")]
pub use keyutils::{DESCRIPTION_PREFIX, KeyutilsStore, POSSESSOR_ONLY};
pub use memory::MemoryStore;
pub use record::{AccountRecord, SessionEnded, StoredAccount};
pub use secrecy::{ExposeSecret, SecretString};

/// The keychain service name the daemon files its entries under, one entry per profile.
///
/// A fixed, recognisable name: a user looking through Seahorse or Keychain Access (or `secret-tool search service
/// graphbroker`) can tell what the entries are, and a new daemon version finds the entries an older one wrote. The
/// daemon's `keyring_service` setting overrides it, so that tests and several daemons can share one keychain without
/// seeing each other's accounts.
pub const DEFAULT_SERVICE: &str = "graphbroker";

/// A place that keeps one [`StoredAccount`] per profile.
///
/// Every method blocks; see the crate documentation.
pub trait SecretStore: Send + Sync + std::fmt::Debug {
    /// Which kind of store this is, for `status`.
    fn kind(&self) -> StoreKind;

    /// Checks, cheaply and without writing anything, that the store can be reached at all right now.
    ///
    /// `Ok` does not promise that a later `save` succeeds: a keychain that is reachable but locked is only found out
    /// when an entry is read or written, because looking up an entry that does not exist needs no unlock.
    fn probe(&self) -> Result<(), StoreError>;

    /// The profile's account, or `None` when the profile has none.
    fn load(&self, profile: &str) -> Result<Option<StoredAccount>, StoreError>;

    /// Stores the profile's account, replacing any earlier one (a rotated refresh token replaces the old).
    fn save(&self, profile: &str, account: &StoredAccount) -> Result<(), StoreError>;

    /// Forgets the profile's account. `true` when there was one to delete.
    fn delete(&self, profile: &str) -> Result<bool, StoreError>;

    /// For a store that picks another store per profile ([`AutoStore`]): the one it picked for `profile`, and
    /// why. `None` for a store that is what [`SecretStore::kind`] says, and before the choice is made.
    fn chosen(&self, _profile: &str) -> Option<StoreChoice> {
        None
    }
}

/// The store an [`AutoStore`] picked for a profile, and why, for `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreChoice {
    pub kind: StoreKind,
    pub reason: String,
}
