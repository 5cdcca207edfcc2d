//! A held lock: release, extend, and release in the background when dropped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::Script;
use tokio::runtime::Handle;

use crate::{
    LockError, MasterFailure,
    acquire::drift,
    config::Shared,
    quorum::{Verdict, fan_out},
    scripts,
};

/// Proof that this client holds a lock. Release it with [`LockGuard::release`] to learn the
/// outcome; dropping it releases in the background at once (an early return, `?`, a panic, a
/// cancelled future), and `Drop` never blocks.
///
/// ```no_run
/// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
/// let mut guard = redlock.lock("reindex").await?;
/// assert!(!guard.is_lost());
/// guard.extend().await?; // a fresh TTL for a long job
/// guard.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "dropping the guard releases the lock at once"]
pub struct LockGuard {
    held: Option<Held>,
}

#[derive(Debug)]
struct Held {
    shared: Arc<Shared>,
    name: String,
    key: Arc<str>,
    value: Arc<str>,
    ttl: Duration,
    valid_until: Instant,
    /// Where `Drop` spawns the release; captured while acquiring, inside a runtime.
    runtime: Handle,
}

impl LockGuard {
    pub(crate) fn new(
        shared: Arc<Shared>,
        name: String,
        key: Arc<str>,
        value: Arc<str>,
        ttl: Duration,
        valid_until: Instant,
    ) -> Self {
        Self {
            held: Some(Held {
                shared,
                name,
                key,
                value,
                ttl,
                valid_until,
                runtime: Handle::current(),
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
        &self.held().name
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
        &self.held().value
    }

    /// Until when the lock is certainly ours: the Redlock validity (TTL minus the time the
    /// acquisition or the last extension took, minus the clock-drift allowance).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let guard = redlock.lock("report").await?;
    /// assert!(guard.valid_until() > std::time::Instant::now());
    /// # Ok(()) }
    /// ```
    pub fn valid_until(&self) -> Instant {
        self.held().valid_until
    }

    /// Whether the lock can no longer be counted on: its validity has run out without an
    /// [`extend`](Self::extend).
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
        Instant::now() >= self.held().valid_until
    }

    /// Resets the lock's TTL to its `auto_release_time` on every master, if it is still ours on
    /// a quorum; otherwise [`LockError::Lost`] (and the guard no longer counts as valid).
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
    /// let mut guard = redlock.lock("long-job").await?;
    /// guard.extend().await?;
    /// # Ok(()) }
    /// ```
    pub async fn extend(&mut self) -> Result<(), LockError> {
        let held = self
            .held
            .as_mut()
            .expect("a LockGuard holds its lock until consumed");
        let started = Instant::now();
        let ttl_ms = u64::try_from(held.ttl.as_millis()).unwrap_or(u64::MAX);
        match compare_and(held, &scripts::EXTEND, Some(ttl_ms)).await {
            Ok(()) => {
                let validity = held.ttl.saturating_sub(started.elapsed() + drift(held.ttl));
                held.valid_until = started + validity;
                Ok(())
            }
            Err(error) => {
                if let LockError::Lost { .. } = error {
                    held.valid_until = started;
                }
                Err(error)
            }
        }
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
        compare_and(&held, &scripts::RELEASE, None).await
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            let runtime = held.runtime.clone();
            let ticket = held.shared.background.start(&held.key);
            runtime.spawn(async move {
                let _ticket = ticket;
                if let Err(error) = compare_and(&held, &scripts::RELEASE, None).await {
                    tracing::warn!(lock = %held.name, %error, "redlock: background release failed; the lock expires with its TTL");
                }
            });
        }
    }
}

/// Runs a compare-and-X script (`KEYS[1]` = key, `ARGV[1]` = our value, `ARGV[2]` = `extra`)
/// on every master: `Ok` once a quorum answered 1, `Lost` once a quorum is impossible because
/// masters answered 0 (not ours), else `Unavailable`.
async fn compare_and(
    held: &Held,
    script: &'static Script,
    extra: Option<u64>,
) -> Result<(), LockError> {
    let masters = &held.shared.masters;
    let quorum = held.shared.quorum();
    let (mut owned, mut not_owned) = (0, 0);
    let mut failures: Vec<MasterFailure> = Vec::new();
    let stragglers = fan_out(
        masters,
        |master| {
            let (key, value) = (Arc::clone(&held.key), Arc::clone(&held.value));
            async move {
                master
                    .call(|mut connection| async move {
                        let mut invocation = script.key(&*key);
                        invocation.arg(&*value);
                        if let Some(extra) = extra {
                            invocation.arg(extra);
                        }
                        invocation.invoke_async::<i64>(&mut connection).await
                    })
                    .await
            }
        },
        |index, reply| {
            match reply {
                Ok(1) => owned += 1,
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
        Ok(())
    } else if not_owned > masters.len() - quorum {
        Err(LockError::Lost {
            name: held.name.clone(),
        })
    } else {
        Err(LockError::Unavailable {
            name: held.name.clone(),
            quorum,
            masters: masters.len(),
            failures,
        })
    }
}
