//! Re-entry detection: a task (or, in blocking code, a thread) that asks for a lock it already
//! holds would wait for itself forever, since its own guard keeps renewing the lock. The
//! request fails at once with [`LockError::Reentered`](crate::LockError::Reentered) instead.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, Weak},
    thread::ThreadId,
};

use tokio::sync::watch;

use crate::{
    lease::{Hold, Lease, Validity},
    rt,
};

/// Who owns a hold in this process: the tokio task that acquired it, or the thread of a
/// blocking call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    Task(tokio::task::Id),
    Thread(ThreadId),
}

impl Owner {
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

/// One hold of this client: who owns it, and (weakly) the hold that a re-entrant request
/// shares.
#[derive(Debug)]
struct Entry {
    owner: Owner,
    lease: Weak<Lease>,
    validity: Weak<watch::Sender<Validity>>,
}

/// The locks this client holds, by lock key, with their owners.
#[derive(Debug, Default)]
pub(crate) struct Owners(Mutex<HashMap<Arc<str>, Entry>>);

impl Owners {
    fn map(&self) -> MutexGuard<'_, HashMap<Arc<str>, Entry>> {
        rt::lock(&self.0)
    }

    /// `owner`'s hold of `key`, if it owns one.
    pub(crate) fn hold_of(&self, key: &str, owner: Owner) -> Option<Hold> {
        let map = self.map();
        let entry = map.get(key).filter(|entry| entry.owner == owner)?;
        Some(Hold {
            lease: entry.lease.upgrade()?,
            validity: entry.validity.upgrade()?,
        })
    }

    pub(crate) fn insert(&self, owner: Owner, hold: &Hold) {
        let entry = Entry {
            owner,
            lease: Arc::downgrade(&hold.lease),
            validity: Arc::downgrade(&hold.validity),
        };
        self.map().insert(Arc::clone(&hold.lease.keys.lock), entry);
    }

    /// Forgets `owner`'s hold of `key` (and nobody else's).
    pub(crate) fn remove(&self, key: &str, owner: Owner) {
        let mut map = self.map();
        if map.get(key).is_some_and(|entry| entry.owner == owner) {
            map.remove(key);
        }
    }
}
