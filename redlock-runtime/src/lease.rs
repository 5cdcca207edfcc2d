//! One hold of a lock on the masters: what identifies it (the lease), what is known of its
//! validity, and the rounds that act on it only while it is ours: renew, release, take a
//! fencing token.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::sync::watch;

use crate::{
    LockError,
    backend::Backend,
    keys::{Counter, FOREIGN_WINDOW, GRANT, LockKeys},
    line::Lines,
    master::CallError,
    observe,
    quorum::{Tally, Verdict, drift, fan_out},
    rt,
    scripts::{self, Fence, Released, ScriptBatch, ScriptCall},
};

/// What identifies one hold of the lock on the masters; shared with the watchdog and with
/// re-entrant guards.
#[derive(Debug)]
pub(crate) struct Lease {
    pub(crate) backend: Arc<Backend>,
    pub(crate) name: String,
    /// Groups the lock in waiting statistics and metrics.
    pub(crate) stats_name: Option<String>,
    pub(crate) acquired_at: Instant,
    /// Until when a release keeps the key (`LockRequest::min_hold`), if ever.
    pub(crate) hold_until: Option<Instant>,
    pub(crate) keys: Arc<LockKeys>,
    pub(crate) value: Arc<str>,
    pub(crate) ttl: Duration,
    /// Set when the release starts: a renewal that then finds the lock gone reports no loss.
    pub(crate) released: AtomicBool,
    /// The local lines of the client, told when the release did.
    pub(crate) lines: Arc<Lines>,
    /// Taken on first request, then the same for this hold (nested guards included).
    pub(crate) fencing_token: tokio::sync::OnceCell<u64>,
}

/// What is known of a hold's validity, updated by the watchdog and by `extend`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Validity {
    pub(crate) valid_until: Instant,
    pub(crate) lost: bool,
}

impl Validity {
    /// Whether the lock may no longer be ours: told so, or its validity ran out.
    pub(crate) fn is_lost(&self, now: Instant) -> bool {
        self.lost || now >= self.valid_until
    }
}

/// One hold of a lock: what identifies it and what is known of its validity, shared by its
/// guard, the watchdog and nested guards.
#[derive(Debug, Clone)]
pub(crate) struct Hold {
    pub(crate) lease: Arc<Lease>,
    pub(crate) validity: Arc<watch::Sender<Validity>>,
}

impl Hold {
    pub(crate) fn new(lease: Lease, valid_until: Instant) -> Self {
        Self {
            lease: Arc::new(lease),
            validity: Arc::new(watch::Sender::new(Validity {
                valid_until,
                lost: false,
            })),
        }
    }
}

/// Extends the lock and records the outcome: a fresh validity, or the loss.
pub(crate) async fn renew(
    lease: &Lease,
    validity: &watch::Sender<Validity>,
) -> Result<(), LockError> {
    let started = Instant::now();
    let renewed = round_if_ours(lease, extend_call(lease)).await.map(drop);
    record_renewal(lease, validity, started, &renewed);
    renewed
}

/// Renews many holds of one client at once (the watchdog's due renewals): on each master one
/// pipeline carries every hold's compare-and-extend, a single round trip, and each hold is
/// decided by a quorum of its own and recorded as [`renew`] records one. Returns the outcomes
/// in the order of `holds`.
pub(crate) async fn renew_many(backend: &Backend, holds: &[Hold]) -> Vec<Result<(), LockError>> {
    let started = Instant::now();
    let masters = &backend.masters;
    let batch = Arc::new(ScriptBatch::new(
        &scripts::EXTEND,
        holds.iter().map(|hold| extend_call(&hold.lease)),
    ));
    let mut tallies: Vec<Tally> = holds.iter().map(|_| Tally::new(masters.len())).collect();
    let stragglers = fan_out(
        masters,
        |master| {
            let batch = Arc::clone(&batch);
            async move {
                let batch = &batch;
                master
                    .call(
                        |mut connection| async move { batch.invoke::<i64>(&mut connection).await },
                    )
                    .await
            }
        },
        |index, replies| {
            match replies {
                Ok(replies) => {
                    for (tally, reply) in tallies.iter_mut().zip(replies) {
                        match reply {
                            Ok(reply) if reply >= 0 => tally.yes(),
                            Ok(_) => tally.not_ours(&masters[index].label),
                            Err(error) => {
                                tally.failed(masters[index].failure(&CallError::Redis(error)));
                            }
                        }
                    }
                }
                Err(error) => {
                    let failure = masters[index].failure(&error);
                    for tally in &mut tallies {
                        tally.failed(failure.clone());
                    }
                }
            }
            if tallies
                .iter()
                .all(|tally| matches!(tally.verdict(), Verdict::Decided))
            {
                Verdict::Decided
            } else {
                Verdict::Undecided
            }
        },
    )
    .await;
    stragglers.finish_in_background(|_, _| {});
    holds
        .iter()
        .zip(tallies)
        .map(|(Hold { lease, validity }, tally)| {
            let renewed = outcome(lease, tally).map(drop);
            record_renewal(lease, validity, started, &renewed);
            renewed
        })
        .collect()
}

/// The compare-and-extend of a hold to its TTL.
fn extend_call(lease: &Lease) -> ScriptCall {
    scripts::extend(&lease.keys, &lease.value, lease.ttl)
}

