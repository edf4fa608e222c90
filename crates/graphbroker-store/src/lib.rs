//! Where graphbrokerd keeps each profile's refresh token and account record.
//!
//! **This crate is the only code in the project that touches the keychain.** Everything else reaches it through
//! [`SecretStore`], so the daemon can be tested with [`MemoryStore`] and the keychain's failure modes (absent,
//! locked, corrupt entry) are turned into [`StoreError`] in one place, with messages that say what to do.
//!
//! Two stores:
//!
//! - [`KeyringStore`]: the OS keychain through the `keyring` crate (Secret Service on Linux and the BSDs, Keychain on
//!   macOS). One entry per profile, keyed by `(service, profile)`; on the Secret Service that is an item with the
//!   attributes `service = <service>` and `username = <profile>`, in the default collection.
//! - [`MemoryStore`]: process memory, lost when the daemon stops. Only ever used when a profile asks for it.
//!
//! The entry's secret is a small versioned JSON document, `{"v":1,"refresh_token":"…","account":{…}}`, so the
//! account record travels with the token it belongs to and a rotation replaces both at once.
//!
//! All methods block (the Secret Service is a D-Bus round trip, and may wait on an unlock prompt): call them from
//! `tokio::task::spawn_blocking` or another thread that may block.
//!
//! Tokens never appear in an error, a log line or a `Debug` print: [`StoredAccount`] holds the refresh token in a
//! [`SecretString`], and the serialized entry is zeroized after use.

mod error;
mod keychain;
mod memory;
mod record;

pub use error::StoreError;
pub use graphbroker_protocol::StoreKind;
pub use keychain::KeyringStore;
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
}
