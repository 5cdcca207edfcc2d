//! The wait for a lock, from the first attempt to the grant, the refusal or the deadline: the
//! whole state machine, read top to bottom in [`run`].
//!
//! 1. The first attempt is a plain `SET NX PX` (the uncontended path: no queue, no statistics),
//!    made with the turn of the lock's local line (see `line`), unless tasks of this process
//!    have it or wait for it: then the request joins them without it.
//! 2. Refused, the request starts waiting: it counts itself in the waiting statistics and
//!    waits for its turn in the lock's local line, the tasks of this process that wait for
//!    the same lock. Its turn come, it represents the line on the masters ([`Queued`]): it
//!    watches the lock's release channel and joins the lock's queue with its next attempt,
//!    made at once so that no release between the two goes unseen. Granted, it hands the
//!    turn on, and the next task of the line queues behind the other processes.
//! 3. Each refusal tells how many releases must come before our turn (the holder's, and one
//!    per waiter ahead); the request sleeps until the release channel has announced them, or
//!    until its fallback timer: the holder's TTL (a holder that never announces: the Python
//!    library, a crashed process), capped by the heartbeat that keeps its queue place alive.
//!    A release grants the lock to the head of the queue (its id becomes the lock's value for
//!    `GRANT`) and announces the grantee: a quorum of grants announced, the waiter holds the
//!    lock without another round trip, and extends it in the background (see
//!    [`grant_validity`]).
//! 4. While masters fail, attempts are spaced by a capped, jittered backoff; failures that
//!    waiting cannot fix end the wait at once, an outage after `Config::outage_timeout`.
//! 5. Dropping the wait (granted elsewhere, deadline, cancellation, panic) leaves the queue,
//!    passes on a grant made to it, hands the turn on, and counts the waiter out, in
//!    the background.
//!
//! A grantee that never extends its grant (killed, paused) holds it only `GRANT`, and the next
//! waiter goes (see `queue.lua`). Waiters of the Python library, which poll and never queue,
//! take turns as one more process: see `release.lua`.

mod queued;
mod schedule;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use uuid::Uuid;

use self::{
    queued::{Queued, Woken},
    schedule::{NextAttempt, later, undecided_retry},
};

use crate::{
    Config, LockError, MasterVote, Timeout,
    acquire::{Attempt, attempt},
    backend::Backend,
    backoff::Backoff,
    keys::LockKeys,
    line::{LineOutage, Lines},
    stats::Waiters,
    wake::ReleaseNotices,
};

/// What the waits of one client share.
#[derive(Debug)]
pub(crate) struct Waits {
    pub(crate) notices: Arc<ReleaseNotices>,
    pub(crate) lines: Arc<Lines>,
    pub(crate) waiters: Arc<Waiters>,
}

/// What a request waits for.
pub(crate) struct Ask<'a> {
    pub(crate) name: &'a str,
    pub(crate) keys: &'a Arc<LockKeys>,
    pub(crate) ttl: Duration,
    pub(crate) timeout: Timeout,
    /// Where the wait is counted (the lock name unless told otherwise), and where foreign
    /// waiters of the lock are seen.
    pub(crate) stats_name: &'a str,
    /// Whether the wait is counted.
    pub(crate) stats: bool,
}

/// The lock, granted: our value is set on a quorum until `valid_until`.
pub(crate) struct Granted {
    pub(crate) value: Arc<str>,
    pub(crate) valid_until: Instant,
    /// Granted by a release, for `GRANT` only: the lock must be extended at once.
    pub(crate) extend_now: bool,
}

