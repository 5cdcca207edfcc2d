//! What the library reports about each lock: `tracing` events always (inside a
//! `redlock_acquire` span that carries the lock name), and with the `metrics` feature the same
//! facts as counters and histograms through the [`metrics`] facade, for any recorder the
//! application installs (Prometheus, StatsD, ...).
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `redlock_acquisitions_total` | counter | `lock`, `outcome` = `acquired` / `skipped` / `timed_out` / `unavailable` / `error` |
//! | `redlock_wait_seconds` | histogram | `lock`, `outcome`: from the request to its outcome |
//! | `redlock_hold_seconds` | histogram | `lock`: from acquisition to release (or drop) |
//! | `redlock_lost_total` | counter | `lock`: holds found lost (stolen, expired, or not renewable) |
//!
//! `lock` is the request's `stats_name` if it has one, else the lock name (for a semaphore,
//! its name: one series for all its permits). Each distinct value
//! is a time series in your monitoring system: lock names built from ids (`job:{id}`) should
//! carry a `stats_name` that groups them (`stats_name("job")`), or the series grow without
//! bound.

use std::time::{Duration, Instant};

use crate::{LockError, Timeout};

/// One acquisition being observed, from the request to its outcome.
pub(crate) struct Acquisition {
    started: Instant,
    skip: bool,
    #[cfg(feature = "metrics")]
    lock: String,
}

impl Acquisition {
    pub(crate) fn start(name: &str, stats_name: Option<&str>, timeout: Option<Timeout>) -> Self {
        #[cfg(not(feature = "metrics"))]
        let _ = (name, stats_name);
        Self {
            started: Instant::now(),
            skip: timeout == Some(Timeout::Skip),
            #[cfg(feature = "metrics")]
            lock: stats_name.unwrap_or(name).to_owned(),
        }
    }

    /// Records the outcome; the `redlock_acquire` span around it carries the lock name.
    pub(crate) fn finish<T>(self, result: &Result<T, LockError>) {
        let waited = self.started.elapsed();
        let outcome = match result {
            Ok(_) => "acquired",
            Err(LockError::Timeout { .. }) if self.skip => "skipped",
            Err(LockError::Timeout { .. }) => "timed_out",
            Err(LockError::Unavailable { .. }) => "unavailable",
            Err(LockError::SplitVote { .. }) => "split_vote",
            Err(_) => "error",
        };
        match result {
            Ok(_) => tracing::debug!(outcome, ?waited, "redlock: acquired"),
            Err(error) => tracing::debug!(%error, outcome, ?waited, "redlock: not acquired"),
        }
        #[cfg(feature = "metrics")]
        {
            let lock = self.lock;
            metrics::counter!("redlock_acquisitions_total", "lock" => lock.clone(), "outcome" => outcome)
                .increment(1);
            metrics::histogram!("redlock_wait_seconds", "lock" => lock, "outcome" => outcome)
                .record(waited);
        }
    }
}

/// The end of a hold in this process (released, or dropped).
pub(crate) fn hold_ended(name: &str, stats_name: Option<&str>, held: Duration) {
    tracing::debug!(lock = name, ?held, "redlock: hold ended");
    #[cfg(feature = "metrics")]
    metrics::histogram!("redlock_hold_seconds", "lock" => stats_name.unwrap_or(name).to_owned())
        .record(held);
    #[cfg(not(feature = "metrics"))]
    let _ = stats_name;
}

/// A hold found lost (its `tracing` error is logged where the loss is found).
pub(crate) fn lost(name: &str, stats_name: Option<&str>) {
    #[cfg(feature = "metrics")]
    metrics::counter!("redlock_lost_total", "lock" => stats_name.unwrap_or(name).to_owned())
        .increment(1);
    #[cfg(not(feature = "metrics"))]
    let _ = (name, stats_name);
}
