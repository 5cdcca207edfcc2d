//! The watchdog of every guard: one timer task per process keeps the renewal deadlines (on the
//! runtime of the blocking API, which never stops) and renews the guards that are due in
//! batches: those of one client and one runtime in one task, on that runtime, with one
//! pipelined round trip per master (see `lease::renew_many`). A task spawned and aborted per
//! guard cost a tenth of the client's work per lock cycle, and a script call per renewal cost
//! more client work than a lock cycle; here a guard costs two map updates, the timer is woken
//! only when a deadline comes earlier than the one it sleeps until, and deadlines that fall
//! close together are renewed together.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, LazyLock, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use tokio::{runtime::Handle, sync::Notify};

use crate::{
    LockError,
    backend::Backend,
    lease::{Hold, mark_lost, renew_many},
    rt,
};

/// How much earlier than due a renewal may run to join a batch, at most: renewals fall due
/// every third of a TTL, so a few milliseconds early cost nothing, and guards taken close
/// together (a worker that starts many jobs at once) share their round trips from then on. A
/// short TTL allows a thirtieth of itself (a tenth of its renewal period).
const BATCH_WINDOW: Duration = Duration::from_millis(20);

/// The most renewals in one pipeline: a larger batch is split, so that no single reply takes
/// long enough to reach a call's time bound on a busy master.
const BATCH_MAX: usize = 1000;

/// A guard's place in the schedule, until [`cancel`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Registration(u64);

struct Entry {
    hold: Hold,
    /// Where the guard was acquired: its renewals run there.
    runtime: Handle,
    /// From when the next renewal may run (its deadline less its share of [`BATCH_WINDOW`]);
    /// `None` while one runs.
    due: Option<Instant>,
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
        rt::lock(&self.state)
    }
}

impl State {
    /// Puts `id` in the schedule, due at `deadline`; whether the timer must be woken for it.
    fn schedule(&mut self, id: u64, deadline: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(&id) else {
            return false;
        };
        let early = (entry.hold.lease.ttl / 30).min(BATCH_WINDOW);
        let at = deadline.checked_sub(early).unwrap_or(deadline);
        entry.due = Some(at);
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
    };
    state.entries.insert(id, entry);
    let wake = state.schedule(id, at);
    drop(state);
    if wake {
        renewals.earlier.notify_one();
    }
    Registration(id)
}

/// Ends the renewals of a guard. One running now (in a batch) finishes; its outcome is
/// ignored, and a release that started first keeps it from counting as a loss.
pub(crate) fn cancel(Registration(id): Registration) {
    let mut state = RENEWALS.lock();
    let entry = state.entries.remove(&id);
    if let Some(at) = entry.as_ref().and_then(|entry| entry.due) {
        state.due.remove(&(at, id));
    }
    drop(state);
    drop(entry);
}

/// Renewals due together that one task runs: the guards of one client on one runtime.
struct Batch {
    runtime: Handle,
    backend: Arc<Backend>,
    guards: Vec<(u64, Hold)>,
}

/// Sleeps until the earliest deadline (or an earlier one is scheduled) and starts the renewals
/// that are due, in batches.
async fn timer() {
    let renewals = &*RENEWALS;
    loop {
        let earlier = renewals.earlier.notified();
        let (batches, next) = {
            let mut state = renewals.lock();
            let batches = take_due(&mut state, Instant::now());
            let next = state.due.first().map(|&(at, _)| at);
            state.wakes_at = next;
            (batches, next)
        };
        for Batch {
            runtime,
            backend,
            mut guards,
        } in batches
        {
            while !guards.is_empty() {
                let rest = guards.split_off(guards.len().min(BATCH_MAX));
                let job = renew_batch(Arc::clone(&backend), std::mem::replace(&mut guards, rest));
                // A runtime that shut down drops the job: its guards are not renewed again,
                // as a task of theirs would not be.
                drop(runtime.spawn(job));
            }
        }
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

/// Takes the renewals that may run by `until` out of the schedule, grouped by client and
/// runtime.
fn take_due(state: &mut State, until: Instant) -> Vec<Batch> {
    let mut batches: Vec<Batch> = Vec::new();
    while let Some(&(at, id)) = state.due.first() {
        if at > until {
            break;
        }
        state.due.pop_first();
        let Some(entry) = state.entries.get_mut(&id) else {
            continue;
        };
        entry.due = None;
        let backend = &entry.hold.lease.backend;
        let together = |batch: &&mut Batch| {
            Arc::ptr_eq(&batch.backend, backend) && batch.runtime.id() == entry.runtime.id()
        };
        match batches.iter_mut().find(together) {
            Some(batch) => batch.guards.push((id, entry.hold.clone())),
            None => batches.push(Batch {
                runtime: entry.runtime.clone(),
                backend: Arc::clone(backend),
                guards: vec![(id, entry.hold.clone())],
            }),
        }
    }
    batches
}

/// One renewal of each guard of a batch, then their next deadlines (for those still held).
async fn renew_batch(backend: Arc<Backend>, guards: Vec<(u64, Hold)>) {
    let (ids, holds): (Vec<u64>, Vec<Hold>) = guards.into_iter().unzip();
    let outcomes = renew_many(&backend, &holds).await;
    let now = Instant::now();
    let next: Vec<(u64, Option<Instant>)> = ids
        .into_iter()
        .zip(holds.iter().zip(outcomes))
        .map(|(id, (hold, renewed))| (id, next_renewal(hold, renewed, now)))
        .collect();
    let renewals = &*RENEWALS;
    let mut state = renewals.lock();
    let mut wake = false;
    let mut ended = Vec::new();
    for (id, at) in next {
        match at {
            Some(at) => wake |= state.schedule(id, at),
            None => ended.extend(state.entries.remove(&id)),
        }
    }
    drop(state);
    drop(ended);
    if wake {
        renewals.earlier.notify_one();
    }
}

/// When a guard renews next after a renewal: a third of its TTL later, sooner after a
/// failure; never once it is lost (marked so here when no quorum renewed it in time).
fn next_renewal(hold: &Hold, renewed: Result<(), LockError>, now: Instant) -> Option<Instant> {
    let Hold { lease, validity } = hold;
    match renewed {
        Ok(()) => Some(now + lease.ttl / 3),
        Err(LockError::Lost { .. }) => None,
        Err(error) => {
            let valid_until = validity.borrow().valid_until;
            if now >= valid_until {
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
                Some((now + retry).min(valid_until))
            }
        }
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
            hold_until: None,
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
        // A 30 s TTL may renew up to 20 ms early, to join a batch.
        assert_eq!(
            state.entries[&3].due,
            Some(now + Duration::from_secs(5) - Duration::from_millis(20))
        );
        // A guard whose renewals were cancelled is not scheduled again.
        assert!(!state.schedule(4, now));
        assert_eq!(state.due.len(), 3);
    }
}
