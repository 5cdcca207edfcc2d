//! Releases that run in the background (a dropped guard, the undo of a failed attempt), and
//! the wait for them before this process tries the same key again.
//!
//! Without that wait, a function that returns early and is called again at once could send
//! its new `SET` before the spawned release of the old lock, find its own stale key, and skip.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::watch;

/// The background releases in flight, counted per lock key.
#[derive(Debug, Default)]
pub(crate) struct BackgroundReleases {
    in_flight: Mutex<HashMap<Arc<str>, watch::Sender<usize>>>,
}

/// One background release of `key`, counted until dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    releases: Arc<BackgroundReleases>,
    key: Arc<str>,
}

impl BackgroundReleases {
    /// Counts a background release of `key` until the ticket is dropped.
    pub(crate) fn start(self: &Arc<Self>, key: &Arc<str>) -> Ticket {
        let mut in_flight = self
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        in_flight
            .entry(Arc::clone(key))
            .or_insert_with(|| watch::Sender::new(0))
            .send_modify(|count| *count += 1);
        Ticket {
            releases: Arc::clone(self),
            key: Arc::clone(key),
        }
    }

    /// Waits until no background release of `key` is in flight, at most `bound`.
    pub(crate) async fn settled(&self, key: &str, bound: Duration) {
        let waiting = {
            let in_flight = self
                .in_flight
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            in_flight.get(key).map(watch::Sender::subscribe)
        };
        if let Some(mut count) = waiting {
            let _ = tokio::time::timeout(bound, count.wait_for(|count| *count == 0)).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut in_flight = self
            .releases
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(count) = in_flight.get(&self.key) {
            count.send_modify(|count| *count -= 1);
            if *count.borrow() == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}
