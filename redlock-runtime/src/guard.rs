//! A held lock: its renewals (scheduled in `renewals`), the lost-lock signal, release, extend,
//! and the background release when dropped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::Script;
use tokio::{runtime::Handle, sync::watch};

use crate::{
    LockError, MasterFailure,
    acquire::{LockKeys, RESERVATION, drift},
    config::Shared,
    observe,
    quorum::{Verdict, fan_out},
    reentry::{Holder, SharedHold},
    renewals::{self, Registration},
    rt,
    scripts::{self, ScriptCall},
};

/// Proof that this client holds a lock. Release it with [`LockGuard::release`] to learn the
/// outcome; dropping it releases in the background at once (an early return, `?`, a panic, a
/// cancelled future), and `Drop` never blocks.
///
/// While the guard lives, a watchdog renews the lock every third of its TTL (unless the
/// request said `auto_extend(false)`). When the lock is lost (deleted or replaced on a quorum,
/// or not renewable before its validity ends) [`is_lost`](Self::is_lost) turns true,
/// [`lost`](Self::lost) resolves and a `tracing` error is logged.
///
/// ```no_run
/// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
/// let guard = redlock.lock("reindex").await?;
/// tokio::select! {
///     _ = guard.lost() => return Err(redlock_runtime::LockError::Lost { name: "reindex".into() }),
///     _ = async { /* the long critical section */ } => {}
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    /// Taken only by `release`, which consumes the guard.
    held: Option<Held>,
}

/// What identifies one hold of the lock on the masters; shared with the watchdog and with
/// re-entrant guards.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) shared: Arc<Shared>,
    pub(crate) name: String,
    /// Groups the lock in waiting statistics and metrics.
    pub(crate) stats_name: Option<String>,
    pub(crate) acquired_at: Instant,
    pub(crate) keys: Arc<LockKeys>,
    pub(crate) value: Arc<str>,
    pub(crate) ttl: Duration,
    /// Taken on first request, then the same for this hold (nested guards included).
    pub(crate) fencing_token: tokio::sync::OnceCell<u64>,
}

/// What is known of the lock's hold, updated by the watchdog and by `extend`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hold {
    pub(crate) valid_until: Instant,
    lost: bool,
}

#[derive(Debug)]
struct Held {
    lease: Arc<Lease>,
    hold: Arc<watch::Sender<Hold>>,
    /// Its place in the renewal schedule (see `renewals`), with `auto_extend`.
    watchdog: Option<Registration>,
    /// Where `Drop` spawns the release; captured while acquiring, inside a runtime.
    /// Who acquired it, for re-entry detection (see `reentry`).
    holder: Holder,
    /// A re-entrant guard inside the outer one: it releases nothing, the outer guard does.
    nested: bool,
}

impl LockGuard {
    pub(crate) fn new(
        lease: Lease,
        valid_until: Instant,
        auto_extend: bool,
        holder: Holder,
    ) -> Self {
        let lease = Arc::new(lease);
        let hold = Arc::new(watch::Sender::new(Hold {
            valid_until,
            lost: false,
        }));
        let watchdog = auto_extend
            .then(|| renewals::register(Arc::clone(&lease), Arc::clone(&hold), Handle::current()));
        let shared = (lease, hold);
        let key = Arc::clone(&shared.0.keys.lock);
        shared.0.shared.holders.insert(&key, holder, &shared);
        Self::with(shared, watchdog, holder, false)
    }

    /// A guard inside `holder`'s own hold (a `reentrant` request): the same lock and state,
    /// released by the outer guard only.
    pub(crate) fn nested(shared: SharedHold, holder: Holder) -> Self {
        Self::with(shared, None, holder, true)
    }

    fn with(
        (lease, hold): SharedHold,
        watchdog: Option<Registration>,
        holder: Holder,
        nested: bool,
    ) -> Self {
        Self {
            held: Some(Held {
                lease,
                hold,
                watchdog,
                holder,
                nested,
            }),
        }
    }

    fn held(&self) -> &Held {
        self.held
            .as_ref()
            .expect("a LockGuard holds its lock until consumed")
    }

    /// The lock name.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// assert_eq!(guard.name(), "report");
    /// # Ok(()) }
    /// ```
    pub fn name(&self) -> &str {
        &self.held().lease.name
    }

    /// The random value (a UUID v4) that marks this holder in Redis.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// assert_eq!(guard.value().len(), 36);
    /// # Ok(()) }
    /// ```
    pub fn value(&self) -> &str {
        &self.held().lease.value
    }

