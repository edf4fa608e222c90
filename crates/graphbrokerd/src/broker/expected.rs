//! Which account a sign-in must bring back, and the refusal when it brings another.
//!
//! A sign-in started by a token request (on demand) answers a tool that asked for *this profile's* account:
//! the one already signed in (or whose session just ended), and the one `login_hint` names. If the person at the
//! browser or device-code page signs in as someone else — a shared machine, a remembered account picked by
//! mistake, or a forged sign-in finished by another user — the tools would silently get another account's
//! tokens. So such a sign-in is refused with `account_mismatch` and nothing is stored. A sign-in asked for with
//! `POST /v1/signin` is the user choosing an account deliberately and is not checked.

use graphbroker_protocol::ErrorCode;
use graphbroker_store::AccountRecord;

use crate::error::ApiError;
use crate::idp::Identity;

/// Who a sign-in is expected to return. Empty: anyone.
#[derive(Debug, Clone, Copy, Default)]
pub struct ExpectedAccount<'a> {
    /// The profile's account: signed in now, or whose session the platform ended.
    pub stored: Option<&'a AccountRecord>,
    /// The profile's `login_hint`.
    pub login_hint: Option<&'a str>,
}

impl ExpectedAccount<'_> {
    /// `Ok` when `returned` is every account expected; `account_mismatch` naming both when it is not.
    pub fn check(&self, returned: Option<&Identity>) -> Result<(), ApiError> {
        let wanted = self.stored.map(|r| r.username.as_str()).or(self.login_hint);
        let Some(wanted) = wanted else { return Ok(()) };
        let Some(returned) = returned else {
            return Err(ApiError::new(
                ErrorCode::AccountMismatch,
                format!(
                    "the identity platform did not say which account signed in, and this profile is for {wanted}; \
                     nothing was stored: ask again and sign in as {wanted}"
                ),
            ));
        };
        if let Some(stored) = self.stored
            && !same_account(stored, returned)
        {
            return Err(mismatch(
                &stored.username,
                returned,
                "the account signed in to this profile",
                "run `graphbroker-client signout` then `graphbroker-client signin` to switch accounts deliberately",
            ));
        }
        if let Some(hint) = self.login_hint
            && !returned.username.eq_ignore_ascii_case(hint)
        {
            return Err(mismatch(
                hint,
                returned,
                "the profile's login_hint",
                "run `graphbroker-client signin` to sign in as another account deliberately, or change login_hint",
            ));
        }
        Ok(())
    }
}

/// The same account: the same home account id (object id and tenant) when both are known, else the same
/// username (case-insensitive, as Entra compares them).
fn same_account(stored: &AccountRecord, returned: &Identity) -> bool {
    if !stored.home_account_id.is_empty() && !returned.home_account_id.is_empty() {
        return stored.home_account_id == returned.home_account_id;
    }
    stored.username.eq_ignore_ascii_case(&returned.username)
}

fn mismatch(expected: &str, returned: &Identity, whose: &str, switch: &str) -> ApiError {
    ApiError::new(
        ErrorCode::AccountMismatch,
        format!(
            "the sign-in returned the account {returned}, but this profile expects {expected} ({whose}); nothing was \
             stored: ask again and sign in as {expected}, or {switch}",
            returned = returned.username,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(username: &str, home: &str) -> Identity {
        Identity { username: username.into(), home_account_id: home.into(), tenant_id: "t".into() }
    }

    fn record(username: &str, home: &str) -> AccountRecord {
        AccountRecord {
            username: username.into(),
            home_account_id: home.into(),
            tenant_id: "t".into(),
            authority: "https://login.microsoftonline.com/common".into(),
            client_id: "c".into(),
            granted_scopes: vec![],
            refreshed_at: None,
            session_ended: None,
        }
    }

    #[test]
    fn nothing_expected_accepts_anyone() {
        assert_eq!(ExpectedAccount::default().check(Some(&identity("bob@x", "b.t"))), Ok(()));
        assert_eq!(ExpectedAccount::default().check(None), Ok(()));
    }

    #[test]
    fn the_stored_account_is_matched_by_home_account_id_then_username() {
        let alice = record("alice@x", "a.t");
        let expected = ExpectedAccount { stored: Some(&alice), login_hint: None };
        assert_eq!(expected.check(Some(&identity("Alice@X", "a.t"))), Ok(()));
        // A renamed account is still the same account.
        assert_eq!(expected.check(Some(&identity("alice.new@x", "a.t"))), Ok(()));
        let error = expected.check(Some(&identity("bob@x", "b.t"))).unwrap_err();
        assert_eq!(error.code(), ErrorCode::AccountMismatch);
        assert!(error.0.message.contains("bob@x") && error.0.message.contains("alice@x"), "{}", error.0.message);
        assert!(error.0.message.contains("graphbroker-client signout"), "{}", error.0.message);
        let without_ids = record("alice@x", "");
        let expected = ExpectedAccount { stored: Some(&without_ids), login_hint: None };
        assert_eq!(expected.check(Some(&identity("ALICE@x", "a.t"))), Ok(()));
        assert!(expected.check(Some(&identity("bob@x", "a.t"))).is_err());
    }

    #[test]
    fn the_login_hint_is_matched_by_username() {
        let expected = ExpectedAccount { stored: None, login_hint: Some("alice@x") };
        assert_eq!(expected.check(Some(&identity("ALICE@x", "a.t"))), Ok(()));
        let error = expected.check(Some(&identity("bob@x", "b.t"))).unwrap_err();
        assert_eq!(error.code(), ErrorCode::AccountMismatch);
        assert!(error.0.message.contains("login_hint") && error.0.message.contains("graphbroker-client signin"));
        let unknown = expected.check(None).unwrap_err();
        assert_eq!(unknown.code(), ErrorCode::AccountMismatch);
    }
}
