//! What the broker keeps per scope set of one profile, in one bounded map: the cached access token, the
//! single-flight lock of its refresh, and the mark of a background refresh under way.
//!
//! Access tokens live here only — never on disk. Validity is measured on tokio's clock (so tests can pause
//! it); the wall-clock expiry is kept alongside for what clients are told. Each cached token also keeps its
//! serialized answers ([`SharedAnswers`]), so that a hit hands out shared bytes instead of serializing again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

/// How long before a caller would stop accepting a token (its `min_valid`) the daemon refreshes it in the
/// background, so that a client asking often never waits on the network.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(120);

/// One access token and what it is good for.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: SecretString,
    /// Resource-qualified scopes the token carries.
    pub scopes: Vec<String>,
    /// Wall-clock expiry, reported to clients.
    pub expires_at: SystemTime,
    /// Expiry on tokio's clock, used for every validity decision.
    pub valid_until: Instant,
    /// From when a cache hit also refreshes the token in the background.
    pub refresh_at: Instant,
    /// The answers serialized for this token, shared by every clone of it: they go when the token goes.
    pub answers: Arc<SharedAnswers>,
}

impl CachedToken {
    /// A token issued now that lives `lifetime`. It becomes due for a background refresh [`REFRESH_AHEAD`]
    /// before it would fall short of `min_valid`, but not before half its life (a short-lived token would
    /// otherwise be refreshed on every hit), or when the platform's `refresh_in` says, whichever comes first.
    pub fn issued_now(
        access_token: SecretString,
        scopes: Vec<String>,
        lifetime: Duration,
        refresh_in: Option<Duration>,
        min_valid: Duration,
    ) -> Self {
        let now = Instant::now();
        let mut refresh_after = lifetime.saturating_sub(min_valid + REFRESH_AHEAD).max(lifetime / 2);
        if let Some(advised) = refresh_in {
            refresh_after = refresh_after.min(advised);
        }
        Self {
            access_token,
            scopes,
            expires_at: SystemTime::now() + lifetime,
            valid_until: now + lifetime,
            refresh_at: now + refresh_after,
            answers: Arc::default(),
        }
    }

    /// Whether a hit should also refresh this token in the background.
    pub fn refresh_due(&self) -> bool {
        Instant::now() >= self.refresh_at
    }

    /// Time left before expiry (zero once expired).
    pub fn remaining(&self) -> Duration {
        self.valid_until.saturating_duration_since(Instant::now())
    }
}

/// The serialized `/v1/token` and `/v1/header` answers of one cached token, made by the first hit that needs
/// them and handed out as clones of the same bytes after that.
///
/// The bytes are owned by a zeroizing buffer (the server makes them, see `server/answer.rs`): they are wiped
/// when the last clone goes, that is when the token is replaced, evicted or dropped (sign-out, a new account)
/// and the answers in flight are sent. The token answer carries `expires_in`, which changes every second, so it
/// is kept with the second it was made for and made again when a hit finds another second; the header answer
/// never changes while the token lives.
#[derive(Default)]
pub struct SharedAnswers {
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    /// The token answer and the `expires_in` it says.
    token: Option<(u64, Bytes)>,
    header: Option<Bytes>,
}

impl SharedAnswers {
    /// The token answer saying `expires_in`, made with `make` unless one for that second is kept.
    pub fn token_answer<E>(&self, expires_in: u64, make: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
        let mut answers = self.answers.lock().expect("answers lock");
        if let Some((said, bytes)) = &answers.token
            && *said == expires_in
        {
            return Ok(bytes.clone());
        }
        let bytes = make()?;
        answers.token = Some((expires_in, bytes.clone()));
        Ok(bytes)
    }

    /// The header answer, made with `make` unless it is kept.
    pub fn header_answer<E>(&self, make: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
        let mut answers = self.answers.lock().expect("answers lock");
        if let Some(bytes) = &answers.header {
            return Ok(bytes.clone());
        }
        let bytes = make()?;
        answers.header = Some(bytes.clone());
        Ok(bytes)
    }
}