    /// Until when the lock is certainly ours: the Redlock validity (TTL minus the time the
    /// acquisition or the last renewal took, minus the clock-drift allowance).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// assert!(guard.valid_until() > std::time::Instant::now());
    /// # Ok(()) }
    /// ```
    pub fn valid_until(&self) -> Instant {
        self.held().hold.borrow().valid_until
    }

    /// Whether the lock can no longer be counted on: found deleted or replaced, or its
    /// validity ran out before a renewal.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// if guard.is_lost() {
    ///     return Err(redlock_runtime::LockError::Lost { name: guard.name().into() });
    /// }
    /// # Ok(()) }
    /// ```
    pub fn is_lost(&self) -> bool {
        let hold = *self.held().hold.borrow();
        hold.lost || Instant::now() >= hold.valid_until
    }

    /// Resolves as soon as the lock is lost (see [`is_lost`](Self::is_lost)); never while it
    /// is held. Race it against the critical section to stop work that lost its lock.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// tokio::select! {
    ///     _ = guard.lost() => eprintln!("lost the lock: stopping"),
    ///     _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {}
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lost(&self) {
        self.when_lost().await;
    }

    /// [`lost`](Self::lost) as a future that borrows nothing (for the blocking API).
    pub(crate) fn when_lost(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut hold = self.held().hold.subscribe();
        async move {
            loop {
                let Hold { valid_until, lost } = *hold.borrow_and_update();
                if lost || Instant::now() >= valid_until {
                    return;
                }
                tokio::select! {
                    changed = hold.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(valid_until.into()) => {}
                }
            }
        }
    }

    /// A fencing token for this hold: a number strictly greater than the token of any earlier
    /// holder of this lock name, for as long as a majority of masters keep their data (the
    /// assumption Redlock itself makes). Pass it to the storage you protect, which rejects
    /// writes with a smaller token than it has seen: a holder that lost its lock (a long GC
    /// pause, a network partition) cannot then overwrite the next holder's work.
    ///
    /// It costs nothing until asked for; then one round trip with one master, two with several
    /// (the highest counter of a quorum is written back to a majority before it is returned).
    /// The counter `{redlock:ConfigurableLock.<name>}:fence` is kept without TTL.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("ledger").await?;
    /// let token = guard.fencing_token().await?;
    /// // storage.write_if_newer(token, entry)
    /// # Ok(()) }
    /// ```
    pub async fn fencing_token(&self) -> Result<u64, LockError> {
        self.take_fencing_token().await
    }

    /// [`fencing_token`](Self::fencing_token) as a future that borrows nothing (for the
    /// blocking API).
    pub(crate) fn take_fencing_token(
        &self,
    ) -> impl Future<Output = Result<u64, LockError>> + Send + 'static {
        let lease = Arc::clone(&self.held().lease);
        async move {
            lease
                .fencing_token
                .get_or_try_init(|| take_fencing_token(&lease))
                .await
                .copied()
        }
    }

    /// Resets the lock's TTL to its `auto_release_time` on every master, if it is still ours on
    /// a quorum; otherwise [`LockError::Lost`] (and the guard counts as lost). The watchdog
    /// does this on its own; call it when `auto_extend` is off.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("long-job").auto_extend(false).await?;
    /// guard.extend().await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self) -> Result<(), LockError> {
        let held = self.held();
        renew(&held.lease, &held.hold).await
    }

    /// Releases the lock on every master. [`LockError::Lost`] if it was no longer ours on a
    /// quorum; [`LockError::Unavailable`] if too many masters failed to tell.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<(), LockError> {
        let held = self
            .held
            .take()
            .expect("a LockGuard holds its lock until consumed");
        if held.nested {
            return Ok(());
        }
        held.stop_holding();
        release_everywhere(&held.lease).await
    }
}

impl Held {
    /// The end of the hold in this process: no more renewals, no more re-entry detection.
    fn stop_holding(&self) {
        if let Some(watchdog) = self.watchdog {
            renewals::cancel(watchdog);
        }
        let lease = &self.lease;
        lease.shared.holders.remove(&lease.keys.lock, self.holder);
        observe::hold_ended(
            &lease.name,
            lease.stats_name.as_deref(),
            lease.acquired_at.elapsed(),
        );
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(held) = self.held.take().filter(|held| !held.nested) else {
            return;
        };
        held.stop_holding();
        let lease = held.lease;
        let ticket = lease.shared.background.start(&lease.keys.lock);
        // On the private runtime, which the process lets finish before it exits: the
        // application's runtime may be shutting down (a guard dropped as `main` returns).
        rt::spawn_background(async move {
            let _ticket = ticket;
            let released = release_everywhere(&lease).await;
            if let Err(error) = released {
                tracing::warn!(lock = %lease.name, %error, "redlock: background release failed; the lock expires with its TTL");
            }
        });
    }
}

