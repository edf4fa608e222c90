//! Every duration the identity platform sends, bounded before the daemon acts on it.
//!
//! A number from outside is an instruction to wait or to trust for that long. Unbounded, `expires_in:
//! 18446744073709551615` overflowed the time a token was cached until (a panic in the sign-in task), and a device
//! code whose `interval` outlived it was polled once and never again. So each is clamped here, once, where the
//! answer is parsed, to the range the platform documents (entra-protocol.md), and the arithmetic that adds them to
//! a time saturates anyway (`clock.rs`).

use std::time::Duration;

/// The longest an access token is trusted for. Entra's live 60–90 minutes; CAE tokens up to 28 hours.
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(28 * 3600);

/// The longest a device code is polled for. Entra's live 15 minutes; MSAL assumes 30 when none is said.
pub const MAX_DEVICE_CODE_LIFE: Duration = Duration::from_secs(3600);

/// The device code's polling interval, at least and at most. RFC 8628's default is 5 s; below 1 s is a busy loop,
/// and beyond 30 s the user waits that long after approving (and the code's life bounds it further).
pub const MIN_POLL_INTERVAL: Duration = Duration::from_secs(1);
pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(30);

/// The longest `Retry-After` believed: MSAL caps it at 3600 s.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An access token's `expires_in`.
pub fn token_lifetime(said: Duration) -> Duration {
    said.min(MAX_TOKEN_LIFETIME)
}

/// `refresh_in`: advice to refresh before expiry, so never past the (bounded) lifetime.
pub fn refresh_in(said: Duration, lifetime: Duration) -> Duration {
    said.min(token_lifetime(lifetime))
}

/// `ext_expires_in`: the extended lifetime for outages, never shorter than the token's own nor past the bound.
/// The daemon does not serve tokens past `expires_in`; this is kept only to be shown bounded.
pub fn ext_lifetime(said: Duration, lifetime: Duration) -> Duration {
    said.clamp(token_lifetime(lifetime), MAX_TOKEN_LIFETIME)
}

/// A device code's `expires_in`.
pub fn device_code_life(said: Duration) -> Duration {
    said.min(MAX_DEVICE_CODE_LIFE)
}

/// A device code's `interval` (and every interval after `slow_down`), within the code's `life`.
pub fn poll_interval(said: Duration, life: Duration) -> Duration {
    said.clamp(MIN_POLL_INTERVAL, MAX_POLL_INTERVAL).min(life.max(MIN_POLL_INTERVAL))
}

/// `Retry-After`.
pub fn retry_after(said: Duration) -> Duration {
    said.min(MAX_RETRY_AFTER)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn the_extremes_are_clamped() {
        assert_eq!(token_lifetime(S(u64::MAX)), MAX_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(Duration::MAX), MAX_TOKEN_LIFETIME);
        assert_eq!(token_lifetime(S(3599)), S(3599));
        assert_eq!(token_lifetime(S(0)), S(0));
        assert_eq!(refresh_in(S(u64::MAX), S(3599)), S(3599));
        assert_eq!(refresh_in(S(1800), S(3599)), S(1800));
        assert_eq!(ext_lifetime(S(u64::MAX), S(3599)), MAX_TOKEN_LIFETIME);
        assert_eq!(ext_lifetime(S(0), S(3599)), S(3599));
        assert_eq!(device_code_life(S(u64::MAX)), MAX_DEVICE_CODE_LIFE);
        assert_eq!(device_code_life(S(900)), S(900));
        assert_eq!(poll_interval(S(u64::MAX), S(900)), MAX_POLL_INTERVAL);
        assert_eq!(poll_interval(S(0), S(900)), MIN_POLL_INTERVAL);
        assert_eq!(poll_interval(S(5), S(900)), S(5));
        assert_eq!(poll_interval(S(20), S(10)), S(10), "never longer than the code lives");
        assert_eq!(poll_interval(S(20), S(0)), MIN_POLL_INTERVAL);
        assert_eq!(retry_after(S(u64::MAX)), MAX_RETRY_AFTER);
        assert_eq!(retry_after(S(2)), S(2));
    }
}
