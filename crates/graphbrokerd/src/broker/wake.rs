//! Noticing that the machine slept, and the daily rolling refresh, on the boot clock.
//!
//! tokio's timers run on a clock that stands still while the machine is suspended, so a "daily" tokio interval
//! on a laptop that sleeps every night would almost never fire, and nothing would happen at a wake-up. Instead, a
//! short tokio tick ([`WAKE_TICK`]) reads both clocks (`clock.rs`), as pizauth's refresh loop does: when the boot
//! clock has moved more than the tick (by over [`WAKE_SLACK`]), the machine was asleep. Then:
//!
//! - every cached token that came due (or expired) while asleep is refreshed in the background, so the first
//!   request after the wake-up finds a fresh one rather than waiting on the network;
//! - the rolling refresh runs (an account may have come near the platform's inactivity limit in its sleep);
//! - a sign-in whose code died meanwhile is ended by its own task (`signin.rs`), within `clock::WAKE_CHECK`.
//!
//! The rolling refresh also runs at start and every [`ROLLING_CHECK_INTERVAL`] on the boot clock.
//!
//! A wall clock stepped by NTP is not a wake-up: only the boot clock's jump counts, so a step starts nothing
//! here (its effect on tokens is described in `clock.rs`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Broker;
use crate::scopes::ScopeSet;

/// How often the clocks are compared: a wake-up is acted on at most this late.
pub const WAKE_TICK: Duration = Duration::from_secs(15);
/// How far the boot clock may run ahead of tokio's over one tick before it counts as a suspend: scheduling delays
/// on a loaded machine are far smaller, a suspend worth acting on far larger.
pub const WAKE_SLACK: Duration = Duration::from_secs(5);
/// How often a long-running daemon checks for idle accounts, as the service manager's daily timer does.
pub const ROLLING_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

impl Broker {
    /// Runs for the daemon's life (spawn it): the rolling refresh now and every [`ROLLING_CHECK_INTERVAL`] of boot
    /// clock, and after every wake-up the refreshes above.
    pub async fn watch_clocks(self: Arc<Self>) {
        self.refresh_idle().await;
        let mut last_rolling = self.clock.boot_time();
        let (mut ticked, mut read) = (Instant::now(), self.clock.boot_time());
        loop {
            tokio::time::sleep(WAKE_TICK).await;
            let (tick, boot) = (Instant::now(), self.clock.boot_time());
            let asleep = boot.since(read).saturating_sub(tick.duration_since(ticked));
            (ticked, read) = (tick, boot);
            let woke = asleep > WAKE_SLACK;
            if woke {
                tracing::info!(asleep_s = asleep.as_secs(), "the machine was asleep; refreshing what came due");
                self.refresh_after_wake();
            }
            if woke || boot.since(last_rolling) >= ROLLING_CHECK_INTERVAL {
                last_rolling = boot;
                self.refresh_idle().await;
            }
        }
    }

    /// Starts a background refresh of every cached token that is due or expired, in every profile.
    fn refresh_after_wake(self: &Arc<Self>) {
        for slot in self.profile_set().slots.values() {
            let claimed: Vec<ScopeSet> = {
                let mut state = slot.state.lock().expect("state lock");
                let now = state.entries.now();
                let mut claimed = Vec::new();
                for key in state.entries.due_for_refresh(now) {
                    // The key is the normalized scope set, lowercased: normalizing it again gives the same set
                    // (scopes are case-insensitive).
                    let scopes: Vec<&str> = key.split(' ').collect();
                    let Ok(set) = ScopeSet::normalize(&scopes, &slot.profile.graph_resource) else { continue };
                    if state.entries.claim_refresh_after_wake(&key) {
                        claimed.push(set);
                    }
                }
                claimed
            };
            for scopes in claimed {
                self.refresh_ahead(slot.clone(), Arc::new(scopes));
            }
        }
    }
}
