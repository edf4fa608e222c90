//! The waiting room: a connection whose request waits on the user gives up its serving slot.
//!
//! The accept loop serves at most `max_connections` connections at once (see `server::ConnectionLimits`). A
//! request that waits for a sign-in can be held for minutes, until the user has typed the code; if such requests
//! kept their slots, a build that runs many token requests in parallel before the first sign-in would hold every
//! slot, and `status`, `signout` or `metrics` from another terminal would queue behind them until the user
//! finished. So when a request is about to wait on the user, [`waiting_on_user`] moves its connection from a
//! serving slot to a place in the waiting room — a second, larger bound — and the accept loop can take the next
//! connection. Its answer then carries `Connection: close`: the connection ends with that answer and never serves
//! another request without a serving slot.
//!
//! The connection is found through a task-local set by the accept loop around each request ([`scope`]), so the
//! broker needs no handle to it; outside a connection (the broker's in-process tests) [`waiting_on_user`] does
//! nothing. When the waiting room is full the connection keeps its serving slot, as before: the two bounds
//! together bound what one user's programs can make the daemon hold.

use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

tokio::task_local! {
    static CONNECTION: Arc<Slot>;
}

/// A connection's hold on the daemon: a serving slot, or a place in the waiting room.
#[derive(Debug)]
pub struct Slot {
    held: Mutex<Held>,
    room: Arc<Semaphore>,
}

#[derive(Debug)]
enum Held {
    /// Held until the connection closes or waits; dropping a permit frees it.
    Serving {
        _permit: OwnedSemaphorePermit,
    },
    Waiting {
        _place: OwnedSemaphorePermit,
    },
}

impl Slot {
    /// A connection holding `serving`, which may move to a place in `room`.
    pub fn new(serving: OwnedSemaphorePermit, room: Arc<Semaphore>) -> Arc<Self> {
        Arc::new(Self { held: Mutex::new(Held::Serving { _permit: serving }), room })
    }

    /// Whether the connection gave up its serving slot (and must close after the answer).
    pub fn is_waiting(&self) -> bool {
        matches!(*self.held.lock().expect("slot lock"), Held::Waiting { .. })
    }

    /// Moves the connection to the waiting room if it has room, freeing its serving slot; else nothing changes.
    fn wait(&self) {
        let mut held = self.held.lock().expect("slot lock");
        if let Held::Serving { .. } = *held
            && let Ok(place) = self.room.clone().try_acquire_owned()
        {
            // Replacing drops the serving permit: the accept loop may take the next connection.
            *held = Held::Waiting { _place: place };
        }
    }
}

/// Runs `request` (one request's handling) as a request of the connection holding `slot`.
pub fn scope<F: Future>(slot: Arc<Slot>, request: F) -> impl Future<Output = F::Output> {
    // The task-local's own future, not one wrapping it: each wrapper moves the request's (large) state again.
    CONNECTION.scope(slot, request)
}

/// Says that the current request is about to wait on the user: its connection gives up its serving slot if the
/// waiting room has room. Outside a connection, nothing.
pub fn waiting_on_user() {
    let _ = CONNECTION.try_with(|slot| slot.wait());
}

/// Says that the current request is about to wait on its own peer (the Graph proxy reading a request body,
/// bounded in time by `server::proxy`): like [`waiting_on_user`], its connection gives up its serving slot, so
/// that a program sending bodies slowly, or not at all, never keeps `healthz`, `status` or a cached token out.
pub fn waiting_on_peer() {
    waiting_on_user();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_frees_the_serving_slot_while_the_room_has_room() {
        let serving = Arc::new(Semaphore::new(2));
        let room = Arc::new(Semaphore::new(1));
        let first = Slot::new(serving.clone().try_acquire_owned().unwrap(), room.clone());
        let second = Slot::new(serving.clone().try_acquire_owned().unwrap(), room.clone());
        assert_eq!(serving.available_permits(), 0);

        scope(first.clone(), async { waiting_on_user() }).await;
        assert!(first.is_waiting());
        assert_eq!((serving.available_permits(), room.available_permits()), (1, 0));
        // Said twice, it takes no second place.
        scope(first.clone(), async { waiting_on_user() }).await;
        assert_eq!((serving.available_permits(), room.available_permits()), (1, 0));

        // The room is full: the second connection keeps its serving slot.
        scope(second.clone(), async { waiting_on_user() }).await;
        assert!(!second.is_waiting());
        assert_eq!(serving.available_permits(), 1);

        drop(first);
        assert_eq!(room.available_permits(), 1, "a closed connection's place is free again");
        drop(second);
        assert_eq!(serving.available_permits(), 2);
    }

    #[test]
    fn outside_a_connection_nothing_happens() {
        waiting_on_user();
    }
}
