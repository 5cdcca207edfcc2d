//! A lock request: its settings, checked, then handed over to the wait (`wait`); the guard
//! it returns.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::{Arc, atomic::AtomicBool},
    time::{Duration, Instant},
};

use tracing::Instrument;

use crate::{
    LockError, LockGuard, Timeout,
    client::Client,
    error::MAX_AUTO_RELEASE_TIME,
    keys::{LockKeys, companions_share_slot, waiting_key},
    lease::{Hold, Lease, confirm_grant},
    observe::Acquisition,
    permits::{self, MAX_PERMITS},
    quorum::drift,
    reentry::Owner,
    wait::{self, Granted},
};

/// The default TTL of a lock: 10 s, as pottery's and redsync's (8 s).
///
/// A held lock is renewed every third of its TTL while the holder lives (`auto_extend`), so
/// the TTL does not bound the work; it bounds how long a crashed holder blocks the lock, and
/// how long a master restarted without persistence sits out new locks
/// ([`RestartGrace::LockTtl`](crate::RestartGrace::LockTtl)). The Python library's default is
/// 30 s: a fleet that mixes Python workers with their default sets
/// `RestartGrace::AtLeast(Duration::from_secs(30))` (or `REDLOCK_RESTART_GRACE=30`).
///
/// ```
/// assert_eq!(redlock_runtime::DEFAULT_AUTO_RELEASE_TIME.as_secs(), 10);
/// ```
pub const DEFAULT_AUTO_RELEASE_TIME: Duration = Duration::from_secs(10);

/// A request for one lock, made by [`Redlock::lock`](crate::Redlock::lock); set its options, then `.await` it.
///
/// | option | default |
/// |---|---|
/// | [`timeout`](Self::timeout) | [`Timeout::Forever`] |
/// | [`auto_release_time`](Self::auto_release_time) | 10 s ([`DEFAULT_AUTO_RELEASE_TIME`]) |
/// | [`stats_name`](Self::stats_name) | the lock name |
/// | [`stats`](Self::stats) | `true` |
/// | [`auto_extend`](Self::auto_extend) | `true` |
/// | [`reentrant`](Self::reentrant) | `false` |
/// | [`min_hold`](Self::min_hold) | none |
///
/// # Errors
///
/// [`LockError::Timeout`] when another client holds the lock until the timeout ends (at once
/// for `Timeout::Skip`); [`LockError::SplitVote`] when contenders split the votes again after
/// the retries; [`LockError::Unavailable`] when too many masters fail for a quorum (at once if
/// they are misconfigured or in a restart grace that outlasts the timeout, else after
/// `Config::outage_timeout`); [`LockError::Reentered`] when this task already holds it and
/// would wait for itself; the `Invalid*` errors for bad options.
///
/// # Cancel safety
///
/// Dropping the future (a `select!` branch that lost, a timeout around it) gives up the
/// request cleanly: its place in the queue is left and its waiting statistics uncounted in
/// the background, and a grant that reaches it meanwhile is passed on to the next waiter or
/// released. No lock stays held by a request nobody awaits.
///
/// ```no_run
/// use std::time::Duration;
///
/// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
/// let guard = redlock
///     .lock("billing")
///     .timeout(2.5)
///     .auto_release_time(Duration::from_secs(60))
///     .stats_name("billing-workers")
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a lock request does nothing until it is awaited"]
pub struct LockRequest {
    client: Arc<Client>,
    name: String,
    timeout: Result<Timeout, LockError>,
    auto_release_time: Duration,
    stats_name: Option<String>,
    stats: bool,
    auto_extend: bool,
    reentrant: bool,
    min_hold: Duration,
    /// Who asks: set by the blocking API (the calling thread); else the current task.
    pub(crate) owner: Option<Owner>,
    /// How many holders the lock may have at once: 1, or a semaphore's permits
    /// ([`Redlock::semaphore`](crate::Redlock::semaphore)).
    pub(crate) permits: usize,
    /// Which permit of the semaphore `name` this is (see `permits`); 0 for a lock.
    pub(crate) permit: usize,
}

impl LockRequest {
    pub(crate) fn new(client: Arc<Client>, name: String) -> Self {
        Self {
            client,
            name,
            timeout: Ok(Timeout::Forever),
            auto_release_time: DEFAULT_AUTO_RELEASE_TIME,
            stats_name: None,
            stats: true,
            auto_extend: true,
            reentrant: false,
            min_hold: Duration::ZERO,
            owner: None,
            permits: 1,
            permit: 0,
        }
    }

    /// What to do while another client holds the lock: a [`Timeout`], a `Duration`, or the
    /// Python library's numbers (`-1`, `0`, `N` seconds). An invalid number fails the request
    /// with [`LockError::InvalidTimeout`].
    ///
    /// ```no_run
    /// use redlock_runtime::Timeout;
    ///
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let skip_if_held = redlock.lock("a").timeout(Timeout::Skip).await;
    /// let same = redlock.lock("a").timeout(-1).await;
    /// let up_to_5_s = redlock.lock("a").timeout(std::time::Duration::from_secs(5)).await;
    /// # Ok(()) }
    /// ```
    pub fn timeout<T>(mut self, timeout: T) -> Self
    where
        T: TryInto<Timeout>,
        LockError: From<T::Error>,
    {
        self.timeout = timeout.try_into().map_err(LockError::from);
        self
    }

