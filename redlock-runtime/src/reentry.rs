//! Re-entry detection: a task (or, in blocking code, a thread) that asks for a lock it already
//! holds would wait for itself forever, since its own guard keeps renewing the lock. The
//! request fails at once with [`LockError::Reentered`](crate::LockError::Reentered) instead.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    thread::ThreadId,
};

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

/// The locks this client holds, by lock key, with their holders.
#[derive(Debug, Default)]
pub(crate) struct Holders(Mutex<HashMap<Arc<str>, Holder>>);

impl Holders {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Holder>> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether `holder` already holds the lock `key`.
    pub(crate) fn holds(&self, key: &str, holder: Holder) -> bool {
        self.map().get(key) == Some(&holder)
    }

    pub(crate) fn insert(&self, key: &Arc<str>, holder: Holder) {
        self.map().insert(Arc::clone(key), holder);
    }

    /// Forgets `holder`'s hold of `key` (and nobody else's).
    pub(crate) fn remove(&self, key: &str, holder: Holder) {
        let mut map = self.map();
        if map.get(key) == Some(&holder) {
            map.remove(key);
        }
    }
}
