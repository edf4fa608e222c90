//! What the broker keeps per scope set of one profile, in one bounded map: the cached access token, the
//! single-flight lock of its refresh, and the mark of a background refresh under way.
//!
//! Access tokens live here only — never on disk. Every validity decision is taken on both of the daemon's clocks
//! (`clock.rs`): the boot clock, which counts the time a laptop spends asleep, and the wall clock, which the platform
//! judges by; a token is good for the sooner of the two. The map reads them through its [`Clock`], so tests can
//! sleep the machine. Each cached token also keeps its serialized answers ([`SharedAnswers`]), so that a hit hands
//! out shared bytes instead of serializing again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;

use crate::clock::{Clock, Deadline, Now, SystemClock};

/// How long before a caller would stop accepting a token (its `min_valid`) the daemon refreshes it in the
/// background, so that a client asking often never waits on the network.
pub const REFRESH_AHEAD: Duration = Duration::from_secs(120);

/// One access token and what it is good for. The cache keeps it in an [`Arc`] that every hit shares: a hit copies
/// neither the token nor its scopes.
#[derive(Debug)]
pub struct CachedToken {
    pub access_token: SecretString,
    /// Resource-qualified scopes the token carries.
    pub scopes: Vec<String>,
    /// When it expires, on both clocks: every validity decision is taken on the sooner.
    pub expires: Deadline,
    /// From when a cache hit also refreshes the token in the background, on both clocks too.
    pub refresh_from: Deadline,
    /// The answers serialized for this token, made by the first hit that needs them: they go when the token goes.
    pub answers: SharedAnswers,
}

impl CachedToken {
    /// A token issued at `now` that lives `lifetime` (bounded where it was parsed, `idp::bounds`). It becomes due
    /// for a background refresh [`REFRESH_AHEAD`] before it would fall short of `min_valid`, but not before half
    /// its life (a short-lived token would otherwise be refreshed on every hit), or when the platform's
    /// `refresh_in` says, whichever comes first.
    pub fn issued(
        access_token: SecretString,
        scopes: Vec<String>,
        lifetime: Duration,
        refresh_in: Option<Duration>,
        min_valid: Duration,
        now: Now,
    ) -> Self {
        // Bounded where the platform's answer is parsed; again here for any other source (defence in depth).
        let lifetime = crate::idp::bounds::token_lifetime(lifetime);
        let mut refresh_after = lifetime.saturating_sub(min_valid.saturating_add(REFRESH_AHEAD)).max(lifetime / 2);
        if let Some(advised) = refresh_in {
            refresh_after = refresh_after.min(advised);
        }
        Self {
            access_token,
            scopes,
            expires: now.deadline(lifetime),
            refresh_from: now.deadline(refresh_after),
            answers: SharedAnswers::default(),
        }
    }

    /// Whether a hit at `now` should also refresh this token in the background.
    pub fn refresh_due(&self, now: Now) -> bool {
        self.refresh_from.passed(now)
    }

    /// Time left before expiry as of `now` (zero once expired by either clock).
    pub fn remaining(&self, now: Now) -> Duration {
        self.expires.remaining(now)
    }

    /// The expiry to tell a client at `now`: its wall clock plus the time left, so that a wall clock stepped back
    /// since the token came never makes the client trust it longer than it lives.
    pub fn expires_at(&self, now: Now) -> SystemTime {
        now.wall.checked_add(self.remaining(now)).unwrap_or(now.wall)
    }
}

/// The serialized `/v1/token` and `/v1/header` answers of one cached token, made by the first hit that needs
/// them and handed out as clones of the same bytes after that.
///
/// The bytes are owned by a zeroizing buffer (the server makes them, see `server/answer.rs`): they are wiped
/// when the last clone goes, that is when the token is replaced, evicted or dropped (sign-out, a new account)
/// and the answers in flight are sent. The token answer carries `expires_in` and `expires_at`, which change every
/// second (and when the wall clock is stepped), so it is kept with the pair it was made for and made again when a
/// hit finds another; the header answer never changes while the token lives.
#[derive(Default)]
pub struct SharedAnswers {
    answers: Mutex<Answers>,
}

