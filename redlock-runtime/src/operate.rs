//! An operator's view: whether the client can grant locks now ([`Readiness`]), what one lock
//! looks like on each master ([`LockState`]), and the tool of last resort that frees a stuck
//! lock (`force_release`).

use std::time::{Duration, Instant};

use redis::Value;

use crate::{
    LockError, MasterFailure,
    backend::Backend,
    keys::{LockKeys, waiting_key},
    scripts,
};

/// Whether a client can grant a new lock now, master by master: for health checks and
/// readiness probes ([`Redlock::readiness`](crate::Redlock::readiness)).
///
/// ```no_run
/// # async fn run(redlock: redlock_runtime::Redlock) {
/// let readiness = redlock.readiness().await;
/// if !readiness.can_grant() {
///     eprintln!("not ready: {readiness}");
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Readiness {
    /// How many masters must vote for a lock.
    pub quorum: usize,
    /// Each master, in the client's order: how it answered, or why it did not.
    pub masters: Vec<Result<MasterReadiness, MasterFailure>>,
}

/// One master that answered a readiness probe; see [`Readiness`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MasterReadiness {
    /// The master's URL, with any password replaced by `***`.
    pub master: String,
    /// `None` for a master that keeps every write across restarts (`appendonly yes` and
    /// `appendfsync always`); else why it may lose its locks in a restart.
    pub may_lose_locks: Option<String>,
    /// How much longer it sits out new locks of the default TTL after its last start (see
    /// [`RestartGrace`](crate::RestartGrace)); `None` once it votes.
    pub grace_left: Option<Duration>,
}

impl Readiness {
    /// Whether enough masters answer and vote for a new lock (of the default TTL) now.
    ///
    /// ```no_run
    /// # async fn run(redlock: redlock_runtime::Redlock) {
    /// let ready = redlock.readiness().await.can_grant();
    /// # }
    /// ```
    pub fn can_grant(&self) -> bool {
        let voting = self
            .masters
            .iter()
            .filter(|master| {
                master
                    .as_ref()
                    .is_ok_and(|ready| ready.grace_left.is_none())
            })
            .count();
        voting >= self.quorum
    }
}

impl std::fmt::Display for Readiness {
    /// One line per master.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verdict = if self.can_grant() {
            "can grant locks"
        } else {
            "cannot grant locks now"
        };
        write!(f, "{verdict} (quorum {})", self.quorum)?;
        for master in &self.masters {
            match master {
                Ok(ready) => {
                    write!(f, "; {}: up", ready.master)?;
                    if let Some(left) = ready.grace_left {
                        write!(
                            f,
                            ", in its restart grace for {:.1}s more",
                            left.as_secs_f64()
                        )?;
                    }
                    if let Some(why) = &ready.may_lose_locks {
                        write!(f, ", may lose its locks in a restart ({why})")?;
                    }
                }
                Err(failure) => write!(f, "; {failure}")?,
            }
        }
        Ok(())
    }
}

/// One lock as each master sees it, for operators
/// ([`Redlock::inspect`](crate::Redlock::inspect)).
///
/// ```no_run
/// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
/// for master in redlock.inspect("nightly-report").await.masters {
///     println!("{master:?}");
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockState {
    /// The lock name.
    pub name: String,
    /// Its key (the Python library's: `redlock:ConfigurableLock.<name>`).
    pub key: String,
    /// Each master, in the client's order.
    pub masters: Vec<Result<LockOnMaster, MasterFailure>>,
    /// The waiting statistic under the lock's name: live waiters of every process, Python's
    /// included, counted on the first master (as the Python library does); `None` if it
    /// could not be read.
    pub waiting: Option<i64>,
}

/// One master's view of a lock; see [`LockState`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOnMaster {
    /// The master's URL, with any password replaced by `***`.
    pub master: String,
    /// The holder's value (a Python holder's or ours), if the key exists.
    pub holder: Option<String>,
    /// How long the key has to live, if it exists and expires.
    pub ttl: Option<Duration>,
    /// Waiters of ours standing in its queue (Python waiters poll and do not queue).
    pub queued: u64,
}

