//! A lock request: its settings, and the wait until it is granted, refused or timed out.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use uuid::Uuid;

use tracing::Instrument;

use crate::{
    LockError, LockGuard, Redlock, Timeout,
    acquire::{
        Attempt, LockKeys, WAITER_LEASE, Waiter, attempt, companions_share_slot, drift,
        spawn_leave_queue,
    },
    config::{Config, Shared},
    guard::Lease,
    observe::Acquisition,
    reentry::Holder,
    stats::{WaitingStats, waiting_key},
    wake::Watch,
};

/// The default TTL of a lock (the Python library's `auto_release_time`).
pub const DEFAULT_AUTO_RELEASE_TIME: Duration = Duration::from_secs(30);

/// A request for one lock, made by [`Redlock::lock`]; set its options, then `.await` it.
///
/// | option | default |
/// |---|---|
/// | [`timeout`](Self::timeout) | [`Timeout::Forever`] |
/// | [`auto_release_time`](Self::auto_release_time) | 30 s |
/// | [`stats_name`](Self::stats_name) | the lock name |
/// | [`stats`](Self::stats) | `true` |
/// | [`auto_extend`](Self::auto_extend) | `true` |
/// | [`reentrant`](Self::reentrant) | `false` |
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
#[derive(Debug)]
#[must_use = "a lock request does nothing until it is awaited"]
pub struct LockRequest {
    client: Redlock,
    name: String,
    timeout: Result<Timeout, LockError>,
    auto_release_time: Duration,
    stats_name: Option<String>,
    stats: bool,
    auto_extend: bool,
    reentrant: bool,
    /// Who asks: set by the blocking API (the calling thread); else the current task.
    pub(crate) holder: Option<Holder>,
}

