//! The fake's users: who they are, derived from their sign-in name so that ids are stable across runs.

use serde::Serialize;

use crate::ids::deterministic_guid;

/// A user of one of the fake's tenants. The object id is derived from tenant and email so it is stable across runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    /// Sign-in name and UPN, lowercased.
    pub email: String,
    /// Object id (`oid`), also Graph's `id` and `client_info`'s `uid`.
    pub oid: String,
    /// The user's home tenant (`tid`, `client_info`'s `utid`).
    pub tenant_id: String,
    pub display_name: String,
    pub given_name: String,
    pub surname: String,
}

impl UserInfo {
    pub(crate) fn from_email(email: &str, tenant_id: &str) -> Self {
        let email = email.trim().to_ascii_lowercase();
        let local = email.split('@').next().unwrap_or_default();
        let words: Vec<String> = local.split(['.', '_', '-']).filter(|w| !w.is_empty()).map(capitalize).collect();
        let given_name = words.first().cloned().unwrap_or_default();
        let surname = words.get(1..).map(|rest| rest.join(" ")).unwrap_or_default();
        Self {
            oid: deterministic_guid(&format!("{tenant_id}/{email}")),
            tenant_id: tenant_id.to_owned(),
            display_name: words.join(" "),
            given_name,
            surname,
            email,
        }
    }
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}
