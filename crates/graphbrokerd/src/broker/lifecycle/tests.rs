//! Transitions of the profile state machine, one rule per test.

use std::time::Duration;

use graphbroker_protocol::SignInReason;
use graphbroker_store::{StoreError, StoredAccount};
use secrecy::{ExposeSecret, SecretString};

use super::*;
use crate::broker::entries::CachedToken;
use crate::clock::Clock as _;
use crate::config::Config;
use crate::testing::record;

fn profile() -> Profile {
    Config::defaults().profiles["default"].clone()
}

fn stored(rt: &str) -> StoredAccount {
    StoredAccount { refresh_token: SecretString::from(rt), account: record(&profile(), "adele@contoso.com") }
}

/// A state signed in with `rt`, saved.
fn active(rt: &str) -> ProfileState {
    let mut state = ProfileState::default();
    state.loaded(&profile(), Ok(Some(stored(rt)))).unwrap();
    state
}

fn token() -> CachedToken {
    CachedToken::issued(
        SecretString::from("at"),
        vec![],
        Duration::from_secs(3600),
        None,
        Duration::ZERO,
        crate::clock::SystemClock.read(),
    )
}

fn refresh_token(state: &ProfileState) -> String {
    match &state.account {
        AccountState::Active { refresh_token, .. } => refresh_token.expose_secret().to_owned(),
        other => panic!("not active: {other:?}"),
    }
}

fn persisted(state: &ProfileState) -> Persisted {
    match &state.account {
        AccountState::Active { persisted, .. } => persisted.clone(),
        other => panic!("not active: {other:?}"),
    }
}

#[test]
fn a_load_of_this_profiles_account_makes_it_active_and_saved() {
    let state = active("rt-0");
    assert_eq!(refresh_token(&state), "rt-0");
    assert_eq!(persisted(&state), Persisted::Saved);
    assert_eq!(state.record().unwrap().username, "adele@contoso.com");
    assert!(state.is_loaded());
}

#[test]
fn a_load_of_nothing_another_apps_account_or_a_corrupt_entry_is_empty() {
    let mut other_app = stored("rt");
    other_app.account.client_id = "someone-else".into();
    let corrupt = Err(StoreError::Corrupt { profile: "default".into(), message: "not JSON".into() });
    for result in [Ok(None), Ok(Some(other_app)), corrupt] {
        let mut state = ProfileState::default();
        state.loaded(&profile(), result).unwrap();
        assert!(matches!(state.account, AccountState::Empty), "{:?}", state.account);
    }
}

#[test]
fn a_failed_load_stays_unloaded_with_the_error_and_a_late_load_changes_nothing() {
    let mut state = ProfileState::default();
    let unavailable = StoreError::Unavailable { message: "no Secret Service".into() };
    assert!(state.loaded(&profile(), Err(unavailable)).is_err());
    assert!(!state.is_loaded());
    assert!(state.store_error().unwrap().contains("no Secret Service"), "{:?}", state.store_error());

    let mut state = active("rt-0");
    state.loaded(&profile(), Ok(None)).unwrap();
    assert_eq!(refresh_token(&state), "rt-0", "a second read does not overwrite the first");
}

#[tokio::test]
async fn a_grant_is_the_refresh_token_of_this_generation_or_why_there_is_none() {
    let state = active("rt-0");
    match state.grant() {
        RefreshGrant::Ready { refresh_token, generation } => {
            assert_eq!(refresh_token.expose_secret(), "rt-0");
            assert_eq!(generation, state.generation);
        }
        other => panic!("{other:?}"),
    }
    let mut empty = ProfileState::default();
    empty.loaded(&profile(), Ok(None)).unwrap();
    assert!(matches!(empty.grant(), RefreshGrant::NeedSignIn(SignInReason::NoAccount)));
    empty.signin = Some(SignIn::idle(1, SignInReason::ConsentRequired));
    assert!(matches!(empty.grant(), RefreshGrant::NeedSignIn(SignInReason::ConsentRequired)), "the sign-in's reason");
    let mut retired = active("rt-0");
    retired.retire();
    assert!(matches!(retired.grant(), RefreshGrant::Retired));
}

