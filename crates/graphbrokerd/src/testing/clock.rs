//! The test clock: the wall and boot clocks a test moves, the boot clock on tokio's paused time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The clocks the test moves. The wall clock stands at a fixed date until the test moves it; the boot clock is
/// tokio's (paused) clock, plus the time the test has "slept" the machine. So:
/// - `tokio::time::advance` is the machine running: the boot clock moves, the wall clock (standing) bounds
///   nothing sooner;
/// - [`ManualClock::sleep`] is a suspend: both clocks jump while tokio's stands still, as on a laptop;
/// - [`ManualClock::advance`] and [`ManualClock::step_back`] step the wall clock alone, as NTP or a user may.
#[derive(Debug)]
pub struct ManualClock {
    wall: Mutex<std::time::SystemTime>,
    /// Tokio's clock when the clock was made: the boot clock's origin.
    origin: tokio::time::Instant,
    /// Time spent "suspended" so far.
    slept: Mutex<Duration>,
}

impl ManualClock {
    /// A clock at a fixed date (2026-11-20), so that no test depends on today's.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            wall: Mutex::new(std::time::UNIX_EPOCH + Duration::from_secs(1_795_000_000)),
            origin: tokio::time::Instant::now(),
            slept: Mutex::new(Duration::ZERO),
        })
    }

    /// Steps the wall clock forward by `by` (the boot clock does not move).
    pub fn advance(&self, by: Duration) {
        *self.wall.lock().unwrap() += by;
    }

    /// Steps the wall clock back by `by` (the boot clock does not move).
    pub fn step_back(&self, by: Duration) {
        *self.wall.lock().unwrap() -= by;
    }

    /// Suspends the machine for `by`: the wall and boot clocks jump, tokio's stands still.
    pub fn sleep(&self, by: Duration) {
        *self.wall.lock().unwrap() += by;
        *self.slept.lock().unwrap() += by;
    }
}

impl crate::clock::Clock for ManualClock {
    fn now(&self) -> std::time::SystemTime {
        *self.wall.lock().unwrap()
    }

    fn boot_time(&self) -> crate::clock::BootTime {
        crate::clock::BootTime::from_duration(self.origin.elapsed() + *self.slept.lock().unwrap())
    }
}
