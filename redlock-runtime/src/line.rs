//! The local line of a lock: the tasks of this process that wait for the same lock queue in
//! memory, first come first served, behind one of them, their representative, which alone
//! waits in the lock's queue on the masters. So Redis work grows with the waiting processes,
//! not with their tasks (2,000 tasks of one process waiting for a lock cost the masters what
//! one waiter costs), and processes take turns: a representative that got the lock hands the
//! turn on, and the next task of the line queues on the masters behind the other processes'
//! representatives.
//!
//! Every request that may wait takes the turn for its first attempt too (a plain `SET`), so a
//! burst of requests for one lock sends one plain `SET`, and the others wait in the line.
//!
//! A line also remembers until when a release of this process left the lock free for waiters
//! of the Python library (see `release.lua`): a new request of this process joins the line
//! instead of taking the lock with a plain `SET` in their window.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Instant,
};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::{LockError, rt};

/// The lines of one client's locks that have a request in flight (or a window for foreign
/// waiters).
#[derive(Debug, Default)]
pub(crate) struct Lines(Mutex<HashMap<Arc<str>, Line>>);

#[derive(Debug)]
struct Line {
    /// One permit: the representative's. Tokio's semaphore is fair: the line is FIFO.
    turn: Arc<Semaphore>,
    /// Until when a release of ours left the lock to foreign waiters.
    foreign_window: Option<Instant>,
    /// What the representative's last attempt met, if no quorum answered it.
    outage: Option<LineOutage>,
}

/// An outage that the line's representative meets: the tasks behind it that give up in the
/// line end with its error, not with a timeout (nobody holds the lock), and the next
/// representative counts the outage from its start.
#[derive(Debug, Clone)]
pub(crate) struct LineOutage {
    /// Since when no attempt reached a quorum (`None`: masters in their restart grace, which
    /// vote again at a known time).
    pub(crate) since: Option<Instant>,
    /// The last attempt's error.
    pub(crate) error: LockError,
}

/// The representative's turn; the next task of the line gets it when this is dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    lines: Arc<Lines>,
    key: Arc<str>,
    permit: Option<OwnedSemaphorePermit>,
}

impl Lines {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Line>> {
        rt::lock(&self.0)
    }

    /// The turn on `key` at once, if nobody of this process has it or waits for it and no
    /// window for foreign waiters is open: the request may then try a plain `SET`. Otherwise
    /// (`None`), tasks of this process came first (the lock is busy), or a release of ours
    /// left it to foreign waiters: the request waits for its [`turn`](Self::turn) and
    /// queues. So a burst of requests for one lock sends the masters one plain `SET`, not one
    /// per task.
    pub(crate) fn try_turn(self: &Arc<Self>, key: &Arc<str>, now: Instant) -> Option<Turn> {
        let mut lines = self.lock();
        let line = lines.entry(Arc::clone(key)).or_insert_with(Line::new);
        if line.foreign_window.is_some_and(|end| now < end) {
            return None;
        }
        // A free permit means nobody waits either: a released permit goes to a waiter first.
        let permit = Arc::clone(&line.turn).try_acquire_owned().ok()?;
        Some(Turn {
            lines: Arc::clone(self),
            key: Arc::clone(key),
            permit: Some(permit),
        })
    }

    /// Records that a release of ours left `key` to foreign waiters until `end`.
    pub(crate) fn leave_to_foreign_waiters(&self, key: &Arc<str>, end: Instant) {
        let mut lines = self.lock();
        // Lines kept only for a window that has ended go now (so memory stays flat).
        let now = Instant::now();
        lines.retain(|_, line| !line.idle(now));
        lines
            .entry(Arc::clone(key))
            .or_insert_with(Line::new)
            .foreign_window = Some(end);
    }

    /// Records what the last attempt of `key`'s representative met (`None`: a quorum answered).
    pub(crate) fn report_outage(&self, key: &str, outage: Option<LineOutage>) {
        if let Some(line) = self.lock().get_mut(key) {
            line.outage = outage;
        }
    }

    /// The outage that `key`'s representative last reported, if any.
    pub(crate) fn outage(&self, key: &str) -> Option<LineOutage> {
        self.lock().get(key).and_then(|line| line.outage.clone())
    }

    /// Waits for the representative's turn on `key`, first come first served.
    pub(crate) async fn turn(self: &Arc<Self>, key: &Arc<str>) -> Turn {
        let turn = {
            let mut lines = self.lock();
            let line = lines.entry(Arc::clone(key)).or_insert_with(Line::new);
            Arc::clone(&line.turn)
        };
        let mut waiting = Turn {
            lines: Arc::clone(self),
            key: Arc::clone(key),
            permit: None,
        };
        // The semaphore is never closed.
        waiting.permit = turn.acquire_owned().await.ok();
        waiting
    }
}

impl Line {
    fn new() -> Self {
        Self {
            turn: Arc::new(Semaphore::new(1)),
            foreign_window: None,
            outage: None,
        }
    }

    /// Nobody waits for the turn or holds it (the map's handle is the only one), and no
    /// window for foreign waiters is open.
    fn idle(&self, now: Instant) -> bool {
        Arc::strong_count(&self.turn) == 1 && self.foreign_window.is_none_or(|end| now >= end)
    }
}

impl Drop for Turn {
    /// Hands the turn on, and forgets the line once nobody waits in it (also when this task
    /// gave up waiting for its turn), so that memory stays flat over many lock names.
    fn drop(&mut self) {
        drop(self.permit.take());
        let mut lines = self.lines.lock();
        if lines
            .get(&self.key)
            .is_some_and(|line| line.idle(Instant::now()))
        {
            lines.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use super::Lines;

    #[tokio::test]
    async fn the_turn_is_taken_first_come_first_served_and_the_line_forgotten_when_idle() {
        let lines = Arc::new(Lines::default());
        let key: Arc<str> = "lock".into();
        let now = Instant::now();
        let first = lines.try_turn(&key, now).expect("a free line");
        assert!(lines.try_turn(&key, now).is_none(), "taken");
        // The next task waits for the turn until the first hands it on.
        let second = tokio::spawn({
            let (lines, key) = (Arc::clone(&lines), Arc::clone(&key));
            async move { lines.turn(&key).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        drop(first);
        let second = second.await.unwrap();
        assert!(lines.try_turn(&key, now).is_none(), "taken by the second");
        drop(second);
        assert_eq!(lines.lock().len(), 0, "an idle line is forgotten");
        assert!(lines.try_turn(&key, now).is_some());
    }

    #[tokio::test]
    async fn a_window_for_foreign_waiters_keeps_plain_attempts_out_until_it_ends() {
        let lines = Arc::new(Lines::default());
        let key: Arc<str> = "lock".into();
        let now = Instant::now();
        let end = now + Duration::from_millis(250);
        lines.leave_to_foreign_waiters(&key, end);
        assert!(lines.try_turn(&key, now).is_none());
        assert!(lines.try_turn(&key, end).is_some());
        // A line kept only for a window that has ended is swept by the next window.
        lines.leave_to_foreign_waiters(&key, Instant::now());
        lines.leave_to_foreign_waiters(&"other".into(), Instant::now() + end.duration_since(now));
        assert!(!lines.lock().contains_key(&key));
        assert!(lines.lock().contains_key("other"));
    }
}
