//! Releases that run in the background (a dropped guard, the undo of a failed attempt), and
//! the wait for them to be issued before this process tries the same key again.
//!
//! Without that wait, a function that returns early and is called again at once could send
//! its new `SET` before the spawned release of the old lock, find its own stale key, and skip.
//! Issued is enough: each master's connection takes commands in the order they were issued
//! (see `Master::call`), so a later `SET` cannot overtake the release on any master. Waiting
//! for the replies instead made every attempt after a failed one wait for a paused master's
//! timeout.

use std::{
    collections::HashMap,
    future::Future,
    sync::{Arc, Mutex},
    task::Poll,
    time::Duration,
};

use tokio::sync::watch;

use crate::rt;

/// The background releases not issued yet, counted per lock key.
#[derive(Debug, Default)]
pub(crate) struct BackgroundReleases {
    in_flight: Mutex<HashMap<Arc<str>, watch::Sender<usize>>>,
}

/// One background release of `key`, counted until dropped (once it is issued).
#[derive(Debug)]
pub(crate) struct Ticket {
    releases: Arc<BackgroundReleases>,
    key: Arc<str>,
}

impl BackgroundReleases {
    /// Counts a background release of `key` until the ticket is dropped.
    pub(crate) fn start(self: &Arc<Self>, key: &Arc<str>) -> Ticket {
        let mut in_flight = rt::lock(&self.in_flight);
        in_flight
            .entry(Arc::clone(key))
            .or_insert_with(|| watch::Sender::new(0))
            .send_modify(|count| *count += 1);
        Ticket {
            releases: Arc::clone(self),
            key: Arc::clone(key),
        }
    }

    /// Runs `release` (of the key of `ticket`) in the background; the ticket ends once it is
    /// issued: polled once, which gives each of its calls its turn on its master's connection.
    pub(crate) fn spawn(ticket: Ticket, release: impl Future<Output = ()> + Send + 'static) {
        rt::spawn_background(async move {
            let mut release = std::pin::pin!(release);
            let first = std::future::poll_fn(|cx| Poll::Ready(release.as_mut().poll(cx))).await;
            drop(ticket);
            if first.is_pending() {
                release.await;
            }
        });
    }

    /// Waits until no background release of `key` is still to be issued, at most `bound`.
    pub(crate) async fn settled(&self, key: &str, bound: Duration) {
        let waiting = {
            let in_flight = rt::lock(&self.in_flight);
            in_flight.get(key).map(watch::Sender::subscribe)
        };
        if let Some(mut count) = waiting {
            let _ = tokio::time::timeout(bound, count.wait_for(|count| *count == 0)).await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut in_flight = rt::lock(&self.releases.in_flight);
        if let Some(count) = in_flight.get(&self.key) {
            count.send_modify(|count| *count -= 1);
            if *count.borrow() == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}
