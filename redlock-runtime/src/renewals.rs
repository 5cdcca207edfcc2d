//! The watchdog of every guard: one timer task per process keeps the renewal deadlines (on the
//! runtime of the blocking API, which never stops) and starts each renewal on its guard's own
//! runtime when it is due. A task spawned and aborted per guard cost a tenth of the client's
//! work per lock cycle; here a guard costs two map updates, and the timer is woken only when a
//! deadline comes earlier than the one it sleeps until.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{LazyLock, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::Notify, task::AbortHandle};

use crate::{
    LockError,
    lease::{Hold, mark_lost, renew},
};

/// A guard's place in the schedule, until [`cancel`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration(u64);

struct Entry {
    hold: Hold,
    /// Where the guard was acquired: its renewals run there.
    runtime: Handle,
    /// When the next renewal is due; `None` while one runs.
    due: Option<Instant>,
    /// The renewal running now, stopped when the guard ends.
    running: Option<AbortHandle>,
}

#[derive(Default)]
struct State {
    entries: HashMap<u64, Entry>,
    due: BTreeSet<(Instant, u64)>,
    next_id: u64,
    /// When the timer wakes next; `None` if it waits for a first deadline.
    wakes_at: Option<Instant>,
    timer_started: bool,
}

#[derive(Default)]
struct Renewals {
    state: Mutex<State>,
    /// Wakes the timer for a deadline earlier than the one it sleeps until.
    earlier: Notify,
}

static RENEWALS: LazyLock<Renewals> = LazyLock::new(Renewals::default);

impl Renewals {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    /// Puts `id` in the schedule at `at`; whether the timer must be woken for it.
    fn schedule(&mut self, id: u64, at: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        entry.due = Some(at);
        entry.running = None;
        self.due.insert((at, id));
        self.wakes_at.is_none_or(|wakes_at| at < wakes_at)
    }
}

/// Renews the lock every third of its TTL from now until [`cancel`]; a failed renewal is
/// retried sooner, until the validity ends and the lock counts as lost.
pub(crate) fn register(hold: Hold, runtime: Handle) -> Registration {
    let renewals = &*RENEWALS;
    let at = Instant::now() + hold.lease.ttl / 3;
    let mut state = renewals.lock();
    if !state.timer_started {
        state.timer_started = true;
        crate::rt::spawn(timer());
    }
    let id = state.next_id;
    state.next_id += 1;
    let entry = Entry {
        hold,
        runtime,
        due: None,
        running: None,
    };
    state.entries.insert(id, entry);
    let wake = state.schedule(id, at);
    drop(state);
    if wake {
        renewals.earlier.notify_one();
    }
    Registration(id)
}

/// Ends the renewals of a guard, stopping one that is running.
pub(crate) fn cancel(Registration(id): Registration) {
    let mut state = RENEWALS.lock();
    let entry = state.entries.remove(&id);
    if let Some(at) = entry.as_ref().and_then(|entry| entry.due) {
        state.due.remove(&(at, id));
    }
    drop(state);
    if let Some(running) = entry.as_ref().and_then(|entry| entry.running.as_ref()) {
        running.abort();
    }
}

/// Sleeps until the earliest deadline (or an earlier one is scheduled) and starts the renewals
/// that are due.
async fn timer() {
    let renewals = &*RENEWALS;
    loop {
        let earlier = renewals.earlier.notified();
        let next = {
            let now = Instant::now();
            let mut state = renewals.lock();
            while let Some(&(at, id)) = state.due.first() {
                if at > now {
                    break;
                }
                state.due.pop_first();
                if let Some(entry) = state.entries.get_mut(&id) {
                    entry.due = None;
                    let job = renewal(id, entry.hold.clone());
                    // Started under the lock, so that `cancel` finds it to stop.
                    entry.running = Some(entry.runtime.spawn(job).abort_handle());
                }
            }
            let next = state.due.first().map(|&(at, _)| at);
            state.wakes_at = next;
            next
        };
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at.into()) => {}
                    () = earlier => {}
                }
            }
            None => earlier.await,
        }
    }
}

/// One renewal of a registered guard, then its next deadline (if the lock is still held).
async fn renewal(id: u64, hold: Hold) {
    let Hold { lease, validity } = &hold;
    let next = match renew(lease, validity).await {
        Ok(()) => Some(Instant::now() + lease.ttl / 3),
        Err(LockError::Lost { .. }) => None,
        Err(error) => {
            let valid_until = validity.borrow().valid_until;
            if Instant::now() >= valid_until {
                mark_lost(
                    lease,
                    validity,
                    "no quorum renewed it before its validity ended",
                );
                None
            } else {
                tracing::warn!(lock = %lease.name, %error, "redlock: renewal failed; retrying");
                let retry = lease
                    .backend
                    .config
                    .retry_delay
                    .max(Duration::from_millis(1));
                Some((Instant::now() + retry).min(valid_until))
            }
        }
    };
    let renewals = &*RENEWALS;
    let mut state = renewals.lock();
    let wake = match next {
        Some(at) => state.schedule(id, at),
        None => {
            let ended = state.entries.remove(&id);
            drop(state);
            drop(ended);
            return;
        }
    };
    drop(state);
    if wake {
        renewals.earlier.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::Arc,
        time::{Duration, Instant},
    };

    use super::{Entry, State};
    use crate::{
        Config,
        backend::Backend,
        keys::LockKeys,
        lease::{Hold, Lease},
    };

    fn entry(runtime: &tokio::runtime::Runtime) -> Entry {
        let backend = Backend::new(Config::new(["redis://127.0.0.1:1"])).unwrap();
        let lease = Lease {
            backend: Arc::new(backend),
            name: "renewed".into(),
            stats_name: None,
            acquired_at: Instant::now(),
            keys: LockKeys::new("renewed"),
            value: "value".into(),
            ttl: Duration::from_secs(30),
            released: Default::default(),
            lines: Arc::default(),
            fencing_token: tokio::sync::OnceCell::new(),
        };
        Entry {
            hold: Hold::new(lease, Instant::now() + Duration::from_secs(30)),
            runtime: runtime.handle().clone(),
            due: None,
            running: None,
        }
    }

    #[test]
    fn the_timer_is_woken_only_for_an_earlier_deadline() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut state = State::default();
        for id in 1..=3 {
            state.entries.insert(id, entry(&runtime));
        }
        let now = Instant::now();
        // The timer waits for a first deadline: any deadline wakes it.
        assert!(state.schedule(1, now + Duration::from_secs(10)));
        state.wakes_at = Some(now + Duration::from_secs(10));
        assert!(!state.schedule(2, now + Duration::from_secs(20)), "later");
        assert!(state.schedule(3, now + Duration::from_secs(5)), "earlier");
        let order: Vec<u64> = state.due.iter().map(|&(_, id)| id).collect();
        assert_eq!(order, [3, 1, 2]);
        assert_eq!(state.entries[&3].due, Some(now + Duration::from_secs(5)));
        // A guard whose renewals were cancelled is not scheduled again.
        assert!(!state.schedule(4, now));
        assert_eq!(state.due.len(), 3);
    }
}