/// Records the outcome of a renewal started at `started`: a fresh validity, or the loss (unless
/// the release started: then the key is gone because we deleted or granted it).
fn record_renewal(
    lease: &Lease,
    validity: &watch::Sender<Validity>,
    started: Instant,
    renewed: &Result<(), LockError>,
) {
    match renewed {
        Ok(()) => {
            let fresh = lease
                .ttl
                .saturating_sub(started.elapsed() + drift(lease.ttl));
            validity
                .send_modify(|known| known.valid_until = known.valid_until.max(started + fresh));
        }
        Err(LockError::Lost { .. }) if !lease.released.load(Ordering::Acquire) => {
            mark_lost(lease, validity, "the key was deleted or replaced");
        }
        Err(_) => {}
    }
}

pub(crate) fn mark_lost(lease: &Lease, validity: &watch::Sender<Validity>, why: &str) {
    let newly = validity.send_if_modified(|known| !std::mem::replace(&mut known.lost, true));
    if newly {
        tracing::error!(lock = %lease.name, why, "redlock: lock lost");
        observe::lost(&lease.name, lease.stats_name.as_deref());
    }
}

/// Extends a lock that a release granted us (see `wait/schedule.rs`) to its TTL in the background,
/// unless it is released within a tenth of a `GRANT`: until then, its validity is the
/// grant's, a fraction of a second.
pub(crate) fn confirm_grant(hold: &Hold) {
    let hold = hold.clone();
    rt::spawn(async move {
        // A short critical section (most of those that wait for a hot lock) releases before:
        // its lock is never extended, which saves a script call per acquisition. A grant is
        // noticed with at least half of its `GRANT` left, so the extension still has most of
        // that to arrive.
        tokio::time::sleep(GRANT / 10).await;
        if hold.lease.released.load(Ordering::Acquire) {
            return;
        }
        if let Err(error) = renew(&hold.lease, &hold.validity).await {
            tracing::warn!(lock = %hold.lease.name, %error, "redlock: a granted lock could not be extended; it stays valid for the grant only");
        }
    });
}

/// Releases on every master, granting the lock to the first waiter, or leaving it to foreign
/// waiters when it is their turn (see `release.lua`).
pub(crate) async fn release_everywhere(lease: &Lease) -> Result<(), LockError> {
    lease.released.store(true, Ordering::Release);
    // Foreign waiters count themselves in the counter of the stats name; in a cluster it lies
    // in another slot than the lock's keys, and they are not seen.
    let cluster = lease.backend.masters.iter().any(|master| master.is_cluster);
    let counter = (!cluster).then(|| Counter(lease.stats_name.as_deref().unwrap_or(&lease.name)));
    // What is left of the minimum hold, in whole milliseconds rounded up: "at least".
    let keep = lease.hold_until.map_or(Duration::ZERO, |until| {
        let left = until.saturating_duration_since(Instant::now());
        Duration::from_millis(u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX))
    });
    let release = scripts::release(&lease.keys, &lease.value, counter, keep);
    let released = round_if_ours(lease, release).await?;
    if Released::from_code(released) == Released::LeftToForeignWaiters {
        // This process's next request must not take it in their window with a plain `SET`.
        let window_ends = Instant::now() + FOREIGN_WINDOW;
        lease
            .lines
            .leave_to_foreign_waiters(&lease.keys.lock, window_ends);
    }
    Ok(())
}

/// The next fencing token: the highest counter of a quorum after incrementing each, written
/// back to a majority (with several masters) so that every later quorum sees it.
pub(crate) async fn take_fencing_token(lease: &Lease) -> Result<u64, LockError> {
    let fence = |op| scripts::fence(&lease.keys, &lease.value, op);
    let token = round_if_ours(lease, fence(Fence::Next)).await?;
    if lease.backend.masters.len() > 1 {
        round_if_ours(lease, fence(Fence::Raise(token))).await?;
    }
    Ok(token)
}

/// Runs a call of a script that acts only if the lock still holds our value (see
/// [`ScriptCall::owned`]) on every master, and decides as soon as the outcome is certain: the
/// highest reply once a quorum replied (a negative reply means "not ours"), `Lost` once a
/// quorum said "not ours", else `Unavailable`.
async fn round_if_ours(lease: &Lease, call: ScriptCall) -> Result<u64, LockError> {
    let masters = &lease.backend.masters;
    let mut tally = Tally::new(masters.len());
    let mut highest = 0;
    let call = Arc::new(call);
    let stragglers = fan_out(
        masters,
        |master| {
            let call = Arc::clone(&call);
            async move {
                let call = &call;
                master
                    .call(|mut connection| async move { call.invoke::<i64>(&mut connection).await })
                    .await
            }
        },
        |index, reply| {
            match reply {
                Ok(reply) if reply >= 0 => {
                    tally.yes();
                    highest = highest.max(reply.unsigned_abs());
                }
                Ok(_) => tally.not_ours(&masters[index].label),
                Err(error) => tally.failed(masters[index].failure(&error)),
            }
            tally.verdict()
        },
    )
    .await;
    stragglers.finish_in_background(|_, _| {});
    outcome(lease, tally).map(|()| highest)
}

/// What a round on a lock of ours decided: done by a quorum, `Lost` once a quorum said "not
/// ours", else `Unavailable`.
fn outcome(lease: &Lease, tally: Tally) -> Result<(), LockError> {
    if tally.granted() {
        Ok(())
    } else if tally.refused() {
        Err(LockError::Lost {
            name: lease.name.clone(),
        })
    } else {
        Err(LockError::Unavailable {
            name: lease.name.clone(),
            quorum: lease.backend.quorum(),
            masters: lease.backend.masters.len(),
            failures: tally.into_failures(),
        })
    }
}
