//! The client handle users hold: [`Redlock`].

use std::sync::Arc;

use crate::{
    Config, LockError, LockRequest,
    backend::Backend,
    client::Client,
    operate::{self, LockState, Readiness},
    request::DEFAULT_AUTO_RELEASE_TIME,
    rt,
    stats::{self, Contended},
    target::redact_url,
    wait::Waits,
    wake::ReleaseNotices,
};

/// A Redlock client over one or many independent Redis masters. Cheap to clone; all clones
/// share the connections.
///
/// Creating it does no I/O: each master is connected on first use, and reconnected after a
/// failure.
///
/// ```no_run
/// use redlock_runtime::{Redlock, Timeout};
///
/// # async fn run() -> Result<(), redlock_runtime::LockError> {
/// let redlock = Redlock::new(["redis://127.0.0.1:6379"])?;
/// let guard = redlock.lock("nightly-report").timeout(Timeout::Skip).await?;
/// // ... the critical section ...
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Redlock {
    pub(crate) client: Arc<Client>,
}

impl Redlock {
    /// A client with default settings, one URL per independent master.
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::new(["redis://127.0.0.1:6379"])?;
    /// assert_eq!(redlock.quorum(), 1);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn new(urls: impl IntoIterator<Item = impl AsRef<str>>) -> Result<Self, LockError> {
        Self::with_config(Config::new(urls))
    }

    /// A client for the masters named by the environment (see [`Config::from_env`]). An invalid
    /// URL is reported with the variable it came from.
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::from_env()?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn from_env() -> Result<Self, LockError> {
        let (config, source) = Config::from_env_with_source()?;
        let urls = config.urls.clone();
        Self::with_config(config).map_err(|error| match error {
            LockError::InvalidUrl { url, reason } => {
                // The error shows the URL redacted: find its entry the same way.
                let entry = urls
                    .iter()
                    .position(|candidate| redact_url(candidate) == url);
                let from = match entry {
                    Some(index) if urls.len() > 1 => {
                        format!("entry {} of {} in {source}", index + 1, urls.len())
                    }
                    _ => source.to_owned(),
                };
                LockError::InvalidUrl {
                    reason: format!("{reason} (from {from})"),
                    url,
                }
            }
            other => other,
        })
    }

    /// A client with explicit settings.
    ///
    /// ```
    /// let config = redlock_runtime::Config::new(["redis://127.0.0.1:6379"]);
    /// let redlock = redlock_runtime::Redlock::with_config(config)?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn with_config(config: Config) -> Result<Self, LockError> {
        let backend = Backend::new(config)?;
        // Usually the main thread: it then waits for background work when `main` returns,
        // whichever thread started that work.
        rt::drain_when_this_thread_ends();
        let notices = ReleaseNotices::new(backend.masters.clone(), backend.config.master_timeout);
        Ok(Self {
            client: Arc::new(Client {
                backend: Arc::new(backend),
                waits: Waits {
                    notices: Arc::new(notices),
                    lines: Arc::default(),
                    waiters: Arc::default(),
                },
                owners: Arc::default(),
            }),
        })
    }

    /// Starts a request for the lock `name`; configure it, then `.await` it.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("invoice:42").timeout(5).await?;
    /// # Ok(()) }
    /// ```
    pub fn lock(&self, name: impl Into<String>) -> LockRequest {
        LockRequest::new(Arc::clone(&self.client), name.into())
    }

    /// Starts a request for one of the `permits` of the semaphore `name` (at most `permits`
    /// holders at once, 1 to 64); configure it as a [`LockRequest`], then `.await` it. Each
    /// permit is a lock of its own, so the bound holds wherever a lock's exclusion does;
    /// a waiter waits for every permit at once, and the first released goes to the waiter
    /// that asked first. A semaphore of 1 permit is the lock `name`. Not re-entrant: a task
    /// that holds a permit and asks again takes another one. See README "Semaphores".
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// // At most 3 encoders across the fleet; wait up to 30 s for a permit.
    /// let permit = redlock.semaphore("encoder", 3).timeout(30).await?;
    /// // ... encode ...
    /// permit.release().await?;
    /// # Ok(()) }
    /// ```
    pub fn semaphore(&self, name: impl Into<String>, permits: usize) -> LockRequest {
        let mut request = self.lock(name);
        request.permits = permits;
        request
    }

    /// How many masters must agree to grant a lock: `masters / 2 + 1`.
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::new(["redis://a", "redis://b", "redis://c"])?;
    /// assert_eq!(redlock.quorum(), 2);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn quorum(&self) -> usize {
        self.client.backend.quorum()
    }

    /// The masters' URLs, passwords replaced by `***`.
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::new(["redis://:secret@db1:6379"])?;
    /// assert_eq!(redlock.masters().collect::<Vec<_>>(), ["redis://:***@db1:6379"]);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn masters(&self) -> impl Iterator<Item = &str> {
        self.client
            .backend
            .masters
            .iter()
            .map(|master| master.label.as_str())
    }

    /// The settings this client was built with.
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::new(["redis://127.0.0.1"])?;
    /// assert_eq!(redlock.config().urls.len(), 1);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn config(&self) -> &Config {
        &self.client.backend.config
    }

    /// Every contended lock with its live waiters, summed over all masters: the Python library's
    /// counters (Python waiters included), after uncounting waiters whose process died.
    ///
    /// Locks are found through the registry, the list `ConfigurableLockKeys` of JSON strings
    /// that name each counter (`"Waiting.ConfigurableLock.<stats name>"`), which a dashboard in
    /// Python reads the same way (`LRANGE`, then `GET` each counter); a counter whose stats
    /// name is not registered yet is not listed. A Python-only reader sees the raw counter: a
    /// Rust waiter killed without cleanup stays counted there until a Rust process touches
    /// that stats name again (this method uncounts it first).
    /// That state lasts a moment only: a Python waiter increments its counter first and
    /// registers the name right after (two commands apart); this crate does both in one script
    /// (two commands in a cluster, registry second too). A waiter is therefore reported from
    /// the first read after its registration, never a reading of a counter nobody can list.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let contended = redlock.waiting().await?;
    /// # Ok(()) }
    /// ```
    pub async fn waiting(&self) -> Result<Vec<Contended>, LockError> {
        stats::read(&self.client.backend).await
    }

    /// Whether this client can grant a new lock now, and each master's part in it: reachable
    /// or not (with the error), durable or not, in its restart grace until when. For health
    /// checks and readiness probes; one `PING` per master, in parallel, each bounded by
    /// `Config::master_timeout`. The grace is the one of a lock with the default TTL.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) {
    /// let readiness = redlock.readiness().await;
    /// println!("{readiness}");
    /// assert!(readiness.can_grant());
    /// # }
    /// ```
    pub async fn readiness(&self) -> Readiness {
        operate::readiness(&self.client.backend, DEFAULT_AUTO_RELEASE_TIME).await
    }

    /// The lock `name` as each master sees it: its holder's value, its TTL, our waiters
    /// queued, the waiting statistic under its name. A read: it changes nothing.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) {
    /// let state = redlock.inspect("nightly-report").await;
    /// for master in &state.masters {
    ///     match master {
    ///         Ok(seen) => println!("{}: held by {:?} for {:?}", seen.master, seen.holder, seen.ttl),
    ///         Err(failure) => println!("{failure}"),
    ///     }
    /// }
    /// # }
    /// ```
    pub async fn inspect(&self, name: &str) -> LockState {
        operate::inspect(&self.client.backend, name).await
    }

    /// **The tool of last resort**: deletes the lock `name` on every master whoever holds it,
    /// and hands it to the first waiter queued, as a release does. Returns on how many
    /// masters it was held. A holder that is still alive loses its lock: its watchdog finds
    /// it gone (`is_lost()`), and until then it may run beside the next holder. Use it for a
    /// lock whose holder is known dead and whose TTL is too long to wait for (a Python
    /// holder's, a lock taken without `auto_extend` and a long TTL).
    ///
    /// [`LockError::Unavailable`] when too many masters fail for a quorum: the lock may still
    /// be held there.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let held_on = redlock.force_release("nightly-report").await?;
    /// println!("freed on {held_on} master(s)");
    /// # Ok(()) }
    /// ```
    pub async fn force_release(&self, name: &str) -> Result<usize, LockError> {
        operate::force_release(&self.client.backend, name).await
    }

    /// Waits until this process's background work is done: the releases of dropped guards,
    /// the undos of failed attempts, and the uncounting of ended waits.
    ///
    /// The process does this by itself before it exits normally: the thread that dropped a
    /// guard (the main thread, when `main` returns) waits for it as it ends, for at most 5 s.
    /// Call `shutdown` where that does not happen, e.g. before `std::process::exit`.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// drop(guard); // released in the background
    /// redlock.shutdown().await; // released now
    /// std::process::exit(0);
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        rt::drained().await;
    }
}
