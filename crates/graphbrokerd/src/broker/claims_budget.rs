//! The limit on `claims` requests. A request with a claims challenge bypasses the cache and goes to the identity
//! platform every time, so a client that loops on them could get the user throttled (AADSTS50196) for every
//! program on the machine. Each profile has a token bucket: a burst of [`CLAIMS_BURST`], then one request per
//! [`CLAIMS_REFILL`].

use std::time::Duration;

use tokio::time::Instant;

/// How many `claims` requests a profile may make back to back. A resource sends a challenge after a revocation
/// or a policy change, and a program answers it once per token it holds; a few cover several programs reacting
/// to the same event.
pub const CLAIMS_BURST: u32 = 4;
/// How often one more `claims` request is allowed once the burst is spent: slow enough that a looping client
/// costs the platform four requests a minute, fast enough that a real second challenge is not held up long.
pub const CLAIMS_REFILL: Duration = Duration::from_secs(15);

/// One profile's bucket of `claims` requests, on tokio's clock (so tests can pause it).
#[derive(Debug)]
pub struct ClaimsBudget {
    available: u32,
    /// From when the next request is being earned (only meaningful below the burst).
    earning_since: Instant,
}

impl Default for ClaimsBudget {
    fn default() -> Self {
        Self { available: CLAIMS_BURST, earning_since: Instant::now() }
    }
}

impl ClaimsBudget {
    /// Spends one request; `Err` with how long until the next one is allowed when none is left.
    pub fn take(&mut self) -> Result<(), Duration> {
        let now = Instant::now();
        if self.available < CLAIMS_BURST {
            let earned = now.saturating_duration_since(self.earning_since).as_nanos() / CLAIMS_REFILL.as_nanos();
            let earned = u32::try_from(earned).unwrap_or(u32::MAX);
            self.available = self.available.saturating_add(earned).min(CLAIMS_BURST);
            self.earning_since += CLAIMS_REFILL * earned.min(CLAIMS_BURST);
        }
        if self.available == 0 {
            return Err(CLAIMS_REFILL.saturating_sub(now.saturating_duration_since(self.earning_since)));
        }
        if self.available == CLAIMS_BURST {
            // A full bucket banks nothing: the next request is earned from now on.
            self.earning_since = now;
        }
        self.available -= 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_one_per_refill_and_nothing_banked_while_full() {
        let mut budget = ClaimsBudget::default();
        for _ in 0..CLAIMS_BURST {
            budget.take().unwrap();
        }
        assert_eq!(budget.take(), Err(CLAIMS_REFILL));
        tokio::time::advance(CLAIMS_REFILL - Duration::from_secs(5)).await;
        assert_eq!(budget.take(), Err(Duration::from_secs(5)));
        tokio::time::advance(Duration::from_secs(5)).await;
        budget.take().unwrap();
        assert!(budget.take().is_err(), "one per refill");

        // A long quiet spell refills the burst, and no more than the burst.
        tokio::time::advance(CLAIMS_REFILL * 100).await;
        for _ in 0..CLAIMS_BURST {
            budget.take().unwrap();
        }
        assert!(budget.take().is_err());
    }
}
