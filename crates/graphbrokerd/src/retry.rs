//! The one retry policy: how often and how patiently a transient failure is tried again, honouring the
//! platform's `Retry-After`. Every retry loop in the daemon (refresh, device-code start, device-code polling)
//! runs through [`retry`].

use std::future::Future;
use std::time::Duration;

use crate::idp::PlatformError;

/// How a call is retried while it fails transiently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub max_attempts: u32,
    /// First backoff step; doubled per try, with ±50% jitter so that many daemons do not retry in step.
    pub base: Duration,
    /// The longest single wait between tries. A `Retry-After` beyond it ends the retries at once: holding a
    /// client longer is worse than telling it when to come back.
    pub max_wait: Duration,
    /// The most the call may spend across its tries before the failure is reported.
    pub budget: Duration,
}

/// One exchange with the platform (refresh, device-code start): four tries ride out a short outage without
/// making a waiting user wait long, and 30 s keeps the answer well within a waiting client's patience.
pub const PLATFORM_CALL: RetryPolicy = RetryPolicy {
    max_attempts: 4,
    base: Duration::from_millis(200),
    max_wait: Duration::from_secs(10),
    budget: Duration::from_secs(30),
};

/// Polling a device code while the user signs in: an outage then must not cost the sign-in, so the poll rides
/// out five transient failures with a slower start; the code's own expiry bounds it further (see
/// [`RetryPolicy::within`]).
pub const DEVICE_POLL: RetryPolicy = RetryPolicy {
    max_attempts: 6,
    base: Duration::from_secs(2),
    max_wait: Duration::from_secs(60),
    budget: Duration::from_secs(900),
};

impl RetryPolicy {
    /// This policy with its budget cut to `limit` (e.g. the time a device code has left).
    pub fn within(self, limit: Duration) -> Self {
        Self { budget: self.budget.min(limit), ..self }
    }

    /// The wait before try `attempt + 1`, after try `attempt` failed (`attempt` counts from 1).
    fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exponential = self.base * 2u32.pow(attempt.saturating_sub(1).min(8));
        let jitter: f64 = rand::random_range(0.5..1.5);
        let jittered = exponential.mul_f64(jitter);
        match retry_after {
            Some(server) => server.max(jittered.min(server.saturating_add(self.base))),
            None => jittered,
        }
    }
}

/// Runs `call` while it fails transiently, as `policy` allows; any other outcome is returned at once.
pub async fn retry<T, F, Fut>(policy: RetryPolicy, mut call: F) -> Result<T, PlatformError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, PlatformError>>,
{
    let started = tokio::time::Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(PlatformError::Transient { retry_after, detail }) if attempt < policy.max_attempts => {
                let wait = policy.backoff(attempt, retry_after);
                if wait > policy.max_wait || started.elapsed().saturating_add(wait) > policy.budget {
                    return Err(PlatformError::Transient { retry_after, detail });
                }
                tracing::warn!(
                    attempt,
                    wait_ms = wait.as_millis() as u64,
                    "identity platform failed transiently: {detail}"
                );
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn transient(retry_after: Option<u64>) -> PlatformError {
        PlatformError::Transient { retry_after: retry_after.map(Duration::from_secs), detail: "503".into() }
    }

    #[test]
    fn backoff_honours_retry_after_and_grows() {
        assert!(PLATFORM_CALL.backoff(1, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
        assert!(PLATFORM_CALL.backoff(1, None) <= Duration::from_millis(300));
        assert!(PLATFORM_CALL.backoff(3, None) >= Duration::from_millis(400));
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_tried_again_up_to_the_limit() {
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(PLATFORM_CALL, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(transient(None))
        })
        .await;
        assert!(matches!(result, Err(PlatformError::Transient { .. })));
        assert_eq!(calls.load(Ordering::SeqCst), PLATFORM_CALL.max_attempts);
    }

    #[tokio::test(start_paused = true)]
    async fn success_after_a_failure_and_other_errors_end_it() {
        let calls = AtomicU32::new(0);
        let result = retry(PLATFORM_CALL, || async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 { Err(transient(Some(1))) } else { Ok(7) }
        })
        .await;
        assert_eq!(result, Ok(7));
        let refused = PlatformError::Refused { detail: "no".into(), codes: vec![], hint: None };
        let calls = AtomicU32::new(0);
        let result: Result<(), _> = retry(PLATFORM_CALL, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(refused.clone())
        })
        .await;
        assert_eq!(result, Err(refused.clone()));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "a refusal is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_longest_wait_ends_the_retries() {
        let calls = AtomicU32::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = retry(PLATFORM_CALL, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(transient(Some(60)))
        })
        .await;
        assert!(matches!(result, Err(PlatformError::Transient { retry_after: Some(d), .. }) if d.as_secs() == 60));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(started.elapsed(), Duration::ZERO, "no wait was spent");
    }

    #[tokio::test(start_paused = true)]
    async fn an_endless_retry_after_is_reported_not_added_up() {
        let result: Result<(), _> = retry(PLATFORM_CALL, || async {
            Err(PlatformError::Transient { retry_after: Some(Duration::MAX), detail: "503".into() })
        })
        .await;
        assert!(matches!(result, Err(PlatformError::Transient { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_total_wait() {
        let calls = AtomicU32::new(0);
        let policy = DEVICE_POLL.within(Duration::from_secs(5));
        let result: Result<(), _> = retry(policy, || async {
            calls.fetch_add(1, Ordering::SeqCst);
            Err(transient(None))
        })
        .await;
        assert!(result.is_err());
        // 2 s (±50%) then 4 s (±50%): the second wait no longer fits in 5 s every time the first is over 1 s.
        assert!(calls.load(Ordering::SeqCst) <= 3, "{}", calls.load(Ordering::SeqCst));
    }
}
