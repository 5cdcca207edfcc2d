//! A lock request: its settings, and the wait until it is granted, refused or timed out.

use std::{
    future::{Future, IntoFuture},
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use uuid::Uuid;

use crate::{
    LockError, LockGuard, Redlock, Timeout,
    acquire::{Attempt, attempt, drift, lock_key},
    config::Config,
    stats::WaitingStats,
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
/// | [`auto_extend`](Self::auto_extend) | `true` |
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
    auto_extend: bool,
}

impl LockRequest {
    pub(crate) fn new(client: Redlock, name: String) -> Self {
        Self {
            client,
            name,
            timeout: Ok(Timeout::Forever),
            auto_release_time: DEFAULT_AUTO_RELEASE_TIME,
            stats_name: None,
            auto_extend: true,
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
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("job:17").stats_name("jobs").await?;
    /// # Ok(()) }
    /// ```
    pub fn stats_name(mut self, stats_name: impl Into<String>) -> Self {
        self.stats_name = Some(stats_name.into());
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

    async fn acquire(self) -> Result<LockGuard, LockError> {
        let Self {
            client,
            name,
            timeout,
            auto_release_time: ttl,
            stats_name,
            auto_extend,
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
        let key: Arc<str> = lock_key(&name).into();
        let started = Instant::now();
        let deadline = match timeout {
            Timeout::After(wait) => Some(started + wait),
            Timeout::Forever | Timeout::Skip => None,
        };
        let mut pause = Pause::new(&shared.config);
        let mut waiting = None;
        loop {
            let value: Arc<str> = Uuid::new_v4().hyphenated().to_string().into();
            // Our own background releases of this key go first (see `background`).
            shared
                .background
                .settled(&key, shared.config.master_timeout)
                .await;
            let outcome = attempt(shared, &key, &value, ttl).await;
            let now = Instant::now();
            let pause_for = pause.after(&outcome);
            let error = match outcome {
                Attempt::Acquired { valid_until } => {
                    drop(waiting);
                    let shared = Arc::clone(shared);
                    return Ok(LockGuard::new(
                        shared,
                        name,
                        key,
                        value,
                        ttl,
                        valid_until,
                        auto_extend,
                    ));
                }
                Attempt::Busy => LockError::Timeout {
                    name: name.clone(),
                    waited: now - started,
                },
                Attempt::Unavailable(failures) => LockError::Unavailable {
                    name: name.clone(),
                    quorum: shared.quorum(),
                    masters: shared.masters.len(),
                    failures,
                },
            };
            if timeout == Timeout::Skip || deadline.is_some_and(|deadline| now >= deadline) {
                return Err(error);
            }
            tracing::debug!(lock = %name, %error, ?pause_for, "redlock: waiting");
            waiting.get_or_insert_with(|| {
                WaitingStats::begin(shared, stats_name.as_deref().unwrap_or(&name))
            });
            // The last attempt is made at the deadline itself, not a pause after it.
            let wake = now + pause_for;
            tokio::time::sleep_until(deadline.map_or(wake, |deadline| wake.min(deadline)).into())
                .await;
        }
    }
}

impl IntoFuture for LockRequest {
    type Output = Result<LockGuard, LockError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.acquire())
    }
}

/// The pause between two attempts: a jittered short delay while another client holds the
/// lock; a capped, jittered exponential backoff while masters fail.
struct Pause {
    retry_delay: Duration,
    max_backoff: Duration,
    failures_in_a_row: u32,
}

impl Pause {
    fn new(config: &Config) -> Self {
        Self {
            retry_delay: config.retry_delay,
            max_backoff: config.max_backoff,
            failures_in_a_row: 0,
        }
    }

    fn after(&mut self, outcome: &Attempt) -> Duration {
        let mean = match outcome {
            Attempt::Unavailable(_) => {
                self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
                let factor = 1u32 << self.failures_in_a_row.min(16);
                self.retry_delay
                    .saturating_mul(factor)
                    .min(self.max_backoff)
            }
            Attempt::Busy | Attempt::Acquired { .. } => {
                self.failures_in_a_row = 0;
                self.retry_delay
            }
        };
        // Uniform in [mean / 2, mean * 3 / 2): contenders that collided spread apart.
        mean / 2 + mean.mul_f64(fastrand::f64())
    }
}