impl std::fmt::Debug for SharedAnswers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The bytes carry the token: say only which answers are kept.
        let answers = self.answers.lock().map(|a| (a.token.is_some(), a.header.is_some())).unwrap_or_default();
        f.debug_struct("SharedAnswers").field("token", &answers.0).field("header", &answers.1).finish()
    }
}

/// How many scope sets one profile keeps entries for. A user's tools ask for a handful; the bound keeps a client
/// that invents scope sets from growing the daemon without limit. Past it, the least recently used idle entry goes.
pub const MAX_SCOPE_SETS: usize = 256;

/// What is kept for one scope set.
#[derive(Debug)]
struct ScopeEntry {
    /// The access token served for this scope set, if one is cached.
    token: Option<CachedToken>,
    /// Held while a refresh for this scope set is under way: concurrent misses queue on it and then find the token
    /// it cached, so one refresh answers them all.
    flight: Arc<tokio::sync::Mutex<()>>,
    /// A cache hit has claimed this token's background refresh; no second one starts until it ends.
    refreshing_ahead: bool,
    /// When the entry was last used, for eviction.
    last_used: Instant,
    /// The platform `claims` the cached token was fetched with to answer a claims challenge, and the serial of
    /// that answer ([`ScopeEntries::answers_so_far`]): see [`ScopeEntries::answered`].
    answered: Option<(String, u64)>,
}

impl ScopeEntry {
    fn new() -> Self {
        Self { token: None, flight: Arc::default(), refreshing_ahead: false, last_used: Instant::now(), answered: None }
    }

    /// Nothing depends on this entry but its token: no refresh holds or waits on its lock.
    fn idle(&self) -> bool {
        Arc::strong_count(&self.flight) == 1 && !self.refreshing_ahead
    }
}

/// Every scope set's entry, by scope-set key, at most `capacity` of them (idle ones are evicted first).
#[derive(Debug)]
pub struct ScopeEntries {
    map: HashMap<String, ScopeEntry>,
    capacity: usize,
    /// Challenge answers recorded so far. A request notes the count when it arrives; an answer with a higher
    /// serial came after it. A count, not a time, so that the paused test clock orders them too.
    answers: u64,
}

impl Default for ScopeEntries {
    fn default() -> Self {
        Self::with_capacity(MAX_SCOPE_SETS)
    }
}

