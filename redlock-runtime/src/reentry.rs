//! Re-entry detection: a task (or, in blocking code, a thread) that asks for a lock it already
//! holds would wait for itself forever, since its own guard keeps renewing the lock. The
//! request fails at once with [`LockError::Reentered`](crate::LockError::Reentered) instead.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    thread::ThreadId,
};

use tokio::sync::watch;

use crate::guard::{Hold, Lease};

/// Who holds a lock in this process: the tokio task that acquired it, or the thread of a
/// blocking call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    Task(tokio::task::Id),
    Thread(ThreadId),
}

impl Holder {
    /// The current tokio task; outside any task (the future given to `block_on`, as in
    /// `#[tokio::main]`), the thread that polls it, which stays the same.
    pub(crate) fn current() -> Self {
        tokio::task::try_id().map_or_else(Self::current_thread, Self::Task)
    }

    /// The current thread.
    pub(crate) fn current_thread() -> Self {
        Self::Thread(std::thread::current().id())
    }
}

/// One hold of this client: who holds it, and (weakly) the guard's state that a re-entrant
/// request shares.
#[derive(Debug)]
struct Entry {
    holder: Holder,
    lease: Weak<Lease>,
    hold: Weak<watch::Sender<Hold>>,
}

/// The state of a hold that a re-entrant request shares.
pub(crate) type SharedHold = (Arc<Lease>, Arc<watch::Sender<Hold>>);

/// The locks this client holds, by lock key, with their holders.
#[derive(Debug, Default)]
pub(crate) struct Holders(Mutex<HashMap<Arc<str>, Entry>>);

impl Holders {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state of `holder`'s hold of `key`, if it holds it.
    pub(crate) fn held_by(&self, key: &str, holder: Holder) -> Option<SharedHold> {
        let map = self.map();
        let entry = map.get(key).filter(|entry| entry.holder == holder)?;
        Some((entry.lease.upgrade()?, entry.hold.upgrade()?))
    }

    pub(crate) fn insert(&self, key: &Arc<str>, holder: Holder, (lease, hold): &SharedHold) {
        let entry = Entry {
            holder,
            lease: Arc::downgrade(lease),
            hold: Arc::downgrade(hold),
        };
        self.map().insert(Arc::clone(key), entry);
    }

    /// Forgets `holder`'s hold of `key` (and nobody else's).
    pub(crate) fn remove(&self, key: &str, holder: Holder) {
        let mut map = self.map();
        if map.get(key).is_some_and(|entry| entry.holder == holder) {
            map.remove(key);
        }
    }
}