#[derive(Default)]
struct Answers {
    /// The token answer and the `(expires_in, expires_at)` it says.
    token: Option<((u64, u64), Bytes)>,
    header: Option<Bytes>,
}

impl SharedAnswers {
    /// The token answer saying `times` (`expires_in` and `expires_at`, in seconds), made with `make` unless one
    /// saying the same is kept.
    pub fn token_answer<E>(&self, times: (u64, u64), make: impl FnOnce() -> Result<Bytes, E>) -> Result<Bytes, E> {
        let mut answers = self.answers.lock().expect("answers lock");
        if let Some((said, bytes)) = &answers.token
            && *said == times
        {
            return Ok(bytes.clone());
        }
        let bytes = make()?;
        answers.token = Some((times, bytes.clone()));
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
    token: Option<Arc<CachedToken>>,
    /// Held while a refresh for this scope set is under way: concurrent misses queue on it and then find the token
    /// it cached, so one refresh answers them all.
    flight: Arc<tokio::sync::Mutex<()>>,
    /// A cache hit has claimed this token's background refresh; no second one starts until it ends.
    refreshing_ahead: bool,
    /// When the entry was last used, for eviction.
    last_used: Instant,
    /// The platform `claims` the cached token was fetched with to answer a claims challenge, and the serial of
    /// that answer ([`ScopeEntries::challenges_answered`]): see [`ScopeEntries::answered`].
    answered: Option<(String, u64)>,
}

impl ScopeEntry {
    fn new() -> Self {
        Self { token: None, flight: Arc::default(), refreshing_ahead: false, last_used: Instant::now(), answered: None }
    }

    /// Claims the background refresh of this entry's token if it is due at `now` and nobody has claimed it yet.
    fn claim_refresh_ahead(&mut self, now: Now) -> bool {
        let claimed = !self.refreshing_ahead && self.token.as_ref().is_some_and(|t| t.refresh_due(now));
        self.refreshing_ahead |= claimed;
        claimed
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
    /// What validity is judged on.
    clock: Arc<dyn Clock>,
    /// Challenge answers recorded so far. A request notes the count when it arrives; an answer with a higher
    /// serial came after it. A count, not a time, so that the paused test clock orders them too.
    challenges_answered: u64,
}

impl Default for ScopeEntries {
    fn default() -> Self {
        Self::new(Arc::new(SystemClock))
    }
}

impl ScopeEntries {
    /// An empty map judging validity on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self::with_capacity(MAX_SCOPE_SETS, clock)
    }

    pub fn with_capacity(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self { map: HashMap::new(), capacity: capacity.max(1), clock, challenges_answered: 0 }
    }

    /// The clock validity is judged on, for the map that replaces this one.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// Both clocks, now.
    pub fn now(&self) -> Now {
        self.clock.read()
    }

    /// The token for `key` if at least `min_valid` of its life remains. An expired token is dropped on the way.
    pub fn token(&mut self, key: &str, min_valid: Duration) -> Option<Arc<CachedToken>> {
        let now = self.clock.read();
        self.serving(key, min_valid, now)?.token.clone()
    }

    /// A cache hit, on one reading of the clocks: [`ScopeEntries::token`], the clocks' reading it was judged on, and
    /// whether this hit claimed the token's background refresh (it was due and nobody had claimed it).
    pub fn hit(&mut self, key: &str, min_valid: Duration) -> Option<(Arc<CachedToken>, Now, bool)> {
        let now = self.clock.read();
        let entry = self.serving(key, min_valid, now)?;
        let token = entry.token.clone()?;
        let refresh_ahead = entry.claim_refresh_ahead(now);
        Some((token, now, refresh_ahead))
    }

    /// The entry of `key` if its token has at least `min_valid` left at `now` (marked used); an expired token is
    /// dropped on the way.
    fn serving(&mut self, key: &str, min_valid: Duration, now: Now) -> Option<&mut ScopeEntry> {
        let entry = self.map.get_mut(key)?;
        entry.last_used = Instant::now();
        let remaining = entry.token.as_ref()?.remaining(now);
        if remaining.is_zero() {
            entry.token = None;
            return None;
        }
        (remaining >= min_valid).then_some(entry)
    }

