//! The wall clock, behind a trait: what outlives the process (when a refresh token was last used, counted against
//! the identity platform's 90-day inactivity limit) is measured in calendar time, which tokio's paused clock does
//! not move, so tests put a clock of their own in its place.

use std::fmt::Debug;
use std::time::SystemTime;

/// Where the broker reads the date and time.
pub trait Clock: Send + Sync + Debug {
    fn now(&self) -> SystemTime;
}

/// The system's clock: what the daemon uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}
