//! What a holder owns: the guard of a hold, with its renewals (scheduled in `renewals`), the
//! lost-lock signal, release, extend, and the background release when dropped.

use std::{sync::Arc, time::Instant};

use tokio::runtime::Handle;

use crate::{
    LockError,
    background::BackgroundReleases,
    lease::{Hold, Validity, release_everywhere, renew, take_fencing_token},
    observe,
    reentry::{Owner, Owners},
    renewals::{self, Registration},
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
    state: Option<GuardState>,
}

#[derive(Debug)]
struct GuardState {
    hold: Hold,
    /// Its place in the renewal schedule (see `renewals`), with `auto_extend`.
    watchdog: Option<Registration>,
    /// Who acquired it, and the client's record of owners (see `reentry`).
    owner: Owner,
    owners: Arc<Owners>,
    /// A re-entrant guard inside the outer one: it releases nothing, the outer guard does.
    nested: bool,
}

impl LockGuard {
    /// The guard of a new hold by `owner`, recorded in `owners`; renewed by the watchdog with
    /// `auto_extend`.
    pub(crate) fn new(hold: Hold, auto_extend: bool, owner: Owner, owners: Arc<Owners>) -> Self {
        let watchdog = auto_extend.then(|| renewals::register(hold.clone(), Handle::current()));
        owners.insert(owner, &hold);
        Self::with(hold, watchdog, owner, owners, false)
    }

    /// A guard inside `owner`'s own hold (a `reentrant` request): the same lock and state,
    /// released by the outer guard only.
    pub(crate) fn nested(hold: Hold, owner: Owner, owners: Arc<Owners>) -> Self {
        Self::with(hold, None, owner, owners, true)
    }

    fn with(
        hold: Hold,
        watchdog: Option<Registration>,
        owner: Owner,
        owners: Arc<Owners>,
        nested: bool,
    ) -> Self {
        Self {
            state: Some(GuardState {
                hold,
                watchdog,
                owner,
                owners,
                nested,
            }),
        }
    }

    fn state(&self) -> &GuardState {
        self.state
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
        &self.state().hold.lease.name
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
        &self.state().hold.lease.value
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
        self.state().hold.validity.borrow().valid_until
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
        self.state().hold.validity.borrow().is_lost(Instant::now())
    }

    /// Resolves as soon as the lock is lost (see [`is_lost`](Self::is_lost)); never while it
    /// is held. Race it against the critical section to stop work that lost its lock.
    ///
    /// # Cancel safety
    ///
    /// Safe to drop at any point: it only watches the hold, which goes on.
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
        let mut validity = self.state().hold.validity.subscribe();
        async move {
            loop {
                let known: Validity = *validity.borrow_and_update();
                if known.is_lost(Instant::now()) {
                    return;
                }
                tokio::select! {
                    changed = validity.changed() => if changed.is_err() { return },
                    () = tokio::time::sleep_until(known.valid_until.into()) => {}
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
        let lease = Arc::clone(&self.state().hold.lease);
        async move {
            lease
                .fencing_token
                .get_or_try_init(|| take_fencing_token(&lease))
                .await
                .copied()
        }
    }

    /// Resets the lock's TTL to its `auto_release_time` on every master, if it is still ours on
    /// a quorum. The watchdog does this on its own; call it when `auto_extend` is off.
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] if it is no longer ours on a quorum (the guard then counts as lost);
    /// [`LockError::Unavailable`] if too many masters failed to tell.
    ///
    /// # Cancel safety
    ///
    /// Safe to drop: an extension that reached some masters only lengthens the TTL there.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("long-job").auto_extend(false).await?;
    /// guard.extend().await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&self) -> Result<(), LockError> {
        let hold = &self.state().hold;
        renew(&hold.lease, &hold.validity).await
    }

    /// Releases the lock on every master (or, with a `min_hold` not yet over, leaves it held
    /// until then).
    ///
    /// # Errors
    ///
    /// [`LockError::Lost`] if it was no longer ours on a quorum; [`LockError::Unavailable`] if
    /// too many masters failed to tell (the key then expires with its TTL).
    ///
    /// # Cancel safety
    ///
    /// The guard is consumed: dropping this future before it completes may leave the lock on
    /// the masters whose release was not sent yet; there it expires with its TTL. To release
    /// without waiting, drop the guard instead (the release then runs in the background).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// guard.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn release(mut self) -> Result<(), LockError> {
        let state = self
            .state
            .take()
            .expect("a LockGuard holds its lock until consumed");
        if state.nested {
            return Ok(());
        }
        state.stop_holding();
        release_everywhere(&state.hold.lease).await
    }
}

impl GuardState {
    /// The end of the hold in this process: no more renewals, no more re-entry detection.
    fn stop_holding(&self) {
        if let Some(watchdog) = self.watchdog {
            renewals::cancel(watchdog);
        }
        let lease = &self.hold.lease;
        self.owners.remove(&lease.keys.lock, self.owner);
        observe::hold_ended(
            &lease.name,
            lease.stats_name.as_deref(),
            lease.acquired_at.elapsed(),
        );
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let Some(state) = self.state.take().filter(|state| !state.nested) else {
            return;
        };
        state.stop_holding();
        let lease = Arc::clone(&state.hold.lease);
        let ticket = lease.backend.background.start(&lease.keys.lock);
        // On the private runtime, which the process lets finish before it exits: the
        // application's runtime may be shutting down (a guard dropped as `main` returns).
        BackgroundReleases::spawn(ticket, async move {
            let released = release_everywhere(&lease).await;
            if let Err(error) = released {
                tracing::warn!(lock = %lease.name, %error, "redlock: background release failed; the lock expires with its TTL");
            }
        });
    }
}

/// Logs a release that failed after the work it guarded (`work`: "the body", "the request"):
/// a lost lock means the work may have run beside another holder (ERROR); any other failure
/// only that the key stays until its TTL (WARN).
pub(crate) fn log_failed_release(name: &str, error: &LockError, work: &str) {
    if matches!(error, LockError::Lost { .. }) {
        tracing::error!(lock = %name, %error, "redlock: the lock was not held to the end of {work}");
    } else {
        tracing::warn!(lock = %name, %error, "redlock: the lock could not be released after {work}; it expires with its TTL");
    }
}