#[test]
fn an_accepted_refresh_rotates_the_token_and_asks_for_its_write() {
    let mut state = active("rt-0");
    let generation = state.generation;
    let write =
        state.accept_refresh(generation, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap().unwrap();
    assert_eq!(write.generation, generation);
    assert_eq!(write.account.refresh_token.expose_secret(), "rt-1");
    assert_eq!(refresh_token(&state), "rt-1");
    assert_eq!(persisted(&state), Persisted::Writing { seq: write.seq });
    assert!(
        state.accept_refresh(generation, None, SystemTime::UNIX_EPOCH).unwrap().is_none(),
        "no new token, nothing to write"
    );
}

#[tokio::test]
async fn a_refresh_of_an_older_generation_is_stale_even_once_someone_is_signed_in_again() {
    let mut state = active("rt-0");
    let generation = state.generation;
    state.forget(None).unwrap();
    assert_eq!(
        state.accept_refresh(generation, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap_err(),
        Stale
    );
    assert!(matches!(state.account, AccountState::Empty), "the sign-out stands");

    state.signin = Some(SignIn::idle(1, SignInReason::NoAccount));
    assert!(state.complete_signin(1, stored("rt-new"), Persisted::Saved));
    assert_eq!(
        state.accept_refresh(generation, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap_err(),
        Stale
    );
    assert_eq!(refresh_token(&state), "rt-new", "the newer sign-in's token stands");
}

#[test]
fn saved_is_set_only_by_the_write_of_the_token_in_memory() {
    let mut state = active("rt-0");
    let g = state.generation;
    let first = state.accept_refresh(g, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap().unwrap();
    let second = state.accept_refresh(g, Some(SecretString::from("rt-2")), SystemTime::UNIX_EPOCH).unwrap().unwrap();
    state.write_finished(g, first.seq, Some(&Ok(())));
    assert_eq!(persisted(&state), Persisted::Writing { seq: second.seq }, "rt-2 is not saved by rt-1's write");
    let failed = Err(StoreError::Unavailable { message: "locked".into() });
    state.write_finished(g, first.seq, Some(&failed));
    assert_eq!(persisted(&state), Persisted::Writing { seq: second.seq }, "an older write's failure is moot");
    state.write_finished(g, second.seq, Some(&Ok(())));
    assert_eq!(persisted(&state), Persisted::Saved);
}

#[test]
fn a_failed_write_blocks_serving_until_a_retried_write_succeeds() {
    let mut state = active("rt-0");
    assert!(state.retry_write().is_none(), "nothing to retry while saved");
    let g = state.generation;
    let write = state.accept_refresh(g, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap().unwrap();
    state.write_finished(g, write.seq, Some(&Err(StoreError::Unavailable { message: "locked".into() })));
    assert!(state.write_failed().unwrap().contains("locked"));
    assert_eq!(state.store_error(), state.write_failed());
    let retry = state.retry_write().unwrap();
    assert_eq!(retry.account.refresh_token.expose_secret(), "rt-1");
    assert!(state.write_failed().is_none(), "writing again");
    state.write_finished(g, retry.seq, Some(&Ok(())));
    assert_eq!(persisted(&state), Persisted::Saved);
}

#[test]
fn a_write_of_another_generation_changes_nothing() {
    let mut state = active("rt-0");
    let g = state.generation;
    let write = state.accept_refresh(g, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH).unwrap().unwrap();
    let (mut next, _) = state.carry_over();
    next.write_finished(g, write.seq, Some(&Ok(())));
    assert!(matches!(persisted(&next), Persisted::Failed { .. }), "the old slot's write does not save the new one");
}

#[test]
fn a_token_is_cached_only_for_the_current_account() {
    let mut state = active("rt-0");
    let g = state.generation;
    assert!(state.cache(g, "k", token()));
    assert!(!state.cache(g + 1, "k", token()));
    state.forget(None).unwrap();
    assert_eq!(state.entries.live_tokens(state.entries.now()).count(), 0);
    assert!(!state.cache(g, "k", token()), "not after a sign-out");
}

#[test]
fn forgetting_empties_the_account_and_its_tokens_in_a_new_generation() {
    let mut state = active("rt-0");
    let g = state.generation;
    state.cache(g, "a", token());
    state.cache(g, "b", token());
    let forgotten = state.forget(None).unwrap();
    assert_eq!(forgotten.record.unwrap().username, "adele@contoso.com");
    assert_eq!(forgotten.tokens_dropped, 2);
    assert_eq!(state.generation, g + 1);
    assert!(matches!(state.account, AccountState::Empty));
    assert!(state.forget(None).unwrap().record.is_none(), "signing out twice drops nothing more");
}

#[test]
fn a_dead_grant_of_an_older_generation_does_not_sign_out_a_newer_account() {
    let mut state = active("rt-0");
    let old = state.generation;
    state.forget(None).unwrap();
    assert!(state.forget(Some(old)).is_none());
    assert!(state.forget(Some(state.generation)).is_some());
}

#[tokio::test]
async fn a_completed_sign_in_becomes_the_account_only_while_it_is_the_profiles() {
    let mut state = ProfileState::default();
    state.loaded(&profile(), Ok(None)).unwrap();
    state.signin = Some(SignIn::idle(7, SignInReason::NoAccount));
    assert!(!state.signin_is(6));
    assert!(!state.complete_signin(6, stored("rt-other"), Persisted::Saved), "another sign-in's result");
    let g = state.generation;
    assert!(state.signin_is(7));
    assert!(state.complete_signin(7, stored("rt-1"), Persisted::Saved));
    assert_eq!(state.generation, g + 1);
    assert_eq!(refresh_token(&state), "rt-1");
    assert_eq!(persisted(&state), Persisted::Saved);

    let mut unsaved = ProfileState::default();
    unsaved.loaded(&profile(), Ok(None)).unwrap();
    unsaved.signin = Some(SignIn::idle(9, SignInReason::NoAccount));
    assert!(unsaved.complete_signin(9, stored("rt-1"), Persisted::Failed { error: "locked".into() }));
    assert_eq!(unsaved.write_failed(), Some("locked"), "kept in memory, unsaved: nothing served until written");

    let mut cancelled = ProfileState::default();
    cancelled.loaded(&profile(), Ok(None)).unwrap();
    cancelled.signin = Some(SignIn::idle(8, SignInReason::NoAccount));
    cancelled.signin.take().unwrap().cancel("signed out");
    assert!(!cancelled.signin_is(8));
    assert!(
        !cancelled.complete_signin(8, stored("rt-1"), Persisted::Saved),
        "a cancelled sign-in completes into nothing"
    );
    assert!(matches!(cancelled.account, AccountState::Empty));
}

#[tokio::test]
async fn a_sign_in_over_an_active_account_replaces_it_and_its_tokens() {
    let mut state = active("rt-0");
    state.cache(state.generation, "k", token());
    state.signin = Some(SignIn::idle(1, SignInReason::ConsentRequired));
    assert!(state.complete_signin(1, stored("rt-1"), Persisted::Saved));
    assert_eq!(refresh_token(&state), "rt-1");
    assert_eq!(state.entries.live_tokens(state.entries.now()).count(), 0);
}

#[tokio::test]
async fn retiring_drops_everything_and_hands_back_the_sign_in() {
    let mut state = active("rt-0");
    let g = state.generation;
    state.cache(g, "k", token());
    state.signin = Some(SignIn::idle(3, SignInReason::NoAccount));
    let signin = state.retire().unwrap();
    assert_eq!(signin.id, 3);
    assert!(matches!(state.account, AccountState::Retired));
    assert_eq!(state.generation, g + 1);
    assert_eq!(state.entries.live_tokens(state.entries.now()).count(), 0);
    assert!(state.forget(None).is_none(), "a retired slot is not signed out");
    state.signin = Some(SignIn::idle(4, SignInReason::NoAccount));
    assert!(!state.complete_signin(4, stored("rt-1"), Persisted::Saved), "nor signed in");
}

#[tokio::test]
async fn carrying_over_moves_the_account_without_its_tokens_and_retires_the_old_slot() {
    let mut state = active("rt-0");
    let g = state.generation;
    state.cache(g, "k", token());
    state.signin = Some(SignIn::idle(5, SignInReason::ConsentRequired));
    let (next, signin) = state.carry_over();
    assert_eq!(signin.unwrap().id, 5, "the old slot's sign-in is handed back to be cancelled");
    assert_eq!(refresh_token(&next), "rt-0");
    assert_eq!(persisted(&next), Persisted::Saved);
    assert_eq!(next.entries.live_tokens(next.entries.now()).count(), 0);
    assert!(next.signin.is_none());
    assert!(next.generation > g);
    assert!(matches!(state.account, AccountState::Retired));
    assert!(matches!(state.accept_refresh(g, Some(SecretString::from("rt-1")), SystemTime::UNIX_EPOCH), Err(Stale)));
}