    /// Claims the background refresh of `key`'s token if it is due and nobody has claimed it yet (what a [hit]
    /// does on its way).
    ///
    /// [hit]: ScopeEntries::hit
    #[cfg(test)]
    pub fn claim_refresh_ahead(&mut self, key: &str) -> bool {
        let now = self.clock.read();
        self.map.get_mut(key).is_some_and(|entry| entry.claim_refresh_ahead(now))
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

    pub fn insert_token(&mut self, key: &str, token: impl Into<Arc<CachedToken>>) {
        let entry = self.entry(key);
        entry.token = Some(token.into());
        entry.answered = None;
    }

    /// Records that the token just cached for `key` answers a challenge, sent to the platform as `claims`.
    pub fn note_answered(&mut self, key: &str, claims: &str) {
        self.challenges_answered += 1;
        let serial = self.challenges_answered;
        self.entry(key).answered = Some((claims.to_owned(), serial));
    }

    /// How many challenge answers have been recorded: what a request arriving now notes.
    pub fn challenges_answered(&self) -> u64 {
        self.challenges_answered
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
    ) -> Option<Arc<CachedToken>> {
        let (answered, serial) = self.map.get(key)?.answered.as_ref()?;
        if answered != claims {
            return None;
        }
        let after_arrival = *serial > seen;
        let token = self.token(key, min_valid)?;
        let other_token = challenged.is_some_and(|old| old != token.access_token.expose_secret());
        (after_arrival || other_token).then_some(token)
    }

    /// Drops the cached token of `key` (`DELETE /v1/token`); whether a live one was there. The entry stays, with
    /// its single-flight lock, so a refresh under way for `key` caches its new token as usual.
    pub fn remove_token(&mut self, key: &str) -> bool {
        let now = self.clock.read();
        let Some(entry) = self.map.get_mut(key) else { return false };
        entry.answered = None;
        entry.token.take().is_some_and(|token| !token.remaining(now).is_zero())
    }

    /// Drops every token (the account changed); returns how many were live. Entries nothing else needs go too.
    pub fn clear_tokens(&mut self) -> usize {
        let live = self.live_tokens(self.clock.read()).count();
        self.map.retain(|_, entry| {
            entry.token = None;
            entry.answered = None;
            !entry.idle()
        });
        live
    }

    /// Unexpired tokens as of `now`, for status (callers print scopes and expiry, never the value).
    pub fn live_tokens(&self, now: Now) -> impl Iterator<Item = &CachedToken> {
        self.map.values().filter_map(|e| e.token.as_deref()).filter(move |t| !t.remaining(now).is_zero())
    }

    /// The keys of the tokens due for a background refresh at `now` that nobody has claimed (after a wake-up).
    pub fn due_for_refresh(&self, now: Now) -> Vec<String> {
        let due = |e: &ScopeEntry| !e.refreshing_ahead && e.token.as_ref().is_some_and(|t| t.refresh_due(now));
        self.map.iter().filter(|(_, e)| due(e)).map(|(key, _)| key.clone()).collect()
    }

    /// Claims the background refresh of `key` whatever its token says (a wake-up found it due or expired): `false`
    /// when one is already claimed or no token is kept.
    pub fn claim_refresh_after_wake(&mut self, key: &str) -> bool {
        match self.map.get_mut(key) {
            Some(entry) if !entry.refreshing_ahead && entry.token.is_some() => {
                entry.refreshing_ahead = true;
                true
            }
            _ => false,
        }
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
        let now = self.clock.read();
        self.map.retain(|_, e| !e.idle() || e.token.as_ref().is_some_and(|t| !t.remaining(now).is_zero()));
        while self.map.len() >= self.capacity {
            let oldest = self.map.iter().filter(|(_, e)| e.idle()).min_by_key(|(_, e)| e.last_used);
            let Some(key) = oldest.map(|(k, _)| k.clone()) else { break };
            self.map.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests;
