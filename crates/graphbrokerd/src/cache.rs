//! The in-memory access-token cache of one profile, keyed by normalized scope set.
//!
//! Access tokens live here only — never on disk. Validity is measured on tokio's clock (so tests can pause
//! it); the wall-clock expiry is kept alongside for what clients are told.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
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

/// Tokens by scope-set key.
#[derive(Debug, Default)]
pub struct TokenCache {
    entries: HashMap<String, CachedToken>,
}

impl TokenCache {
    /// The token for `key` if at least `min_valid` of its life remains. Expired entries are dropped on the way.
    pub fn get(&mut self, key: &str, min_valid: Duration) -> Option<CachedToken> {
        let entry = self.entries.get(key)?;
        let remaining = entry.remaining();
        if remaining.is_zero() {
            self.entries.remove(key);
            return None;
        }
        (remaining >= min_valid).then(|| entry.clone())
    }

    pub fn insert(&mut self, key: String, token: CachedToken) {
        self.entries.insert(key, token);
    }

    pub fn remove(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops every token; returns how many there were.
    pub fn clear(&mut self) -> usize {
        let count = self.entries.len();
        self.entries.clear();
        count
    }

    /// Unexpired tokens, for status (callers print scopes and expiry, never the value).
    pub fn live(&self) -> impl Iterator<Item = &CachedToken> {
        self.entries.values().filter(|t| !t.remaining().is_zero())
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
        let mut cache = TokenCache::default();
        cache.insert("k".into(), token(3600));
        let min_valid = Duration::from_secs(300);
        assert!(cache.get("k", min_valid).is_some());
        tokio::time::advance(Duration::from_secs(3299)).await;
        assert!(cache.get("k", min_valid).is_some(), "301 s left is enough");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get("k", min_valid).is_none(), "299 s left is not");
        assert!(cache.get("k", Duration::from_secs(60)).is_some(), "a smaller min_valid still gets it");
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_dropped() {
        let mut cache = TokenCache::default();
        cache.insert("k".into(), token(10));
        assert_eq!(cache.live().count(), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.live().count(), 0);
        assert!(cache.get("k", Duration::ZERO).is_none());
        assert_eq!(cache.clear(), 0, "get removed the expired entry");
    }

    #[tokio::test(start_paused = true)]
    async fn keys_are_independent() {
        let mut cache = TokenCache::default();
        cache.insert("a".into(), token(3600));
        assert!(cache.get("b", Duration::ZERO).is_none());
        cache.remove("a");
        assert!(cache.get("a", Duration::ZERO).is_none());
    }
}