    /// The lock's TTL: Redis deletes it after this long unless it is released or extended first.
    /// At least 3 ms; default 10 s ([`DEFAULT_AUTO_RELEASE_TIME`]). Without `auto_extend`, it
    /// must outlast the work.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("a").auto_release_time(std::time::Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    pub fn auto_release_time(mut self, ttl: Duration) -> Self {
        self.auto_release_time = ttl;
        self
    }

    /// The name under which waiters are counted (`Waiting.ConfigurableLock.<stats_name>`);
    /// the lock key does not change. Default: the lock name.
    ///
    /// Each stats name that ever had a waiter keeps three keys in Redis for good, as in the
    /// Python library (the counter, `Inserted.<counter>`, and an entry in
    /// `ConfigurableLockKeys`): give locks named after ids (`job:17`, `invoice:acme:1`) one
    /// stats name for the group, as below, or turn statistics off with [`stats`](Self::stats).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("job:17").stats_name("jobs").await?;
    /// # Ok(()) }
    /// ```
    pub fn stats_name(mut self, stats_name: impl Into<String>) -> Self {
        self.stats_name = Some(stats_name.into());
        self
    }

    /// Whether waiting is counted in the waiting statistics (see
    /// [`stats_name`](Self::stats_name) and [`Redlock::waiting`](crate::Redlock::waiting)). Default `true`, as in the
    /// Python library; `false` writes no statistics keys at all.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock, id: u64) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock(format!("invoice:{id}")).stats(false).await?;
    /// # Ok(()) }
    /// ```
    pub fn stats(mut self, stats: bool) -> Self {
        self.stats = stats;
        self
    }

    /// Whether the guard's watchdog renews the lock every third of its TTL while it is held.
    /// Default `true`; `false` keeps the fixed TTL of the Python library (renew with
    /// [`LockGuard::extend`]).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("a").auto_extend(false).await?;
    /// # Ok(()) }
    /// ```
    pub fn auto_extend(mut self, auto_extend: bool) -> Self {
        self.auto_extend = auto_extend;
        self
    }

    /// Whether a task (or thread) that already holds the lock gets it again: a nested guard that
    /// releases nothing, the outermost guard releasing the lock. Default `false`: such a request
    /// without deadline fails with [`LockError::Reentered`] (it would wait for itself forever).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let outer = redlock.lock("tree").await?;
    /// let inner = redlock.lock("tree").reentrant(true).await?; // no wait: the same holder
    /// inner.release().await?; // still held by `outer`
    /// outer.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn reentrant(mut self, reentrant: bool) -> Self {
        self.reentrant = reentrant;
        self
    }

    /// Hold the lock at least this long from its acquisition (ShedLock's `lockAtLeastFor`): a
    /// release before then leaves the key on the masters until `min_hold` has passed (the
    /// watchdog stops), so that other clients asking meanwhile skip or wait. For jobs that
    /// several replicas of a service schedule: their timers fire up to a few hundred
    /// milliseconds apart, and a short job released at once would run again on each. Choose
    /// it longer than the spread of the replicas' timers and shorter than the schedule's
    /// period. [`auto_release_time`](Self::auto_release_time) stays the "at most" bound of a
    /// holder that crashed. Default: none. Python clients see an ordinary held key.
    ///
    /// ```no_run
    /// use std::time::Duration;
    ///
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// // Every replica ticks each minute; the first one of a tick runs the report.
    /// if let Ok(guard) = redlock
    ///     .lock("nightly-report")
    ///     .timeout(-1)
    ///     .min_hold(Duration::from_secs(30))
    ///     .await
    /// {
    ///     // ... the report: 200 ms ...
    ///     guard.release().await?; // the key stays 30 s from the acquisition
    /// }
    /// # Ok(()) }
    /// ```
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.min_hold = min_hold;
        self
    }

    async fn acquire(mut self) -> Result<LockGuard, LockError> {
        if self.permits == 1 {
            return self.acquire_lock().await;
        }
        let invalid = |reason| LockError::InvalidPermits {
            name: self.name.clone(),
            permits: self.permits,
            reason,
        };
        if !(1..=MAX_PERMITS).contains(&self.permits) {
            return Err(invalid("a semaphore has from 1 to 64 permits"));
        }
        if self.reentrant {
            return Err(invalid(
                "a semaphore is not re-entrant: a task that holds a permit and asks again \
                 takes another one",
            ));
        }
        let timeout = self.timeout.clone()?;
        let owner = *self.owner.get_or_insert_with(Owner::current);
        // A permit this task holds is not asked for again: the task takes another one.
        let free: Vec<usize> = (0..self.permits)
            .filter(|&permit| {
                let keys = LockKeys::permit(&self.name, permit);
                self.client.owners.hold_of(&keys.lock, owner).is_none()
            })
            .collect();
        if free.is_empty() {
            return Err(match timeout {
                Timeout::Forever => LockError::Reentered { name: self.name },
                _ => LockError::Timeout {
                    name: self.name,
                    waited: Duration::ZERO,
                    votes: Vec::new(),
                },
            });
        }
        permits::take_any(free, timeout, |permit, timeout, counted| {
            let mut request = self.clone();
            request.permits = 1;
            request.permit = permit;
            request.timeout = Ok(timeout);
            request.stats &= counted;
            request.acquire_lock()
        })
        .await
    }

    /// Takes the lock (or the one permit `permit` of a semaphore).
    async fn acquire_lock(self) -> Result<LockGuard, LockError> {
        let Self {
            client,
            name,
            timeout,
            auto_release_time: ttl,
            stats_name,
            stats,
            auto_extend,
            reentrant,
            min_hold,
            owner,
            permits: _,
            permit,
        } = self;
        let timeout = timeout?;
        let keys = match checked_keys(&client, &name, permit, stats_name.as_deref(), stats, ttl) {
            Ok(keys) => keys,
            Err(reason) => return Err(reason.into_error(name, ttl)),
        };
        let owner = owner.unwrap_or_else(Owner::current);
        // Waiting without a deadline for a lock we hold ourselves would never end. (With `Skip`
        // or a deadline the answer is the usual `Timeout`: the lock is held, by us.)
        if let Some(hold) = client.owners.hold_of(&keys.lock, owner) {
            if reentrant {
                return Ok(LockGuard::nested(hold, owner, Arc::clone(&client.owners)));
            }
            if timeout == Timeout::Forever {
                return Err(LockError::Reentered { name });
            }
        }
        let ask = wait::Ask {
            name: &name,
            keys: &keys,
            ttl,
            timeout,
            stats_name: stats_name.as_deref().unwrap_or(&name),
            stats,
        };
        let Granted {
            value,
            valid_until,
            extend_now,
        } = wait::run(&client.backend, &client.waits, ask).await?;
        let acquired_at = Instant::now();
        let lease = Lease {
            backend: Arc::clone(&client.backend),
            name,
            stats_name,
            acquired_at,
            // Beyond the clock, the key is kept for as long as Redis counts.
            hold_until: (!min_hold.is_zero()).then(|| {
                acquired_at
                    .checked_add(min_hold)
                    .unwrap_or(acquired_at + MAX_AUTO_RELEASE_TIME)
            }),
            keys,
            value,
            ttl,
            released: AtomicBool::new(false),
            lines: Arc::clone(&client.waits.lines),
            fencing_token: tokio::sync::OnceCell::new(),
        };
        let hold = Hold::new(lease, valid_until);
        if extend_now {
            confirm_grant(&hold);
        }
        Ok(LockGuard::new(
            hold,
            auto_extend,
            owner,
            Arc::clone(&client.owners),
        ))
    }
}

