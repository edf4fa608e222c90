//! The daemon's two clocks, behind one trait, and the rule that every decision about a token's life is taken on
//! both.
//!
//! Why two: tokio's clock (`CLOCK_MONOTONIC` on Linux, `CLOCK_UPTIME_RAW` on macOS) stands still while the machine
//! is suspended, so a laptop that slept through a token's expiry would still find it "valid" on that clock. The
//! identity platform and Graph judge a token by the wall clock. So a token's life is measured on:
//!
//! - the **boot clock**, which keeps running during suspend and is never set: `CLOCK_BOOTTIME` on Linux,
//!   `CLOCK_MONOTONIC` on macOS (which, unlike Linux's, counts time asleep; Apple's `clock_gettime(3)`);
//! - the **wall clock**, which NTP or the user may step either way.
//!
//! A token is good for the *smaller* of the two: a wall clock stepped back never stretches a token past what the
//! platform said (the boot clock still counts its life down), and a wall clock stepped forward at worst makes it
//! look due early, which costs one refresh, after which the new token's wall-clock expiry is reckoned from the new
//! time (no burst). No maintained crate reads `CLOCK_BOOTTIME` with a wall-clock check beside it, so it is this
//! small module; `nix` makes the system call.
//!
//! Timers still run on tokio (nothing else can wake a task), but a wait that must end on time whatever the machine
//! does (a sign-in's deadline) sleeps in short steps and reads the boot clock after each ([`sleep_until`]), as
//! pizauth's refresh loop does; `broker/wake.rs` notices a suspend the same way.

use std::fmt::Debug;
use std::time::{Duration, SystemTime};

/// A point on the boot clock: the time since the machine started, counting suspend. Only differences mean
/// anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BootTime(Duration);

impl BootTime {
    pub const fn from_duration(since_boot: Duration) -> Self {
        Self(since_boot)
    }

    /// `by` later, saturating: a duration from outside must never overflow a time (it is bounded anyway, see
    /// `idp::bounds`).
    pub fn after(self, by: Duration) -> Self {
        Self(self.0.saturating_add(by))
    }

    /// How long from `earlier` to this point (zero if `earlier` is later).
    pub fn since(self, earlier: BootTime) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

/// Both clocks, read together: what one decision is taken on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: SystemTime,
    pub boot: BootTime,
}

impl Now {
    /// The point `life` from now, on both clocks.
    pub fn deadline(self, life: Duration) -> Deadline {
        Deadline { wall: self.wall.checked_add(life).unwrap_or(far_future()), boot: self.boot.after(life) }
    }
}

/// A point in time kept on both clocks, set from one reading ([`Now::deadline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    pub wall: SystemTime,
    pub boot: BootTime,
}

impl Deadline {
    /// Time left as of `now`: the smaller of the two clocks' answers, zero once either has passed.
    pub fn remaining(&self, now: Now) -> Duration {
        let by_wall = self.wall.duration_since(now.wall).unwrap_or(Duration::ZERO);
        let by_boot = self.boot.since(now.boot);
        by_wall.min(by_boot)
    }

    /// Whether either clock has reached it.
    pub fn passed(&self, now: Now) -> bool {
        self.remaining(now).is_zero()
    }
}

/// Year 9999 or so: what a wall-clock deadline saturates to rather than overflowing.
fn far_future() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799)
}

/// Where the broker reads the date and time.
pub trait Clock: Send + Sync + Debug {
    /// The wall clock (calendar time).
    fn now(&self) -> SystemTime;

    /// The boot clock: keeps running while the machine is suspended, never set.
    fn boot_time(&self) -> BootTime;

    /// Both, read together.
    fn read(&self) -> Now {
        Now { wall: self.now(), boot: self.boot_time() }
    }
}

/// The system's clocks: what the daemon uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn boot_time(&self) -> BootTime {
        BootTime(suspend_counting_clock())
    }
}

#[cfg(target_os = "linux")]
fn suspend_counting_clock() -> Duration {
    read_clock(nix::time::ClockId::CLOCK_BOOTTIME)
}

/// macOS's `CLOCK_MONOTONIC` continues to increment while the system is asleep (it is `mach_continuous_time`).
#[cfg(target_os = "macos")]
fn suspend_counting_clock() -> Duration {
    read_clock(nix::time::ClockId::CLOCK_MONOTONIC)
}

#[cfg(any(target_os = "linux", target_os = "macos"))]
fn read_clock(id: nix::time::ClockId) -> Duration {
    // Reading a clock the kernel has cannot fail; if it ever did, the monotonic clock since the first reading
    // is the best left (it undercounts a suspend, the wall-clock bound still holds).
    match nix::time::clock_gettime(id) {
        Ok(spec) => Duration::new(spec.tv_sec().max(0) as u64, spec.tv_nsec().clamp(0, 999_999_999) as u32),
        Err(_) => process_start().elapsed(),
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn suspend_counting_clock() -> Duration {
    process_start().elapsed()
}

fn process_start() -> std::time::Instant {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *START.get_or_init(std::time::Instant::now)
}

/// How long a wait on the boot clock sleeps on tokio's between two readings: after a wake-up the wait ends at most
/// this late. Short enough that a prompt for a dead code is not shown for long, long enough to cost nothing.
pub const WAKE_CHECK: Duration = Duration::from_secs(5);

/// Sleeps until `deadline` has passed on either clock, however long the machine is suspended meanwhile.
pub async fn sleep_until(clock: &dyn Clock, deadline: Deadline) {
    loop {
        let left = deadline.remaining(clock.read());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(WAKE_CHECK)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(wall: u64, boot: u64) -> Now {
        Now { wall: SystemTime::UNIX_EPOCH + Duration::from_secs(wall), boot: BootTime(Duration::from_secs(boot)) }
    }

    #[test]
    fn a_deadline_is_the_sooner_of_the_two_clocks() {
        let deadline = at(10_000, 50).deadline(Duration::from_secs(3600));
        assert_eq!(deadline.remaining(at(10_000, 50)), Duration::from_secs(3600));
        // A suspend of two hours moves both clocks: the token is gone.
        assert!(deadline.passed(at(10_000 + 7200, 50 + 7200)));
        // The wall clock stepped back an hour: the boot clock still counts the life down.
        assert_eq!(deadline.remaining(at(10_000 - 3600 + 600, 50 + 600)), Duration::from_secs(3000));
        // The wall clock stepped forward an hour: it looks sooner, never later.
        assert_eq!(deadline.remaining(at(10_000 + 3600 + 600, 50 + 600)), Duration::ZERO);
        assert_eq!(deadline.remaining(at(10_000 + 1800, 50)), Duration::from_secs(1800));
    }

    #[test]
    fn deadlines_saturate_instead_of_overflowing() {
        let deadline = at(1_000, 50).deadline(Duration::MAX);
        assert!(!deadline.passed(at(2_000, 1_050)));
        assert_eq!(BootTime(Duration::MAX).after(Duration::from_secs(1)), BootTime(Duration::MAX));
    }

    #[test]
    fn the_boot_clock_runs_and_is_not_the_wall_clock() {
        let first = SystemClock.boot_time();
        std::thread::sleep(Duration::from_millis(5));
        let second = SystemClock.boot_time();
        assert!(second.since(first) >= Duration::from_millis(5));
        // Since boot, not since 1970.
        assert!(first.0 < Duration::from_secs(100 * 365 * 86_400 / 2));
    }
}
