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
//!    A release grants the lock to the head of the queue, once the head has waited
//!    `OVERTAKE_FOR` (before that it leaves the lock free and offers it to the head, which
//!    attempts if nobody takes it: bounded barging), (its id becomes the lock's value for
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
    Config, LockError, MasterFailure, MasterVote, Timeout,
    acquire::{Attempt, attempt},
    backend::Backend,
    backoff::Backoff,
    keys::LockKeys,
    line::{LineOutage, Lines, Turn},
    stats::Waiters,
    wake::{ReleaseNotices, Seen},
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
    let mut wait = Wait::new(backend, waits, ask);
    wait.join_the_line_unless_free().await?;
    loop {
        let mut text = Uuid::encode_buffer();
        let value: Arc<str> = Arc::from(&*Uuid::new_v4().hyphenated().encode_lower(&mut text));
        // Our own background releases of this key go first (see `background`).
        backend
            .background
            .settled(&wait.ask.keys.lock, backend.config.master_timeout)
            .await;
        // After the wait above, which ends for every contender of a round at the same time.
        if let Some(pause) = wait.pause_first.take() {
            tokio::time::sleep(pause).await;
        }
        // Releases announced from here on may be the ones we wait for, even those that arrive
        // before the attempt's reply.
        let seen_before = wait
            .queued
            .as_ref()
            .map(Queued::releases_seen)
            .unwrap_or_default();
        if let Some(queued) = &mut wait.queued {
            queued.attempted(Instant::now());
        }
        let place = wait.queued.as_ref().map(|queued| &queued.place);
        wait.attempts += 1;
        let outcome = attempt(backend, wait.ask.keys, &value, wait.ask.ttl, place).await;
        let now = Instant::now();
        let (error, next) = match wait.judge(outcome, value, now)? {
            Step::Granted(granted) => return Ok(granted),
            Step::Again => continue,
            Step::Refused(error, next) => (error, next),
        };
        if wait.ask.timeout == Timeout::Skip || wait.deadline.is_some_and(|at| now >= at) {
            return Err(error);
        }
        if let Some(granted) = wait.sleep(error, next, seen_before).await? {
            return Ok(granted);
        }
    }
}

/// The state of one wait, between its attempt rounds.
struct Wait<'a> {
    backend: &'a Arc<Backend>,
    waits: &'a Waits,
    ask: Ask<'a>,
    started: Instant,
    deadline: Option<Instant>,
    backoff: Backoff,
    outage: Outage,
    /// Whether this wait said that it waits for restart graces.
    told_grace: bool,
    /// The attempt rounds made, and a pause before the next one (see `undecided_retry`).
    attempts: u32,
    pause_first: Option<Duration>,
    /// Whether this request, the line's representative, reported an outage to the tasks
    /// behind it.
    reported_outage: bool,
    /// Our place in the queue, once the wait joined it.
    queued: Option<Queued>,
    /// The local line's turn, taken for the first attempt of a request that may wait.
    turn: Option<Turn>,
}

/// What one attempt round decided.
enum Step {
    Granted(Granted),
    /// Round again at once, after `Wait::pause_first` (an undecided round of `Skip`).
    Again,
    /// Refused: the error if the wait ends now, and when to attempt again.
    Refused(LockError, NextAttempt),
}

impl<'a> Wait<'a> {
    fn new(backend: &'a Arc<Backend>, waits: &'a Waits, ask: Ask<'a>) -> Self {
        let started = Instant::now();
        let deadline = match ask.timeout {
            // A wait too long for the clock (`Duration::MAX`) has no deadline.
            Timeout::After(wait) => started.checked_add(wait),
            Timeout::Forever | Timeout::Skip => None,
        };
        Self {
            backend,
            waits,
            ask,
            started,
            deadline,
            backoff: Backoff::new(backend.config.retry_delay, backend.config.max_backoff),
            outage: Outage::default(),
            told_grace: false,
            attempts: 0,
            pause_first: None,
            reported_outage: false,
            queued: None,
            turn: None,
        }
    }

