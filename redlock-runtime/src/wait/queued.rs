//! A waiting request's membership of the lock's queue: its turn in the local line, its place
//! on the masters, its watch on releases, its count in the statistics, all left when dropped.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use uuid::Uuid;

use super::{
    Waits,
    schedule::{NextAttempt, announcements_for, grant_validity},
};
use crate::{
    acquire::{Place, Standing, spawn_leave_queue},
    backend::Backend,
    keys::{GRANT, LockKeys, OVERTAKE_FOR},
    line::Turn,
    scripts::wall_clock_ms,
    stats::WaitingStats,
    wake::{ReleaseWatch, Seen},
};

/// A waiting request, the representative of this process's waiters for the lock: its turn,
/// its place in the queue, its watch on releases, its count in the statistics. Dropping it
/// (granted, deadline, cancellation, panic) leaves the queue, hands the turn on and counts the
/// waiter out.
pub(super) struct Queued {
    pub(super) place: Place,
    releases: ReleaseWatch,
    backend: Arc<Backend>,
    keys: Arc<LockKeys>,
    /// Whether the acquire script already took us out of every queue.
    pub(super) left: bool,
    /// When our first queued attempt started, and how many were made: see [`Self::grant_validity`].
    first_attempt: Option<Instant>,
    attempts: u32,
    /// Held by the grants of these masters (bit `i`: master `i`), which took us out of their
    /// queue: the others keep a grant to us that comes after we leave their queue.
    pub(super) keep_grants: u64,
    /// The holder that the last refusal showed (its digest, 0 if free) and the releases
    /// announced by then: see [`Self::refused_by`].
    last_holder: (u64, u64),
    /// Dropped after the queue is left (fields drop in order).
    _turn: Turn,
    /// `None` with statistics off.
    _counted: Option<WaitingStats>,
}

impl Queued {
    /// Counts the waiter in (`stats`), waits for its turn in the local line unless it has it
    /// (`None` if the deadline comes first), then watches releases.
    pub(super) async fn start(
        backend: &Arc<Backend>,
        waits: &Waits,
        keys: &Arc<LockKeys>,
        stats_name: &str,
        stats: bool,
        turn: Option<Turn>,
        deadline: Option<Instant>,
    ) -> Option<Self> {
        let counted = stats.then(|| WaitingStats::begin(&waits.waiters, backend, stats_name));
        let turn = match (turn, deadline) {
            (Some(turn), _) => turn,
            (None, Some(deadline)) => {
                let turn = waits.lines.turn(&keys.lock);
                tokio::time::timeout_at(deadline.into(), turn).await.ok()?
            }
            (None, None) => waits.lines.turn(&keys.lock).await,
        };
        let channel: Arc<str> = keys.channel().to_string().into();
        let id: Arc<str> = Uuid::new_v4().hyphenated().to_string().into();
        let releases = waits.notices.watch(&channel, &id).await;
        let ticket = wall_clock_ms();
        Some(Self {
            place: Place {
                id,
                ticket,
                stats_name: stats_name.into(),
            },
            releases,
            backend: Arc::clone(backend),
            keys: Arc::clone(keys),
            left: false,
            first_attempt: None,
            attempts: 0,
            keep_grants: 0,
            last_holder: (0, 0),
            _turn: turn,
            _counted: counted,
        })
    }

    pub(super) fn releases_seen(&self) -> Seen {
        self.releases.releases_seen()
    }

    /// A queued attempt starts `now`.
    pub(super) fn attempted(&mut self, now: Instant) {
        self.first_attempt.get_or_insert(now);
        self.attempts += 1;
    }

    /// A queued attempt was refused with `standing`. When the holder may release without
    /// announcing it, the lock's key is watched for that release (see `wake.rs`): the script
    /// says so (foreign waiters wait, or took the lock last), or the holder changed since the
    /// last refusal with no release announced (a Python worker that released and took the
    /// lock again, a holder whose key expired). Our holders announce every release to our
    /// waiters, so a fleet of ours never watches.
    pub(super) fn refused_by(&mut self, standing: &Standing) {
        let announced = self.releases_seen().releases;
        let (last, announced_then) =
            std::mem::replace(&mut self.last_holder, (standing.holder, announced));
        let changed_unannounced =
            last != 0 && last != standing.holder && announced == announced_then;
        if standing.holder != 0 && (standing.foreign || changed_unannounced) {
            self.releases.watch_key(&self.keys.lock, standing.holder);
        }
    }

