//! What the store tests share: the environment variable that makes a missing keychain a failure, the guard that
//! deletes a test's entries, and the account they store.

#![allow(dead_code, reason = "each test binary uses its own part of the support code")]

use graphbroker_store::{AccountRecord, SecretStore, SecretString, StoredAccount};

/// `required` makes a test fail where the keychain cannot be used, instead of passing after saying why.
pub const REQUIRED_ENV: &str = "GRAPHBROKER_TEST_KEYCHAIN";

/// A store on a service name used by one test only, and the profiles it wrote, deleted on drop.
pub struct Scratch<S: SecretStore> {
    pub store: S,
    pub profiles: Vec<&'static str>,
}

impl<S: SecretStore> Drop for Scratch<S> {
    fn drop(&mut self) {
        for profile in &self.profiles {
            let _ = self.store.delete(profile);
        }
    }
}

pub fn stored(token: &str) -> StoredAccount {
    StoredAccount {
        refresh_token: SecretString::from(token),
        account: AccountRecord {
            username: "adele@contoso.com".into(),
            home_account_id: "00000000-0000-0000-0000-000000000001.00000000-0000-0000-0000-00000000000a".into(),
            tenant_id: "00000000-0000-0000-0000-00000000000a".into(),
            authority: "https://login.microsoftonline.com/contoso.onmicrosoft.com".into(),
            client_id: "14d82eec-204b-4c2f-b7e8-296a70dab67e".into(),
            granted_scopes: vec!["https://graph.microsoft.com/User.Read".into(), "offline_access".into()],
            refreshed_at: None,
            session_ended: None,
        },
    }
}