/// Extends the lock and records the outcome: a fresh validity, or the loss.
pub(crate) async fn renew(lease: &Lease, hold: &watch::Sender<Hold>) -> Result<(), LockError> {
    let started = Instant::now();
    let ttl_ms = lease.ttl.as_millis() as u64;
    let renewed = owned_round(lease, &scripts::EXTEND, |call| call.arg(ttl_ms))
        .await
        .map(drop);
    match &renewed {
        Ok(()) => {
            let validity = lease
                .ttl
                .saturating_sub(started.elapsed() + drift(lease.ttl));
            hold.send_modify(|hold| hold.valid_until = hold.valid_until.max(started + validity));
        }
        Err(LockError::Lost { .. }) => mark_lost(lease, hold, "the key was deleted or replaced"),
        Err(_) => {}
    }
    renewed
}

pub(crate) fn mark_lost(lease: &Lease, hold: &watch::Sender<Hold>, why: &str) {
    let newly = hold.send_if_modified(|hold| !std::mem::replace(&mut hold.lost, true));
    if newly {
        tracing::error!(lock = %lease.name, why, "redlock: lock lost");
        observe::lost(&lease.name, lease.stats_name.as_deref());
    }
}

/// Releases on every master, handing the lock over to the first waiter (see `release.lua`).
async fn release_everywhere(lease: &Lease) -> Result<(), LockError> {
    let reservation_ms = RESERVATION.as_millis() as u64;
    owned_round(lease, &scripts::RELEASE, |call| {
        call.arg(lease.keys.channel()).arg(reservation_ms)
    })
    .await
    .map(drop)
}

/// The next fencing token: the highest counter of a quorum after incrementing each, written
/// back to a majority (with several masters) so that every later quorum sees it.
async fn take_fencing_token(lease: &Lease) -> Result<u64, LockError> {
    let token = owned_round(lease, &scripts::FENCE, |call| call.arg("next").arg(0)).await?;
    if lease.shared.masters.len() > 1 {
        owned_round(lease, &scripts::FENCE, |call| call.arg("raise").arg(token)).await?;
    }
    Ok(token)
}

/// Runs a script that acts only if the lock still holds our value (see
/// [`LockKeys::owned_call`]; `args` appends the rest) on every master, and decides
/// as soon as the outcome is certain: the highest reply once a quorum replied (a negative
/// reply means "not ours"), `Lost` once a quorum said "not ours", else `Unavailable`.
async fn owned_round(
    lease: &Lease,
    script: &'static Script,
    args: impl FnOnce(ScriptCall) -> ScriptCall,
) -> Result<u64, LockError> {
    let masters = &lease.shared.masters;
    let quorum = lease.shared.quorum();
    let (mut owned, mut not_owned, mut highest) = (0, 0, 0);
    let mut failures: Vec<MasterFailure> = Vec::new();
    let call = Arc::new(args(lease.keys.owned_call(script, &lease.value)));
    let stragglers = fan_out(
        masters,
        |master| {
            let call = Arc::clone(&call);
            async move {
                master
                    .call(|mut connection| async move { call.invoke::<i64>(&mut connection).await })
                    .await
            }
        },
        |index, reply| {
            match reply {
                Ok(reply) if reply >= 0 => {
                    owned += 1;
                    highest = highest.max(reply.unsigned_abs());
                }
                Ok(_) => not_owned += 1,
                Err(error) => failures.push(masters[index].failure(&error)),
            }
            if owned >= quorum || not_owned + failures.len() > masters.len() - quorum {
                Verdict::Decided
            } else {
                Verdict::Undecided
            }
        },
    )
    .await;
    stragglers.finish_in_background(|_, _| {});
    if owned >= quorum {
        Ok(highest)
    } else if not_owned > masters.len() - quorum {
        Err(LockError::Lost {
            name: lease.name.clone(),
        })
    } else {
        Err(LockError::Unavailable {
            name: lease.name.clone(),
            quorum,
            masters: masters.len(),
            failures,
        })
    }
}