/// Attempts until the lock is granted, refused for good or the deadline passes.
pub(crate) async fn run(
    backend: &Arc<Backend>,
    waits: &Waits,
    ask: Ask<'_>,
) -> Result<Granted, LockError> {
    let Ask {
        name,
        keys,
        ttl,
        timeout,
        stats_name,
        stats,
    } = ask;
    let started = Instant::now();
    let deadline = match timeout {
        // A wait too long for the clock (`Duration::MAX`) has no deadline.
        Timeout::After(wait) => started.checked_add(wait),
        Timeout::Forever | Timeout::Skip => None,
    };
    let mut backoff = Backoff::new(backend.config.retry_delay, backend.config.max_backoff);
    let mut outage = Outage::default();
    // Whether this wait said that it waits for restart graces.
    let mut told_grace = false;
    // The attempt rounds made, and a pause before the next one (see `undecided_retry`).
    let mut attempts = 0u32;
    let mut pause_first = None;
    // Whether this request, the line's representative, reported an outage to the tasks
    // behind it.
    let mut reported_outage = false;
    // A task that gives up in the local line tells what its representative met.
    // Held by another client: the last attempt's votes (none if the request never attempted).
    let held = |votes: Vec<MasterVote>| LockError::Timeout {
        name: name.to_owned(),
        waited: started.elapsed(),
        votes,
    };
    let gave_up_in_line = || match waits.lines.outage(&keys.lock) {
        Some(outage) => outage.error,
        None => held(Vec::new()),
    };
    let mut queued: Option<Queued> = None;
    // A request that may wait takes the local line's turn for its first attempt too.
    let mut turn = None;
    if timeout != Timeout::Skip {
        turn = waits.lines.try_turn(&keys.lock, started);
        if turn.is_none() {
            // Tasks of this process wait for the lock already (or a release of ours left it
            // to foreign waiters): a plain `SET` would barge ahead of them.
            let joined = Queued::start(backend, waits, keys, stats_name, stats, None, deadline);
            queued = Some(joined.await.ok_or_else(gave_up_in_line)?);
            // An outage that the representative before us met goes on for us.
            if let Some(line_outage) = waits.lines.outage(&keys.lock) {
                outage.since = line_outage.since;
            }
        }
    }
    loop {
        let mut text = Uuid::encode_buffer();
        let value: Arc<str> = Arc::from(&*Uuid::new_v4().hyphenated().encode_lower(&mut text));
        // Our own background releases of this key go first (see `background`).
        backend
            .background
            .settled(&keys.lock, backend.config.master_timeout)
            .await;
        // After the wait above, which ends for every contender of a round at the same time.
        if let Some(pause) = pause_first.take() {
            tokio::time::sleep(pause).await;
        }
        // Releases announced from here on may be the ones we wait for, even those that arrive
        // before the attempt's reply.
        let seen_before = queued
            .as_ref()
            .map(Queued::releases_seen)
            .unwrap_or_default();
        if let Some(queued) = &mut queued {
            queued.attempted(Instant::now());
        }
        let place = queued.as_ref().map(|queued| &queued.place);
        attempts += 1;
        let outcome = attempt(backend, keys, &value, ttl, place).await;
        let now = Instant::now();
        if reported_outage && !matches!(outcome, Attempt::Unavailable { .. }) {
            waits.lines.report_outage(&keys.lock, None);
            reported_outage = false;
        }
        let (error, next) = match outcome {
            Attempt::Acquired { valid_until } => {
                if let Some(mut queued) = queued {
                    // The acquire script took us out of the queue where it granted the lock;
                    // with several masters, a master that refused still has our place, which
                    // must not stay at the head of its queue.
                    queued.left = backend.masters.len() == 1;
                }
                return Ok(Granted {
                    value,
                    valid_until,
                    extend_now: false,
                });
            }
            Attempt::Busy {
                standing,
                certain,
                leads,
                votes,
            } => {
                backoff.reset();
                outage.end();
                if !certain
                    && let Some(pause) = undecided_retry(timeout, attempts, leads, &backend.config)
                {
                    pause_first = Some(pause);
                    continue;
                }
                (held(votes), NextAttempt::after_refusal(standing, now))
            }
            Attempt::Split { leads, votes } => {
                backoff.reset();
                outage.end();
                if let Some(pause) = undecided_retry(timeout, attempts, leads, &backend.config) {
                    pause_first = Some(pause);
                    continue;
                }
                let error = LockError::SplitVote {
                    name: name.to_owned(),
                    attempts,
                    votes,
                };
                (error, NextAttempt::after_refusal(None, now))
            }
            Attempt::Unavailable { failures, votes_at } => {
                // Waiting cannot help when too many masters are misconfigured for a quorum,
                // nor past the outage timeout.
                let misconfigured = failures.iter().filter(|f| f.misconfigured).count();
                let hopeless = misconfigured > backend.masters.len() - backend.quorum();
                let (gives_up_at, retry_at) = match votes_at {
                    // Masters inside their restart grace vote again only after the deadline:
                    // waiting cannot help.
                    Some(at) if deadline.is_some_and(|deadline| at > deadline) => (Some(now), at),
                    // Masters inside their restart grace are up, and vote again at a known
                    // time: no outage, the next attempt is then.
                    Some(at) => {
                        outage.end();
                        let waits = timeout != Timeout::Skip;
                        // Each master warns once per restart; each wait only says it waits.
                        if waits && !std::mem::replace(&mut told_grace, true) {
                            tracing::debug!(lock = %name, wait_secs = at.saturating_duration_since(now).as_secs_f64(), "redlock: waiting for restarted masters to leave their restart grace (Config::restart_grace)");
                        }
                        (None, at)
                    }
                    None => (
                        outage.gives_up_at(now, &backend.config),
                        later(now, backoff.next()),
                    ),
                };
                let error = LockError::Unavailable {
                    name: name.to_owned(),
                    quorum: backend.quorum(),
                    masters: backend.masters.len(),
                    failures,
                };
                if timeout != Timeout::Skip {
                    // We hold the line's turn: the tasks behind us must not take the outage
                    // for contention when they give up.
                    let line_outage = LineOutage {
                        since: outage.since,
                        error: error.clone(),
                    };
                    waits.lines.report_outage(&keys.lock, Some(line_outage));
                    reported_outage = true;
                }
                if hopeless || gives_up_at.is_some_and(|at| now >= at) {
                    return Err(error);
                }
                let at = gives_up_at.map_or(retry_at, |at| retry_at.min(at));
                (error, NextAttempt::At(at))
            }
        };
        if timeout == Timeout::Skip || deadline.is_some_and(|deadline| now >= deadline) {
            return Err(error);
        }
        match &mut queued {
            Some(waiting) => {
                tracing::trace!(lock = %name, %error, "redlock: waiting");
                let woken = waiting
                    .pause(next, deadline, backend.quorum(), seen_before)
                    .await;
                // Granted by a quorum: ours, unless too little of the grant is left (then the
                // next attempt claims it).
                if let Woken::Granted(masters) = woken
                    && let Some(valid_until) = waiting.grant_validity(Instant::now(), ttl)
                {
                    // Dropped on return: leaves the queues of the masters that did not grant
                    // (yet), keeping a grant that comes meanwhile.
                    waiting.keep_grants = masters;
                    return Ok(Granted {
                        value: Arc::clone(&waiting.place.id),
                        valid_until,
                        extend_now: true,
                    });
                }
            }
            None => {
                // The first refusal (the attempt was made with the line's turn): count the
                // waiter in, watch releases and join the queue, then attempt again at once, so
                // that no release between the two attempts goes unseen.
                let joined = Queued::start(
                    backend,
                    waits,
                    keys,
                    stats_name,
                    stats,
                    turn.take(),
                    deadline,
                );
                queued = Some(joined.await.ok_or_else(gave_up_in_line)?);
            }
        }
    }
}

