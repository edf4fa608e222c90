//! Activity, for exiting when idle under socket activation: requests in flight ([`CountedRequest`], counted by the
//! tracking layer) and answers whose body still streams ([`Streaming`], the Graph proxy's), and when the last one
//! ended.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Requests in flight and the time of the last one, for exiting when idle under socket activation.
#[derive(Debug)]
pub struct Activity {
    pub(super) in_flight: AtomicUsize,
    last: std::sync::Mutex<tokio::time::Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Self { in_flight: AtomicUsize::new(0), last: std::sync::Mutex::new(tokio::time::Instant::now()) }
    }
}

impl Activity {
    /// How long no request has been in flight (zero while one is).
    pub fn idle_for(&self) -> std::time::Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return std::time::Duration::ZERO;
        }
        self.last.lock().expect("activity lock").elapsed()
    }

    fn touch(&self) {
        *self.last.lock().expect("activity lock") = tokio::time::Instant::now();
    }

    /// One more request (or streaming answer) in flight. The time is kept when it ends: while one is in flight,
    /// [`Activity::idle_for`] is zero whatever the time says, so a request pays for one clock reading, not two.
    fn begin(&self) {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    /// One fewer, as of now.
    fn end(&self) {
        self.touch();
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts an answer whose body is still streaming (the Graph proxy's) as a request in flight until the body is
/// done, so an idle exit never cuts a download short.
#[derive(Debug)]
pub(crate) struct Streaming(Arc<Activity>);

impl Streaming {
    pub(crate) fn start(activity: &Arc<Activity>) -> Self {
        activity.begin();
        Self(activity.clone())
    }
}

impl Drop for Streaming {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// Counts a request in and out, whatever its outcome.
pub(super) struct CountedRequest<'a>(&'a Activity);

impl<'a> CountedRequest<'a> {
    pub(super) fn start(activity: &'a Activity) -> Self {
        activity.begin();
        Self(activity)
    }
}

impl Drop for CountedRequest<'_> {
    fn drop(&mut self) {
        self.0.end();
    }
}