impl ScopeEntries {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { map: HashMap::new(), capacity: capacity.max(1), answers: 0 }
    }

    /// The token for `key` if at least `min_valid` of its life remains. An expired token is dropped on the way.
    pub fn token(&mut self, key: &str, min_valid: Duration) -> Option<CachedToken> {
        let entry = self.map.get_mut(key)?;
        entry.last_used = Instant::now();
        let remaining = entry.token.as_ref()?.remaining();
        if remaining.is_zero() {
            entry.token = None;
            return None;
        }
        entry.token.as_ref().filter(|_| remaining >= min_valid).cloned()
    }

    /// Claims the background refresh of `key`'s token if it is due and nobody has claimed it yet.
    pub fn claim_refresh_ahead(&mut self, key: &str) -> bool {
        match self.map.get_mut(key) {
            Some(entry) if !entry.refreshing_ahead && entry.token.as_ref().is_some_and(CachedToken::refresh_due) => {
                entry.refreshing_ahead = true;
                true
            }
            _ => false,
        }
    }

    /// The background refresh of `key` is over, however it went.
    pub fn release_refresh_ahead(&mut self, key: &str) {
        if let Some(entry) = self.map.get_mut(key) {
            entry.refreshing_ahead = false;
        }
    }

    /// The single-flight lock of `key`.
    pub fn flight(&mut self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.entry(key).flight.clone()
    }

    pub fn insert_token(&mut self, key: &str, token: CachedToken) {
        let entry = self.entry(key);
        entry.token = Some(token);
        entry.answered = None;
    }

    /// Records that the token just cached for `key` answers a challenge, sent to the platform as `claims`.
    pub fn note_answered(&mut self, key: &str, claims: &str) {
        self.answers += 1;
        let serial = self.answers;
        self.entry(key).answered = Some((claims.to_owned(), serial));
    }

    /// How many challenge answers have been recorded: what a request arriving now notes.
    pub fn answers_so_far(&self) -> u64 {
        self.answers
    }

    /// The cached token for `key` if it was fetched for exactly these platform `claims`, still has `min_valid`
    /// left, and is known to be newer than the token that was challenged: either it was answered after the asker
    /// arrived (after `seen` answers: the asker queued behind that refresh), or the asker names the token it was
    /// challenged with (`challenged`, as the proxy does) and this is another one. The challenged token itself is
    /// never handed back: the same challenge again may mean a second event in the same second.
    pub fn answered(
        &mut self,
        key: &str,
        claims: &str,
        seen: u64,
        challenged: Option<&str>,
        min_valid: Duration,
    ) -> Option<CachedToken> {
        let (answered, serial) = self.map.get(key)?.answered.as_ref()?;
        if answered != claims {
            return None;
        }
        let after_arrival = *serial > seen;
        let token = self.token(key, min_valid)?;
        let other_token = challenged.is_some_and(|old| old != token.access_token.expose_secret());
        (after_arrival || other_token).then_some(token)
    }

    /// Drops every token (the account changed); returns how many were live. Entries nothing else needs go too.
    pub fn clear_tokens(&mut self) -> usize {
        let live = self.live_tokens().count();
        self.map.retain(|_, entry| {
            entry.token = None;
            entry.answered = None;
            !entry.idle()
        });
        live
    }

    /// Unexpired tokens, for status (callers print scopes and expiry, never the value).
    pub fn live_tokens(&self) -> impl Iterator<Item = &CachedToken> {
        self.map.values().filter_map(|e| e.token.as_ref()).filter(|t| !t.remaining().is_zero())
    }

    /// How many scope sets have an entry.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn entry(&mut self, key: &str) -> &mut ScopeEntry {
        if !self.map.contains_key(key) {
            self.make_room();
        }
        let entry = self.map.entry(key.to_owned()).or_insert_with(ScopeEntry::new);
        entry.last_used = Instant::now();
        entry
    }

    /// Below capacity again: idle entries without a live token go first, then the least recently used idle one.
    /// Entries a refresh holds are never evicted, so the map can exceed its capacity by the refreshes under way.
    fn make_room(&mut self) {
        self.map.retain(|_, e| !e.idle() || e.token.as_ref().is_some_and(|t| !t.remaining().is_zero()));
        while self.map.len() >= self.capacity {
            let oldest = self.map.iter().filter(|(_, e)| e.idle()).min_by_key(|(_, e)| e.last_used);
            let Some(key) = oldest.map(|(k, _)| k.clone()) else { break };
            self.map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(lifetime: u64) -> CachedToken {
        CachedToken::issued_now(
            SecretString::from("at"),
            vec!["s".into()],
            Duration::from_secs(lifetime),
            None,
            Duration::from_secs(300),
        )
    }

    #[test]
    fn answers_are_made_once_per_second_and_shared() {
        let answers = SharedAnswers::default();
        let mut made = 0;
        let mut make = |text: &'static str| {
            made += 1;
            Ok::<_, ()>(Bytes::from_static(text.as_bytes()))
        };
        let first = answers.token_answer(3599, || make("a")).unwrap();
        let again = answers.token_answer(3599, || make("b")).unwrap();
        assert_eq!((&first[..], &again[..]), (&b"a"[..], &b"a"[..]));
        assert_eq!(first.as_ptr(), again.as_ptr(), "the same bytes, not a copy");
        let next_second = answers.token_answer(3598, || make("c")).unwrap();
        assert_eq!(&next_second[..], b"c");
        assert_eq!(&answers.header_answer(|| make("h")).unwrap()[..], b"h");
        assert_eq!(&answers.header_answer(|| make("i")).unwrap()[..], b"h");
        assert_eq!(made, 3);
        assert_eq!(format!("{answers:?}"), "SharedAnswers { token: true, header: true }");
        // A failure to make one keeps nothing.
        assert_eq!(SharedAnswers::default().token_answer(1, || Err::<Bytes, _>("no")), Err("no"));
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_ahead_comes_before_min_valid_is_reached() {
        let hour = token(3600);
        // Due at 3600 - (300 + 120) = 3180 s.
        tokio::time::advance(Duration::from_secs(3179)).await;
        assert!(!hour.refresh_due());
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(hour.refresh_due());
    }

    #[tokio::test(start_paused = true)]
    async fn short_tokens_are_refreshed_ahead_at_half_life_and_refresh_in_wins_when_sooner() {
        let short = token(400);
        tokio::time::advance(Duration::from_secs(199)).await;
        assert!(!short.refresh_due(), "not on every hit");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(short.refresh_due());

        let advised = CachedToken::issued_now(
            SecretString::from("at"),
            vec![],
            Duration::from_secs(3600),
            Some(Duration::from_secs(1800)),
            Duration::from_secs(300),
        );
        tokio::time::advance(Duration::from_secs(1800)).await;
        assert!(advised.refresh_due());
    }

    #[tokio::test(start_paused = true)]
    async fn served_while_min_valid_remains() {
        let mut entries = ScopeEntries::default();
        entries.insert_token("k", token(3600));
        let min_valid = Duration::from_secs(300);
        assert!(entries.token("k", min_valid).is_some());
        tokio::time::advance(Duration::from_secs(3299)).await;
        assert!(entries.token("k", min_valid).is_some(), "301 s left is enough");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(entries.token("k", min_valid).is_none(), "299 s left is not");
        assert!(entries.token("k", Duration::from_secs(60)).is_some(), "a smaller min_valid still gets it");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_are_dropped() {
        let mut entries = ScopeEntries::default();
        entries.insert_token("k", token(10));
        assert_eq!(entries.live_tokens().count(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(entries.live_tokens().count(), 0);
        assert!(entries.token("k", Duration::ZERO).is_none());
        assert_eq!(entries.clear_tokens(), 0);
        assert!(entries.is_empty(), "an idle entry without a token is pruned");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent() {
        let mut entries = ScopeEntries::default();
        entries.insert_token("a", token(3600));
        assert!(entries.token("b", Duration::ZERO).is_none());
        assert!(entries.token("a", Duration::ZERO).is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn the_map_is_bounded_and_evicts_the_least_recently_used() {
        let mut entries = ScopeEntries::with_capacity(3);
        for key in ["a", "b", "c"] {
            entries.insert_token(key, token(3600));
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert!(entries.token("a", Duration::ZERO).is_some(), "a is now the most recently used");
        entries.insert_token("d", token(3600));
        assert_eq!(entries.len(), 3);
        assert!(entries.token("b", Duration::ZERO).is_none(), "b was the least recently used");
        for key in ["a", "c", "d"] {
            assert!(entries.token(key, Duration::ZERO).is_some(), "{key}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_under_refresh_is_never_evicted() {
        let mut entries = ScopeEntries::with_capacity(1);
        let held = entries.flight("busy");
        let _guard = held.lock().await;
        entries.insert_token("other", token(3600));
        assert_eq!(entries.len(), 2, "the busy entry stays even past capacity");
        assert!(Arc::ptr_eq(&held, &entries.flight("busy")), "the same lock is handed out while it is held");
        drop(_guard);
        drop(held);
        entries.insert_token("third", token(3600));
        assert_eq!(entries.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn clearing_keeps_entries_a_refresh_holds_and_prunes_the_rest() {
        let mut entries = ScopeEntries::default();
        entries.insert_token("a", token(3600));
        entries.insert_token("b", token(3600));
        let held = entries.flight("b");
        assert_eq!(entries.clear_tokens(), 2);
        assert_eq!(entries.len(), 1);
        assert!(Arc::ptr_eq(&held, &entries.flight("b")));
        assert!(entries.token("b", Duration::ZERO).is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn one_background_refresh_is_claimed_per_due_token() {
        let mut entries = ScopeEntries::default();
        entries.insert_token("k", token(400));
        assert!(!entries.claim_refresh_ahead("k"), "not due yet");
        tokio::time::advance(Duration::from_secs(200)).await;
        assert!(entries.claim_refresh_ahead("k"));
        assert!(!entries.claim_refresh_ahead("k"), "claimed once");
        entries.release_refresh_ahead("k");
        assert!(entries.claim_refresh_ahead("k"), "claimable again once released");
        assert!(!entries.claim_refresh_ahead("missing"));
    }
}
