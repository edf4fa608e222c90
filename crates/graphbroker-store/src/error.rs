//! Store errors. Messages are lowercase, say what to do next, and never contain a token: the keychain's own error
//! values are described by kind, never printed with `Debug` (some of them carry the secret's bytes).

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be used right now: no keychain service, no session bus, a locked keychain, access refused.
    /// `message` says what to do.
    #[error("keychain unavailable: {message}")]
    Unavailable { message: String },

    /// The profile's entry exists but cannot be read as an account. Signing out deletes it.
    #[error(
        "the keychain entry of profile {profile} cannot be read: {message}; sign out of the profile and sign in \
         again to replace it"
    )]
    Corrupt { profile: String, message: String },

    /// The keychain refused the operation for another reason (an ambiguous or oversized entry, an unsupported
    /// request). `message` says what happened and, where the user can act, what to do.
    #[error("keychain error: {message}")]
    Failed { message: String },
}
