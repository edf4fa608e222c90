//! Points in time on the wire: whole seconds since the Unix epoch, as a JSON number. Programs compare them with
//! their clock without parsing a date; people are shown them by the client, formatted.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// A point in time: whole seconds since 1970-01-01T00:00:00Z (UTC), serialized as a plain number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EpochSeconds(pub u64);

impl EpochSeconds {
    /// `time`, truncated to the second (times before the epoch count as the epoch).
    pub fn from_system_time(time: SystemTime) -> Self {
        Self(time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    /// `seconds` from now.
    pub fn in_seconds(seconds: u64) -> Self {
        Self::from_system_time(SystemTime::now() + Duration::from_secs(seconds))
    }

    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(self.0)
    }

    /// How long from `now` until this time; zero once it has passed.
    pub fn left_after(self, now: SystemTime) -> Duration {
        self.to_system_time().duration_since(now).unwrap_or(Duration::ZERO)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn travels_as_a_number_of_seconds() {
        let time = EpochSeconds(1_795_000_000);
        assert_eq!(serde_json::to_string(&time).unwrap(), "1795000000");
        assert_eq!(serde_json::from_str::<EpochSeconds>("1795000000").unwrap(), time);
        assert!(serde_json::from_str::<EpochSeconds>("\"2026-11-27T02:40:00Z\"").is_err());
    }

    #[test]
    fn converts_to_and_from_system_time() {
        let time = UNIX_EPOCH + Duration::from_millis(1_795_000_000_900);
        let seconds = EpochSeconds::from_system_time(time);
        assert_eq!(seconds, EpochSeconds(1_795_000_000), "truncated to the second");
        assert_eq!(seconds.to_system_time(), UNIX_EPOCH + Duration::from_secs(1_795_000_000));
        assert_eq!(seconds.left_after(UNIX_EPOCH + Duration::from_secs(1_794_999_940)), Duration::from_secs(60));
        assert_eq!(seconds.left_after(UNIX_EPOCH + Duration::from_secs(1_795_000_001)), Duration::ZERO);
        assert_eq!(EpochSeconds::from_system_time(UNIX_EPOCH - Duration::from_secs(5)), EpochSeconds(0));
    }
}