/// Reads, from every master, whether it answers and what it learned of its last restart.
pub(crate) async fn readiness(backend: &Backend, ttl: Duration) -> Readiness {
    let grace = backend.config.restart_grace.for_ttl(ttl);
    let probes = backend.masters.iter().map(|master| async move {
        let restart = master.probe().await.map_err(|err| master.failure(&err))?;
        let now = Instant::now();
        Ok(MasterReadiness {
            master: master.label.clone(),
            grace_left: restart
                .as_ref()
                .zip(grace)
                .and_then(|(restart, grace)| restart.grace_left(grace, now)),
            may_lose_locks: restart.map(|restart| restart.why),
        })
    });
    Readiness {
        quorum: backend.quorum(),
        masters: futures_util::future::join_all(probes).await,
    }
}

/// Reads the lock `name` on every master.
pub(crate) async fn inspect(backend: &Backend, name: &str) -> LockState {
    let keys = LockKeys::new(name);
    let reads = backend.masters.iter().map(|master| {
        let keys = &keys;
        async move {
            let (holder, pttl, queued) = master
                .call(|mut connection| async move {
                    redis::pipe()
                        .get(&*keys.lock)
                        .pttl(&*keys.lock)
                        .cmd("ZCARD")
                        .arg(keys.queue())
                        .query_async::<(Option<String>, i64, u64)>(&mut connection)
                        .await
                })
                .await
                .map_err(|err| master.failure(&err))?;
            Ok(LockOnMaster {
                master: master.label.clone(),
                holder,
                // -2: no key; -1: no expiry.
                ttl: u64::try_from(pttl).ok().map(Duration::from_millis),
                queued,
            })
        }
    });
    let counter = waiting_key(name);
    let waiting = backend.masters[0]
        .call(|mut connection| {
            let counter = &counter;
            async move {
                redis::cmd("GET")
                    .arg(counter)
                    .query_async::<Value>(&mut connection)
                    .await
            }
        })
        .await
        .ok()
        // A counter that someone broke (not a number) counts no one, as in the scripts.
        .map(|count| redis::from_redis_value::<i64>(count).unwrap_or(0));
    LockState {
        name: name.to_owned(),
        key: keys.lock.to_string(),
        masters: futures_util::future::join_all(reads).await,
        waiting,
    }
}

/// Deletes the lock `name` on every master, whoever holds it, and hands it to the first waiter
/// of our queue (or offers it) as a release does; the number of masters where it was held.
pub(crate) async fn force_release(backend: &Backend, name: &str) -> Result<usize, LockError> {
    let keys = LockKeys::new(name);
    let releases = backend.masters.iter().map(|master| {
        let keys = &keys;
        async move {
            // A release of whatever value the key holds. Should another holder take the key
            // between the read and the release, its value is read again (a few times: a
            // key taken again each time is not stuck).
            for _ in 0..3 {
                let holder = master
                    .call(|mut connection| async move {
                        redis::cmd("GET")
                            .arg(&*keys.lock)
                            .query_async::<Option<String>>(&mut connection)
                            .await
                    })
                    .await
                    .map_err(|err| master.failure(&err))?;
                let Some(holder) = holder else {
                    return Ok(false);
                };
                let released: i64 = master
                    .call(|mut connection| {
                        let holder = holder.clone();
                        async move {
                            scripts::release(keys, &holder, None, Duration::ZERO)
                                .invoke(&mut connection)
                                .await
                        }
                    })
                    .await
                    .map_err(|err| master.failure(&err))?;
                if released > 0 {
                    return Ok(true);
                }
            }
            Ok(true)
        }
    });
    let results: Vec<Result<bool, MasterFailure>> = futures_util::future::join_all(releases).await;
    let failures: Vec<MasterFailure> = results
        .iter()
        .filter_map(|result| result.as_ref().err().cloned())
        .collect();
    if failures.len() > backend.masters.len() - backend.quorum() {
        return Err(LockError::Unavailable {
            name: name.to_owned(),
            quorum: backend.quorum(),
            masters: backend.masters.len(),
            failures,
        });
    }
    Ok(results
        .into_iter()
        .filter(|result| matches!(result, Ok(true)))
        .count())
}