impl IntoFuture for LockRequest {
    type Output = Result<LockGuard, LockError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        let timeout = self.timeout.as_ref().ok().copied();
        let acquisition = Acquisition::start(&self.name, self.stats_name.as_deref(), timeout);
        // Everything logged while acquiring (waits, retries, failures) carries the lock name.
        let span = tracing::debug_span!("redlock_acquire", lock = %self.name);
        Box::pin(
            async move {
                let result = self.acquire().await;
                acquisition.finish(&result);
                result
            }
            .instrument(span),
        )
    }
}

/// Why a request is refused before any master is asked.
enum Invalid {
    Name(&'static str),
    AutoReleaseTime,
}

impl Invalid {
    fn into_error(self, name: String, ttl: Duration) -> LockError {
        match self {
            Self::Name(reason) => LockError::InvalidName { name, reason },
            Self::AutoReleaseTime => LockError::InvalidAutoReleaseTime { name, value: ttl },
        }
    }
}

/// The lock's keys, once its name, stats name and TTL are valid for the client's masters.
fn checked_keys(
    client: &Client,
    name: &str,
    permit: usize,
    stats_name: Option<&str>,
    stats: bool,
    ttl: Duration,
) -> Result<Arc<LockKeys>, Invalid> {
    if name.is_empty() {
        return Err(Invalid::Name("a lock name must not be empty"));
    }
    if stats && stats_name == Some("") {
        return Err(Invalid::Name(
            "its stats name is empty: name the statistics, or turn them off with \
             `stats(false)`",
        ));
    }
    if ttl < Duration::from_millis(3) || ttl <= drift(ttl) || ttl > MAX_AUTO_RELEASE_TIME {
        return Err(Invalid::AutoReleaseTime);
    }
    let keys = LockKeys::permit(name, permit);
    if client
        .backend
        .masters
        .iter()
        .any(|master| master.is_cluster)
    {
        let stats_key = waiting_key(stats_name.unwrap_or(name));
        if !companions_share_slot(&keys.lock) || !companions_share_slot(&stats_key) {
            return Err(Invalid::Name(
                "with a Redis Cluster master, a `}` in a lock or stats name must close a \
                 non-empty `{...}` hash tag; otherwise the lock's keys would fall in \
                 different slots",
            ));
        }
    }
    Ok(keys)
}