    /// Held by another client: the last attempt's votes (none if the request never attempted).
    fn held(&self, votes: Vec<MasterVote>) -> LockError {
        LockError::Timeout {
            name: self.ask.name.to_owned(),
            waited: self.started.elapsed(),
            votes,
        }
    }

    /// A task that gives up in the local line tells what its representative met.
    fn gave_up_in_line(&self) -> LockError {
        match self.waits.lines.outage(&self.ask.keys.lock) {
            Some(outage) => outage.error,
            None => self.held(Vec::new()),
        }
    }

    /// A request that may wait takes the local line's turn for its first attempt too; when
    /// tasks of this process wait for the lock already (or a release of ours left it to
    /// foreign waiters), a plain `SET` would barge ahead of them: it joins them instead.
    async fn join_the_line_unless_free(&mut self) -> Result<(), LockError> {
        if self.ask.timeout == Timeout::Skip {
            return Ok(());
        }
        self.turn = self.waits.lines.try_turn(&self.ask.keys.lock, self.started);
        if self.turn.is_none() {
            self.join_the_queue().await?;
            // An outage that the representative before us met goes on for us.
            if let Some(line_outage) = self.waits.lines.outage(&self.ask.keys.lock) {
                self.outage.since = line_outage.since;
            }
        }
        Ok(())
    }

    /// Counts the waiter in, waits for the local line's turn (unless it holds it already) and
    /// watches releases.
    async fn join_the_queue(&mut self) -> Result<(), LockError> {
        let joined = Queued::start(
            self.backend,
            self.waits,
            self.ask.keys,
            self.ask.stats_name,
            self.ask.stats,
            self.turn.take(),
            self.deadline,
        );
        self.queued = Some(joined.await.ok_or_else(|| self.gave_up_in_line())?);
        Ok(())
    }

    /// What the round's `outcome` means for the wait: `Err` ends it.
    fn judge(
        &mut self,
        outcome: Attempt,
        value: Arc<str>,
        now: Instant,
    ) -> Result<Step, LockError> {
        if self.reported_outage && !matches!(outcome, Attempt::Unavailable { .. }) {
            self.waits.lines.report_outage(&self.ask.keys.lock, None);
            self.reported_outage = false;
        }
        Ok(match outcome {
            Attempt::Acquired { valid_until } => {
                if let Some(queued) = &mut self.queued {
                    // The acquire script took us out of the queue where it granted the lock;
                    // with several masters, a master that refused still has our place, which
                    // must not stay at the head of its queue (left when the wait drops).
                    queued.left = self.backend.masters.len() == 1;
                }
                Step::Granted(Granted {
                    value,
                    valid_until,
                    extend_now: false,
                })
            }
            Attempt::Busy {
                standing,
                certain,
                leads,
                votes,
            } => {
                self.backoff.reset();
                self.outage.end();
                if !certain && self.retry_undecided(leads) {
                    return Ok(Step::Again);
                }
                if let (Some(queued), Some(standing)) = (&mut self.queued, &standing) {
                    queued.refused_by(standing);
                }
                Step::Refused(self.held(votes), NextAttempt::after_refusal(standing, now))
            }
            Attempt::Split { leads, votes } => {
                self.backoff.reset();
                self.outage.end();
                if self.retry_undecided(leads) {
                    return Ok(Step::Again);
                }
                let error = LockError::SplitVote {
                    name: self.ask.name.to_owned(),
                    attempts: self.attempts,
                    votes,
                };
                Step::Refused(error, NextAttempt::after_refusal(None, now))
            }
            Attempt::Unavailable { failures, votes_at } => {
                let (error, at) = self.unavailable(failures, votes_at, now)?;
                Step::Refused(error, NextAttempt::At(at))
            }
        })
    }