    /// Whether announced grants may be trusted: see [`grant_validity`].
    pub(super) fn trusts_grants(&self) -> bool {
        self.attempts == 1
    }

    /// See [`grant_validity`].
    pub(super) fn grant_validity(&self, now: Instant, ttl: Duration) -> Option<Instant> {
        grant_validity(self.first_attempt?, self.attempts, now, ttl)
    }

    /// Sleeps until `next` or the deadline, whichever comes first, or until a quorum of
    /// masters granted us the lock; `before` is what was announced when the last attempt
    /// started.
    pub(super) async fn pause(
        &mut self,
        next: NextAttempt,
        deadline: Option<Instant>,
        quorum: usize,
        before: Seen,
    ) -> Woken {
        let (until, releases, mut next_in_line) = match next {
            NextAttempt::OnRelease {
                releases,
                fallback,
                next_in_line,
            } => (fallback, Some(releases), next_in_line),
            NextAttempt::At(at) => (at, None, false),
        };
        let until = deadline.map_or(until, |deadline| until.min(deadline));
        let sleep = tokio::time::sleep_until(until.into());
        let Some(releases) = releases else {
            sleep.await;
            return Woken::Attempt;
        };
        let enough = announcements_for(releases, quorum);
        let masters = self.backend.masters.len();
        let mut partly_granted = None;
        let mut offers = before.offers;
        tokio::pin!(sleep);
        loop {
            // Read after the grants: every grant noted is counted in it.
            let granted = if self.trusts_grants() {
                self.releases.grants()
            } else {
                0
            };
            let seen = self.releases.releases_seen();
            if granted != 0 {
                let count = granted.count_ones() as usize;
                if count >= quorum {
                    return Woken::Granted(granted);
                }
                let heard_then = *partly_granted.get_or_insert_with(|| {
                    // The other masters' announcements are on their way; if they granted
                    // other waiters (queues out of step), the next attempt sorts it out.
                    let settle = Instant::now() + GRANT / 5;
                    if settle < until {
                        sleep.as_mut().reset(settle.into());
                    }
                    seen.heard()
                });
                // No more grants are coming when the masters that did not grant offered us
                // the lock (it is free there: an attempt takes it) or every one of them
                // announced something else since: attempt now rather than at the settle.
                let offered = (seen.offers - before.offers) as usize;
                if count + offered >= quorum
                    || seen.heard() - heard_then >= (masters - count) as u64
                {
                    return Woken::Attempt;
                }
            }
            let partly_granted = partly_granted.is_some();
            if seen.offers > std::mem::replace(&mut offers, seen.offers) {
                // Left free for whoever asks first, the releaser mostly (announced once per
                // head): the first release once our time to be overtaken is over grants us the
                // lock; if none comes by then (the lock went idle), we attempt.
                let idle = Instant::now() + OVERTAKE_FOR + OFFER_IDLE;
                if idle < until && !partly_granted {
                    sleep.as_mut().reset(idle.into());
                }
            }
            let our_turn = if self.trusts_grants() {
                // The releases that granted others did not make it our turn; one that granted
                // nobody may have (or opened a window for foreign waiters).
                seen.to_nobody > before.to_nobody
            } else {
                seen.releases - before.releases >= enough
            } || seen.unannounced > before.unannounced;
            if our_turn && !partly_granted {
                return Woken::Attempt;
            }
            tokio::select! {
                () = &mut sleep => return Woken::Attempt,
                () = self.releases.next_release() => {
                    let lapses = Instant::now() + GRANT + Duration::from_millis(1);
                    if std::mem::take(&mut next_in_line) && lapses < until && !partly_granted {
                        sleep.as_mut().reset(lapses.into());
                    }
                }
            }
        }
    }
}

/// How long after its time to be overtaken (see `OVERTAKE_FOR`) a head that was offered the
/// lock attempts, unless a release grants the lock first: time for a looping releaser's next
/// release, which spares the head an attempt that the releaser's hold would refuse.
const OFFER_IDLE: Duration = Duration::from_millis(1);

/// What ends a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Woken {
    /// Time for the next attempt.
    Attempt,
    /// These masters (bit `i`: master `i`), a quorum, granted us the lock.
    Granted(u64),
}

impl Drop for Queued {
    fn drop(&mut self) {
        if !self.left {
            spawn_leave_queue(&self.backend, &self.keys, &self.place.id, self.keep_grants);
        }
    }
}