/// Since when no attempt reached a quorum (see `Config::outage_timeout`).
#[derive(Debug, Default)]
struct Outage {
    since: Option<Instant>,
}

impl Outage {
    /// When the outage that goes on at `now` ends the wait, if it ever does.
    fn gives_up_at(&mut self, now: Instant, config: &Config) -> Option<Instant> {
        let since = *self.since.get_or_insert(now);
        // A limit too long for the clock never ends the wait.
        config
            .outage_timeout
            .and_then(|limit| since.checked_add(limit))
    }

    /// A quorum answered.
    fn end(&mut self) {
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::Outage;
    use crate::Config;

    #[test]
    fn an_outage_gives_up_its_timeout_after_it_began_and_ends_with_a_quorum() {
        let config = Config {
            outage_timeout: Some(Duration::from_secs(30)),
            ..Config::default()
        };
        let began = Instant::now();
        let mut outage = Outage::default();
        assert_eq!(
            outage.gives_up_at(began, &config),
            Some(began + Duration::from_secs(30))
        );
        let later = began + Duration::from_secs(10);
        assert_eq!(
            outage.gives_up_at(later, &config),
            Some(began + Duration::from_secs(30))
        );
        outage.end();
        assert_eq!(
            outage.gives_up_at(later, &config),
            Some(later + Duration::from_secs(30))
        );
        let forever = Config {
            outage_timeout: None,
            ..Config::default()
        };
        assert_eq!(Outage::default().gives_up_at(began, &forever), None);
    }
}
