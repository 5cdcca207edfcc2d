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

use std::{
    sync::Arc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use uuid::Uuid;

use crate::{
    Config, LockError, MasterVote, Timeout,
    acquire::{Attempt, Place, Standing, attempt, spawn_leave_queue},
    backend::Backend,
    keys::{GRANT, LockKeys, PLACE_TTL},
    line::{LineOutage, Lines, Turn},
    quorum::validity,
    stats::{Waiters, WaitingStats},
    wake::{ReleaseNotices, ReleaseWatch, Seen},
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
    let mut backoff = Backoff::new(&backend.config);
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

/// When a waiter attempts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NextAttempt {
    /// At the release that makes it our turn (the `releases`-th from the last attempt), or at
    /// `fallback` (the holder's TTL ends, or the heartbeat that keeps our place). A waiter
    /// `next_in_line` (one waiter ahead) also attempts when the grant that the next release
    /// makes to that waiter lapses: if it was not extended (the head killed or paused), that
    /// attempt takes the lock.
    OnRelease {
        releases: u64,
        fallback: Instant,
        next_in_line: bool,
    },
    /// At this instant (backoff while masters fail).
    At(Instant),
}

impl NextAttempt {
    /// After a refusal: our turn comes after the holder's release (if the lock is held) and
    /// after those of the waiters ahead of us. A plain `SET` learns nothing: the next attempt
    /// (the queued one) comes at once anyway.
    fn after_refusal(standing: Option<Standing>, now: Instant) -> Self {
        let Standing {
            expires_in,
            ahead,
            held,
        } = standing.unwrap_or(Standing {
            expires_in: Duration::ZERO,
            ahead: 0,
            held: false,
        });
        Self::OnRelease {
            releases: ahead + u64::from(held),
            fallback: now + fallback_after(expires_in),
            next_in_line: ahead == 1,
        }
    }
}

/// How long to sleep, at most, when the lock is held and no release is announced: until the
/// holder's TTL ends (a holder that never announces, such as the Python library or a crashed
/// process), and never longer than the heartbeat that keeps our place in the queue.
fn fallback_after(expires_in: Duration) -> Duration {
    let heartbeat = PLACE_TTL / 3;
    if expires_in.is_zero() {
        heartbeat
    } else {
        (expires_in + Duration::from_millis(1)).min(heartbeat)
    }
}

/// Until when a lock that a quorum of releases granted us, noticed `now`, is ours: `GRANT` from
/// the start of our first queued attempt, less the drift (the TTL if shorter: the extension
/// that follows sets the TTL, and must not leave us counting on more). A grant to us cannot
/// precede our place in the queue, so it came after that attempt started; and nothing of
/// ours touched it since, as long as that attempt (`attempts == 1`), refused, was the only
/// one: the grant holds our id until its `GRANT` runs out. A later attempt may claim a grant
/// (writing another value) and undo it when no quorum granted; the announcements of grants
/// made before it, which may arrive after it, then prove nothing, and attempts claim the
/// lock from then on. `None` then, or when less than half of that is left to run the
/// critical section before the extension lands: the next attempt claims the grant, a round
/// trip later.
fn grant_validity(
    first_attempt: Instant,
    attempts: u32,
    now: Instant,
    ttl: Duration,
) -> Option<Instant> {
    if attempts != 1 {
        return None;
    }
    let lasts = GRANT.min(ttl);
    let left = validity(lasts, now.saturating_duration_since(first_attempt))?;
    (left >= lasts / 2).then(|| now + left)
}

/// How many announcements make `releases` releases certain. Each release is announced by at
/// least a quorum of masters (by all, mostly): wake once the count can include the one we
/// need; waking early costs one attempt.
fn announcements_for(releases: u64, quorum: usize) -> u64 {
    releases.saturating_sub(1).saturating_mul(quorum as u64) + 1
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

/// A waiting request, the representative of this process's waiters for the lock: its turn,
/// its place in the queue, its watch on releases, its count in the statistics. Dropping it
/// (granted, deadline, cancellation, panic) leaves the queue, hands the turn on and counts the
/// waiter out.
struct Queued {
    place: Place,
    releases: ReleaseWatch,
    backend: Arc<Backend>,
    keys: Arc<LockKeys>,
    /// Whether the acquire script already took us out of every queue.
    left: bool,
    /// When our first queued attempt started, and how many were made: see [`Self::grant_validity`].
    first_attempt: Option<Instant>,
    attempts: u32,
    /// Held by the grants of these masters (bit `i`: master `i`), which took us out of their
    /// queue: the others keep a grant to us that comes after we leave their queue.
    keep_grants: u64,
    /// Dropped after the queue is left (fields drop in order).
    _turn: Turn,
    /// `None` with statistics off.
    _counted: Option<WaitingStats>,
}

impl Queued {
    /// Counts the waiter in (`stats`), waits for its turn in the local line unless it has it
    /// (`None` if the deadline comes first), then watches releases.
    async fn start(
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
        let ticket = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64() * 1000.0);
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
            _turn: turn,
            _counted: counted,
        })
    }

    fn releases_seen(&self) -> Seen {
        self.releases.releases_seen()
    }

    /// A queued attempt starts `now`.
    fn attempted(&mut self, now: Instant) {
        self.first_attempt.get_or_insert(now);
        self.attempts += 1;
    }

    /// Whether announced grants may be trusted: see [`grant_validity`].
    fn trusts_grants(&self) -> bool {
        self.attempts == 1
    }

    /// See [`grant_validity`].
    fn grant_validity(&self, now: Instant, ttl: Duration) -> Option<Instant> {
        grant_validity(self.first_attempt?, self.attempts, now, ttl)
    }

    /// Sleeps until `next` or the deadline, whichever comes first, or until a quorum of
    /// masters granted us the lock; `before` is what was announced when the last attempt
    /// started.
    async fn pause(
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
        let mut partly_granted = false;
        tokio::pin!(sleep);
        loop {
            if self.trusts_grants() {
                let granted = self.releases.grants();
                if granted.count_ones() as usize >= quorum {
                    return Woken::Granted(granted);
                }
                if granted != 0 && !std::mem::replace(&mut partly_granted, true) {
                    // The other masters' announcements are on their way; if they granted
                    // other waiters (queues out of step), the next attempt sorts it out.
                    let settle = Instant::now() + GRANT / 5;
                    if settle < until {
                        sleep.as_mut().reset(settle.into());
                    }
                }
            }
            let seen = self.releases.releases_seen();
            let our_turn = if self.trusts_grants() {
                // The releases that granted others did not make it our turn; one that granted
                // nobody may have (or opened a window for foreign waiters).
                seen.to_nobody > before.to_nobody
            } else {
                seen.releases - before.releases >= enough
            };
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

/// What ends a pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
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

/// A capped, jittered exponential backoff while masters fail.
#[derive(Debug)]
struct Backoff {
    base: Duration,
    cap: Duration,
    failures_in_a_row: u32,
}

impl Backoff {
    fn new(config: &Config) -> Self {
        Self {
            base: config.retry_delay,
            cap: config.max_backoff,
            failures_in_a_row: 0,
        }
    }

    fn reset(&mut self) {
        self.failures_in_a_row = 0;
    }

    fn next(&mut self) -> Duration {
        let factor = 1u32 << self.failures_in_a_row.min(16);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        jittered(self.base.saturating_mul(factor).min(self.cap))
    }
}

/// How many times `Timeout::Skip` retries a round that nobody can have won (a split vote),
/// or that masters which failed or did not answer leave unsure: 4 rounds in all.
const UNDECIDED_RETRIES: u32 = 3;

/// The pause before retrying a round of `Timeout::Skip` that did not show another holder on a
/// quorum, after `attempts` rounds, if retries are left. The contenders of the round all undo
/// their votes; the one that `leads` it (see `Tally::leads`, which they agree on) comes back
/// first, after a tenth of `Config::retry_delay`, and takes the lock; the others after about
/// `Config::retry_delay`, then twice and four times it, jittered, so that they come back one
/// after the other should it fail. A wait needs none: its next attempt queues, and the queue
/// orders the contenders.
fn undecided_retry(
    timeout: Timeout,
    attempts: u32,
    leads: bool,
    config: &Config,
) -> Option<Duration> {
    let retry = attempts.checked_sub(1)?;
    if timeout != Timeout::Skip || retry >= UNDECIDED_RETRIES {
        return None;
    }
    let mean = if leads {
        config.retry_delay / 10
    } else {
        config.retry_delay.saturating_mul(1 << retry)
    };
    Some(jittered(mean))
}

/// Uniform in [mean / 2, mean * 3 / 2): clients that failed together spread apart.
fn jittered(mean: Duration) -> Duration {
    (mean / 2).saturating_add(mean.mul_f64(fastrand::f64()))
}

/// `at + by`, or a day after `at` when that is beyond the clock (a `Config` duration of
/// `Duration::MAX`), rather than a panic.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Backoff, NextAttempt, Outage, announcements_for, fallback_after, grant_validity};
    use crate::{Config, acquire::Standing, keys::GRANT, quorum::drift};

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_its_cap_and_resets() {
        let config = Config {
            retry_delay: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            ..Config::default()
        };
        let mut backoff = Backoff::new(&config);
        for mean in [20, 40, 80, 100, 100] {
            let pause = backoff.next();
            let mean = Duration::from_millis(mean);
            assert!(
                pause >= mean / 2 && pause < mean * 3 / 2,
                "{pause:?} for {mean:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next() < Duration::from_millis(30));
    }

    #[test]
    fn the_fallback_is_the_holders_ttl_capped_by_the_heartbeat() {
        assert_eq!(
            fallback_after(Duration::from_millis(400)),
            Duration::from_millis(401)
        );
        assert_eq!(
            fallback_after(Duration::from_secs(30)),
            Duration::from_secs(1)
        );
        // Free, but another waiter's turn: only the heartbeat.
        assert_eq!(fallback_after(Duration::ZERO), Duration::from_secs(1));
    }

    #[test]
    fn our_turn_comes_after_the_holder_and_the_waiters_ahead() {
        let now = Instant::now();
        let held = Standing {
            expires_in: Duration::from_secs(5),
            ahead: 2,
            held: true,
        };
        assert_eq!(
            NextAttempt::after_refusal(Some(held), now),
            NextAttempt::OnRelease {
                releases: 3,
                fallback: now + Duration::from_secs(1),
                next_in_line: false,
            }
        );
        // Granted to the waiter ahead, which is out of the queue: its release is the one we
        // wait for, or the grant's end if it never extends it.
        let granted = Standing {
            expires_in: Duration::from_millis(200),
            ahead: 1,
            held: false,
        };
        assert_eq!(
            NextAttempt::after_refusal(Some(granted), now),
            NextAttempt::OnRelease {
                releases: 1,
                fallback: now + Duration::from_millis(201),
                next_in_line: true,
            }
        );
    }

    #[test]
    fn a_grant_is_trusted_for_what_its_lower_bound_proves_only() {
        let first = Instant::now();
        let ttl = Duration::from_secs(30);
        // Noticed at once: the grant from the first attempt on, less the drift.
        assert_eq!(
            grant_validity(first, 1, first, ttl),
            Some(first + GRANT - drift(GRANT))
        );
        // Noticed later: never beyond `GRANT` from the first attempt.
        let later = first + GRANT / 4;
        assert_eq!(
            grant_validity(first, 1, later, ttl),
            Some(first + GRANT - drift(GRANT))
        );
        // A TTL shorter than the grant: the extension will set it, so no more than it.
        let short = GRANT / 2;
        assert_eq!(
            grant_validity(first, 1, first, short),
            Some(first + short - drift(short))
        );
        // Too little left for the critical section: claimed by an attempt instead.
        assert_eq!(grant_validity(first, 1, first + GRANT / 2, ttl), None);
        assert_eq!(grant_validity(first, 1, first + GRANT * 2, ttl), None);
        // After a second attempt, announcements prove nothing.
        assert_eq!(grant_validity(first, 2, first, ttl), None);
    }

    #[test]
    fn a_release_counts_once_a_quorum_could_have_announced_it() {
        // One release: its first announcement. With 3 masters (quorum 2), the third release
        // is certain after 2 * 2 + 1 announcements: two per earlier release, one for it.
        assert_eq!(announcements_for(1, 2), 1);
        assert_eq!(announcements_for(3, 2), 5);
        assert_eq!(announcements_for(0, 3), 1);
        assert_eq!(announcements_for(2, 1), 2);
    }

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
