//! The same API for synchronous code: plain threads, `spawn_blocking`, sync functions.
//!
//! Work runs on one private tokio runtime per process (a background thread started on first
//! use, as `reqwest::blocking` does); the calling thread waits for the result. Where waiting
//! would block the thread that drives async tasks with no other thread to take over, namely a
//! tokio current-thread runtime, calls fail with [`LockError::BlockingInAsyncContext`] instead of
//! risking a deadlock. On a multi-thread runtime they hand the worker's other tasks away first
//! (`tokio::task::block_in_place`).

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    sync::mpsc,
    time::{Duration, Instant},
};

use futures_util::FutureExt;
use tokio::runtime::{Handle, RuntimeFlavor};

use crate::{Config, LockError, Timeout, reentry::Owner, rt};

/// A Redlock client for synchronous code; see [`crate::Redlock`] for the async one.
///
/// ```no_run
/// use redlock_runtime::blocking::Redlock;
///
/// let redlock = Redlock::new(["redis://127.0.0.1:6379"])?;
/// let guard = redlock.lock("nightly-report").timeout(-1).acquire()?;
/// // ... the critical section ...
/// guard.release()?;
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Redlock {
    inner: crate::Redlock,
}

impl Redlock {
    /// A client with default settings, one URL per independent master.
    ///
    /// ```
    /// let redlock = redlock_runtime::blocking::Redlock::new(["redis://127.0.0.1:6379"])?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn new(urls: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, LockError> {
        crate::Redlock::new(urls).map(Self::from)
    }

    /// A client for the masters named by the environment (see [`Config::from_env`]).
    ///
    /// ```
    /// let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn from_env() -> Result<Self, LockError> {
        crate::Redlock::from_env().map(Self::from)
    }

    /// A client with explicit settings.
    ///
    /// ```
    /// let config = redlock_runtime::Config::new(["redis://127.0.0.1:6379"]);
    /// let redlock = redlock_runtime::blocking::Redlock::with_config(config)?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn with_config(config: Config) -> Result<Self, LockError> {
        crate::Redlock::with_config(config).map(Self::from)
    }

    /// Starts a request for the lock `name`; configure it, then call
    /// [`acquire`](LockRequest::acquire).
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("invoice:42").timeout(5).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn lock(&self, name: impl Into<String>) -> LockRequest {
        LockRequest::from(self.inner.lock(name))
    }

    /// Starts a request for one of the `permits` of the semaphore `name`; see
    /// [`crate::Redlock::semaphore`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let permit = redlock.semaphore("encoder", 3).timeout(30).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn semaphore(&self, name: impl Into<String>, permits: usize) -> LockRequest {
        LockRequest::from(self.inner.semaphore(name, permits))
    }

    /// The async client sharing this one's connections.
    ///
    /// ```
    /// let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let quorum = redlock.as_async().quorum();
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn as_async(&self) -> &crate::Redlock {
        &self.inner
    }

    /// Blocks until this process's background work is done; see
    /// [`crate::Redlock::shutdown`].
    ///
    /// ```no_run
    /// let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// drop(redlock.lock("report").acquire()?); // released in the background
    /// redlock.shutdown()?; // released now
    /// std::process::exit(0);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    ///
    /// # Errors
    /// [`LockError::BlockingInAsyncContext`] on a tokio current-thread runtime.
    pub fn shutdown(&self) -> Result<(), LockError> {
        wait(crate::rt::drained())
    }
}

impl From<crate::Redlock> for Redlock {
    /// Wraps an async client; both share the same connections.
    fn from(inner: crate::Redlock) -> Self {
        Self { inner }
    }
}

/// A blocking lock request, made by [`Redlock::lock`]; the same options as
/// [`crate::LockRequest`].
///
/// ```no_run
/// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
/// let guard = redlock
///     .lock("billing")
///     .timeout(2.5)
///     .auto_release_time(std::time::Duration::from_secs(60))
///     .stats_name("billing-workers")
///     .acquire()?;
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Debug)]
#[must_use = "a lock request does nothing until `acquire` is called"]
pub struct LockRequest {
    inner: crate::LockRequest,
}

impl From<crate::LockRequest> for LockRequest {
    /// Makes an async request blocking.
    fn from(inner: crate::LockRequest) -> Self {
        Self { inner }
    }
}

impl LockRequest {
    /// See [`crate::LockRequest::timeout`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("a").timeout(redlock_runtime::Timeout::Skip).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn timeout<T>(self, timeout: T) -> Self
    where
        T: TryInto<Timeout>,
        LockError: From<T::Error>,
    {
        Self {
            inner: self.inner.timeout(timeout),
        }
    }

    /// See [`crate::LockRequest::auto_release_time`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("a").auto_release_time(std::time::Duration::from_secs(5)).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn auto_release_time(self, ttl: Duration) -> Self {
        Self {
            inner: self.inner.auto_release_time(ttl),
        }
    }

    /// See [`crate::LockRequest::auto_extend`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("a").auto_extend(false).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn auto_extend(self, auto_extend: bool) -> Self {
        Self {
            inner: self.inner.auto_extend(auto_extend),
        }
    }

    /// See [`crate::LockRequest::reentrant`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("tree").reentrant(true).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn reentrant(self, reentrant: bool) -> Self {
        Self {
            inner: self.inner.reentrant(reentrant),
        }
    }

    /// See [`crate::LockRequest::min_hold`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock
    ///     .lock("nightly-report")
    ///     .timeout(-1)
    ///     .min_hold(std::time::Duration::from_secs(30))
    ///     .acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn min_hold(self, min_hold: Duration) -> Self {
        Self {
            inner: self.inner.min_hold(min_hold),
        }
    }

    /// See [`crate::LockRequest::stats`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("invoice:17").stats(false).acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn stats(self, stats: bool) -> Self {
        Self {
            inner: self.inner.stats(stats),
        }
    }

    /// See [`crate::LockRequest::stats_name`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("job:17").stats_name("jobs").acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn stats_name(self, stats_name: impl Into<String>) -> Self {
        Self {
            inner: self.inner.stats_name(stats_name),
        }
    }

    /// Blocks until the lock is granted, refused or timed out.
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("a").acquire()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn acquire(self) -> Result<LockGuard, LockError> {
        let mut request = self.inner;
        // The work runs on the private runtime: the holder is the calling thread.
        request.owner = Some(Owner::current_thread());
        let inner = wait(request.into_future())??;
        Ok(LockGuard { inner: Some(inner) })
    }
}