impl LockRequest {
    pub(crate) fn new(client: Redlock, name: String) -> Self {
        Self {
            client,
            name,
            timeout: Ok(Timeout::Forever),
            auto_release_time: DEFAULT_AUTO_RELEASE_TIME,
            stats_name: None,
            stats: true,
            auto_extend: true,
            reentrant: false,
            holder: None,
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
    /// At least 3 ms; default 30 s.
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
    /// [`stats_name`](Self::stats_name) and [`Redlock::waiting`]). Default `true`, as in the
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

    async fn acquire(self) -> Result<LockGuard, LockError> {
        let Self {
            client,
            name,
            timeout,
            auto_release_time: ttl,
            stats_name,
            stats,
            auto_extend,
            reentrant,
            holder,
        } = self;
        let timeout = timeout?;
        if name.is_empty() {
            return Err(LockError::InvalidName {
                name,
                reason: "a lock name must not be empty",
            });
        }
        if ttl < Duration::from_millis(3) || ttl <= drift(ttl) {
            return Err(LockError::InvalidAutoReleaseTime { name, value: ttl });
        }
        let shared = &client.shared;
        let keys = LockKeys::new(&name);
        if shared.masters.iter().any(|master| master.is_cluster) {
            let stats_key = waiting_key(stats_name.as_deref().unwrap_or(&name));
            if !companions_share_slot(&keys.lock) || !companions_share_slot(&stats_key) {
                return Err(LockError::InvalidName {
                    name,
                    reason: "with a Redis Cluster master, a `}` in a lock or stats name must \
                             close a non-empty `{...}` hash tag; otherwise the lock's keys \
                             would fall in different slots",
                });
            }
        }
        let holder = holder.unwrap_or_else(Holder::current);
        // Waiting without a deadline for a lock we hold ourselves would never end. (With `Skip`
        // or a deadline the answer is the usual `Timeout`: the lock is held, by us.)
        if let Some(shared_hold) = shared.holders.held_by(&keys.lock, holder) {
            if reentrant {
                return Ok(LockGuard::nested(shared_hold, holder));
            }
            if timeout == Timeout::Forever {
                return Err(LockError::Reentered { name });
            }
        }
        let started = Instant::now();
        let deadline = match timeout {
            Timeout::After(wait) => Some(started + wait),
            Timeout::Forever | Timeout::Skip => None,
        };
        let mut backoff = Backoff::new(&shared.config);
        let mut waiting: Option<Waiting> = None;
        // Since when no attempt reached a quorum (see `Config::outage_timeout`).
        let mut outage_since: Option<Instant> = None;
        loop {
            let mut text = Uuid::encode_buffer();
            let value: Arc<str> = Arc::from(&*Uuid::new_v4().hyphenated().encode_lower(&mut text));
            // Our own background releases of this key go first (see `background`).
            shared
                .background
                .settled(&keys.lock, shared.config.master_timeout)
                .await;
            let waiter = waiting.as_ref().map(|waiting| &waiting.waiter);
            // Releases announced from here on may be the ones we wait for, even those that
            // arrive before the attempt's reply.
            let releases_before = waiting
                .as_ref()
                .map_or(0, |waiting| waiting.releases.releases_seen());
            let outcome = attempt(shared, &keys, &value, ttl, waiter).await;
            let now = Instant::now();
            let (error, wake) = match outcome {
                Attempt::Acquired { valid_until } => {
                    if let Some(mut waiting) = waiting {
                        // The acquire script took us out of the queue where it granted the
                        // lock; with several masters, a master that refused still has our
                        // place, which must not stay at the head of its queue.
                        waiting.place.left = shared.masters.len() == 1;
                    }
                    let lease = Lease {
                        shared: Arc::clone(shared),
                        name,
                        stats_name,
                        acquired_at: Instant::now(),
                        keys,
                        value,
                        ttl,
                        fencing_token: tokio::sync::OnceCell::new(),
                    };
                    return Ok(LockGuard::new(lease, valid_until, auto_extend, holder));
                }
                Attempt::Busy { expires_in, ahead } => {
                    backoff.reset();
                    outage_since = None;
                    let error = LockError::Timeout {
                        name: name.clone(),
                        waited: now - started,
                    };
                    // Our turn comes after the holder's release (if the lock is held) and
                    // after those of the waiters ahead of us.
                    let held = u64::from(!expires_in.is_zero());
                    let wake = Wake::OnRelease {
                        releases: ahead + held,
                        fallback: now + fallback_after(expires_in),
                    };
                    (error, wake)
                }
                Attempt::Unavailable(failures) => {
                    // Waiting cannot help when too many masters are misconfigured for a quorum,
                    // nor past the outage timeout.
                    let misconfigured = failures.iter().filter(|f| f.misconfigured).count();
                    let hopeless = misconfigured > shared.masters.len() - shared.quorum();
                    let since = *outage_since.get_or_insert(now);
                    let gives_up_at = shared.config.outage_timeout.map(|limit| since + limit);
                    let too_long = gives_up_at.is_some_and(|at| now >= at);
                    let error = LockError::Unavailable {
                        name: name.clone(),
                        quorum: shared.quorum(),
                        masters: shared.masters.len(),
                        failures,
                    };
                    if hopeless || too_long {
                        return Err(error);
                    }
                    let retry_at = now + backoff.next();
                    (
                        error,
                        Wake::At(gives_up_at.map_or(retry_at, |at| retry_at.min(at))),
                    )
                }
            };
            if timeout == Timeout::Skip || deadline.is_some_and(|deadline| now >= deadline) {
                return Err(error);
            }
            match &mut waiting {
                Some(waiting) => {
                    tracing::trace!(lock = %name, %error, "redlock: waiting");
                    waiting
                        .pause(wake, deadline, shared.quorum(), releases_before)
                        .await;
                }
                None => {
                    // The first refusal: watch releases and join the queue, then attempt again
                    // at once, so that no release between the two attempts goes unseen.
                    let stats_name = stats.then(|| stats_name.as_deref().unwrap_or(&name));
                    waiting = Some(Waiting::start(shared, &keys, stats_name).await);
                }
            }
        }
    }
}

/// A waiting request: its place in the queue, its watch on releases, its statistics. Dropping
/// it (deadline, cancellation, panic) leaves the queue and uncounts the waiter.
struct Waiting {
    waiter: Waiter,
    releases: Watch,
    place: QueuePlace,
    /// `None` when statistics are off.
    _stats: Option<WaitingStats>,
}

/// When a waiter attempts again.
enum Wake {
    /// At the release that makes it our turn (the `releases`-th from the last attempt), or
    /// at `fallback` (the holder's TTL ends, or the heartbeat that keeps our place).
    OnRelease { releases: u64, fallback: Instant },
    /// At this instant (backoff while masters fail).
    At(Instant),
}

impl Waiting {
    async fn start(shared: &Arc<Shared>, keys: &Arc<LockKeys>, stats_name: Option<&str>) -> Self {
        let stats = stats_name.map(|stats_name| WaitingStats::begin(shared, stats_name));
        let channel: Arc<str> = keys.channel().to_string().into();
        let releases = shared.wakeups.watch(&channel).await;
        let ticket = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64() * 1000.0);
        let waiter = Waiter {
            id: Uuid::new_v4().hyphenated().to_string().into(),
            ticket,
        };
        let place = QueuePlace {
            shared: Arc::clone(shared),
            keys: Arc::clone(keys),
            id: Arc::clone(&waiter.id),
            left: false,
        };
        Self {
            waiter,
            releases,
            place,
            _stats: stats,
        }
    }

    /// Sleeps until `wake` or the deadline, whichever comes first; `releases_before` is the
    /// count of announced releases when the last attempt started.
    async fn pause(
        &mut self,
        wake: Wake,
        deadline: Option<Instant>,
        quorum: usize,
        releases_before: u64,
    ) {
        let (until, releases) = match wake {
            Wake::OnRelease { releases, fallback } => (fallback, Some(releases)),
            Wake::At(at) => (at, None),
        };
        let until = deadline.map_or(until, |deadline| until.min(deadline));
        let sleep = tokio::time::sleep_until(until.into());
        let Some(releases) = releases else {
            return sleep.await;
        };
        // Each release is announced by at least a quorum of masters (by all, mostly): wake
        // once the count can include the one we need; waking early costs one attempt.
        let enough = releases.saturating_sub(1).saturating_mul(quorum as u64) + 1;
        tokio::pin!(sleep);
        while self.releases.releases_seen() - releases_before < enough {
            tokio::select! {
                () = &mut sleep => return,
                () = self.releases.next_release() => {}
            }
        }
    }
}

/// How long to sleep, at most, when the lock is held and no release is announced: until the
/// holder's TTL ends (a holder that never announces, such as the Python library or a crashed
/// process), and never longer than the heartbeat that keeps our place in the queue.
fn fallback_after(expires_in: Duration) -> Duration {
    let heartbeat = WAITER_LEASE / 3;
    if expires_in.is_zero() {
        heartbeat
    } else {
        (expires_in + Duration::from_millis(1)).min(heartbeat)
    }
}

/// A place in the lock's queue on every master; left in the background when dropped, unless
/// the acquire script already removed it.
struct QueuePlace {
    shared: Arc<Shared>,
    keys: Arc<LockKeys>,
    id: Arc<str>,
    left: bool,
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        if !self.left {
            spawn_leave_queue(&self.shared, &self.keys, &self.id);
        }
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

/// A capped, jittered exponential backoff while masters fail.
struct Backoff {
    base: Duration,
    cap: Duration,
    failures_in_a_row: u32,
}

impl Backoff {
    fn new(config: &Config) -> Self {
        Self {
            base: config.retry_delay,
            cap: config.max_backoff,
            failures_in_a_row: 0,
        }
    }

    fn reset(&mut self) {
        self.failures_in_a_row = 0;
    }

    fn next(&mut self) -> Duration {
        let factor = 1u32 << self.failures_in_a_row.min(16);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        let mean = self.base.saturating_mul(factor).min(self.cap);
        // Uniform in [mean / 2, mean * 3 / 2): clients that failed together spread apart.
        mean / 2 + mean.mul_f64(fastrand::f64())
    }
}