    /// Whether to retry an undecided round at once (see `undecided_retry`).
    fn retry_undecided(&mut self, leads: bool) -> bool {
        let config = &self.backend.config;
        self.pause_first = undecided_retry(self.ask.timeout, self.attempts, leads, config);
        self.pause_first.is_some()
    }

    /// Masters failed: the error, and when to attempt again; `Err` when waiting cannot help.
    fn unavailable(
        &mut self,
        failures: Vec<MasterFailure>,
        votes_at: Option<Instant>,
        now: Instant,
    ) -> Result<(LockError, Instant), LockError> {
        let backend = self.backend;
        // Waiting cannot help when too many masters are misconfigured for a quorum, nor past
        // the outage timeout.
        let misconfigured = failures.iter().filter(|f| f.misconfigured).count();
        let hopeless = misconfigured > backend.masters.len() - backend.quorum();
        let (gives_up_at, retry_at) = match votes_at {
            // Masters inside their restart grace vote again only after the deadline: waiting
            // cannot help.
            Some(at) if self.deadline.is_some_and(|deadline| at > deadline) => (Some(now), at),
            // Masters inside their restart grace are up, and vote again at a known time: no
            // outage, the next attempt is then.
            Some(at) => {
                self.outage.end();
                let waits = self.ask.timeout != Timeout::Skip;
                // Each master warns once per restart; each wait only says it waits.
                if waits && !std::mem::replace(&mut self.told_grace, true) {
                    tracing::debug!(lock = %self.ask.name, wait_secs = at.saturating_duration_since(now).as_secs_f64(), "redlock: waiting for restarted masters to leave their restart grace (Config::restart_grace)");
                }
                (None, at)
            }
            None => (
                self.outage.gives_up_at(now, &backend.config),
                later(now, self.backoff.next()),
            ),
        };
        let error = LockError::Unavailable {
            name: self.ask.name.to_owned(),
            quorum: backend.quorum(),
            masters: backend.masters.len(),
            failures,
        };
        if self.ask.timeout != Timeout::Skip {
            // We hold the line's turn: the tasks behind us must not take the outage for
            // contention when they give up.
            let line_outage = LineOutage {
                since: self.outage.since,
                error: error.clone(),
            };
            let lock = &self.ask.keys.lock;
            self.waits.lines.report_outage(lock, Some(line_outage));
            self.reported_outage = true;
        }
        if hopeless || gives_up_at.is_some_and(|at| now >= at) {
            return Err(error);
        }
        Ok((error, gives_up_at.map_or(retry_at, |at| retry_at.min(at))))
    }

    /// Sleeps until the `next` attempt, or until a quorum of releases granted us the lock
    /// (then ours: `Some`). The first refusal (the attempt was made with the line's turn)
    /// joins the queue instead, and the next attempt comes at once, so that no release
    /// between the two attempts goes unseen.
    async fn sleep(
        &mut self,
        error: LockError,
        next: NextAttempt,
        seen_before: Seen,
    ) -> Result<Option<Granted>, LockError> {
        let Some(waiting) = &mut self.queued else {
            self.join_the_queue().await?;
            return Ok(None);
        };
        tracing::trace!(lock = %self.ask.name, %error, "redlock: waiting");
        let quorum = self.backend.quorum();
        let woken = waiting
            .pause(next, self.deadline, quorum, seen_before)
            .await;
        // Granted by a quorum: ours, unless too little of the grant is left (then the next
        // attempt claims it).
        if let Woken::Granted(masters) = woken
            && let Some(valid_until) = waiting.grant_validity(Instant::now(), self.ask.ttl)
        {
            // Dropped with the wait: leaves the queues of the masters that did not grant (yet),
            // keeping a grant that comes meanwhile.
            waiting.keep_grants = masters;
            return Ok(Some(Granted {
                value: Arc::clone(&waiting.place.id),
                valid_until,
                extend_now: true,
            }));
        }
        Ok(None)
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