/// A held lock, for synchronous code; dropping it releases in the background without blocking.
///
/// ```no_run
/// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
/// let mut guard = redlock.lock("reindex").acquire()?;
/// guard.extend()?;
/// guard.release()?;
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    /// Taken only by `release`, which consumes the guard.
    inner: Option<crate::LockGuard>,
}

impl LockGuard {
    fn inner(&self) -> &crate::LockGuard {
        self.inner
            .as_ref()
            .expect("a LockGuard holds its lock until consumed")
    }

    /// See [`crate::LockGuard::name`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// assert_eq!(redlock.lock("a").acquire()?.name(), "a");
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn name(&self) -> &str {
        self.inner().name()
    }

    /// See [`crate::LockGuard::value`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// assert_eq!(redlock.lock("a").acquire()?.value().len(), 36);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn value(&self) -> &str {
        self.inner().value()
    }

    /// See [`crate::LockGuard::valid_until`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// assert!(redlock.lock("a").acquire()?.valid_until() > std::time::Instant::now());
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn valid_until(&self) -> Instant {
        self.inner().valid_until()
    }

    /// See [`crate::LockGuard::is_lost`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// assert!(!redlock.lock("a").acquire()?.is_lost());
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn is_lost(&self) -> bool {
        self.inner().is_lost()
    }

    /// See [`crate::LockGuard::fencing_token`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("ledger").acquire()?;
    /// let token = guard.fencing_token()?;
    /// // storage.write_if_newer(token, entry)
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn fencing_token(&self) -> Result<u64, LockError> {
        wait(self.inner().take_fencing_token())?
    }

    /// Blocks until the lock is lost (see [`crate::LockGuard::lost`]); never returns while it
    /// is held. Call it on another thread than the one doing the work, or use
    /// [`lost_within`](Self::lost_within).
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = std::sync::Arc::new(redlock.lock("report").acquire()?);
    /// let watcher = std::thread::spawn({
    ///     let guard = std::sync::Arc::clone(&guard);
    ///     move || guard.lost()
    /// });
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn lost(&self) -> Result<(), LockError> {
        wait(self.inner().when_lost())
    }

    /// Blocks until the lock is lost or `within` has passed; whether it was lost.
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let guard = redlock.lock("report").acquire()?;
    /// for chunk in 0..10 {
    ///     if guard.lost_within(std::time::Duration::ZERO)? {
    ///         break; // stop: another worker may hold the lock now
    ///     }
    ///     // process chunk
    /// }
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn lost_within(&self, within: Duration) -> Result<bool, LockError> {
        let lost = self.inner().when_lost();
        wait(async move { tokio::time::timeout(within, lost).await.is_ok() })
    }

    /// See [`crate::LockGuard::extend`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// let mut guard = redlock.lock("a").acquire()?;
    /// guard.extend()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn extend(&mut self) -> Result<(), LockError> {
        let inner = self
            .inner
            .take()
            .expect("a LockGuard holds its lock until consumed");
        let (inner, extended) = wait(async move {
            let extended = inner.extend().await;
            (inner, extended)
        })?;
        self.inner = Some(inner);
        extended
    }

    /// See [`crate::LockGuard::release`].
    ///
    /// ```no_run
    /// # let redlock = redlock_runtime::blocking::Redlock::from_env()?;
    /// redlock.lock("a").acquire()?.release()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn release(mut self) -> Result<(), LockError> {
        let inner = self
            .inner
            .take()
            .expect("a LockGuard holds its lock until consumed");
        wait(inner.release())?
    }
}

/// Runs `future` on the private runtime and blocks the calling thread until it finishes. A
/// panic of the future reaches the caller as that panic.
fn wait<F>(future: F) -> Result<F::Output, LockError>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let in_runtime = Handle::try_current()
        .ok()
        .map(|handle| handle.runtime_flavor());
    if in_runtime == Some(RuntimeFlavor::CurrentThread) {
        return Err(LockError::BlockingInAsyncContext);
    }
    let (sender, receiver) = mpsc::sync_channel(1);
    rt::spawn(async move {
        let _ = sender.send(AssertUnwindSafe(future).catch_unwind().await);
    });
    let receive = move || {
        receiver
            .recv()
            .expect("configurable-redlock: the blocking API's runtime stopped")
    };
    let outcome = match in_runtime {
        None => receive(),
        Some(_) => tokio::task::block_in_place(receive),
    };
    Ok(outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_panic_of_the_future_reaches_the_caller_as_that_panic() {
        let caught = std::panic::catch_unwind(|| super::wait(async { panic!("boom") }))
            .expect_err("the panic reaches the caller");
        assert_eq!(caught.downcast_ref::<&str>(), Some(&"boom"));
    }
}
