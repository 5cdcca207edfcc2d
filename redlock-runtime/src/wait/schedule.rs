//! When a waiter attempts again: the arithmetic of turns, fallbacks, grants and retries, apart
//! from the state machine that follows it.

use std::time::{Duration, Instant};

use crate::{
    Config, Timeout,
    acquire::Standing,
    backoff::jittered,
    keys::{GRANT, PLACE_TTL},
    quorum::validity,
};

/// When a waiter attempts again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NextAttempt {
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
    /// After a refusal: our turn comes after the releases that the script counted (the
    /// holder's, if the lock is held, and those of the waiters ahead of us). A plain `SET`
    /// learns nothing: the next attempt (the queued one) comes at once anyway.
    pub(super) fn after_refusal(standing: Option<Standing>, now: Instant) -> Self {
        let Standing {
            expires_in,
            releases,
            next_in_line,
            ..
        } = standing.unwrap_or(Standing {
            expires_in: Duration::ZERO,
            releases: 0,
            next_in_line: false,
            holder: 0,
            foreign: false,
        });
        Self::OnRelease {
            releases,
            fallback: now + fallback_after(expires_in),
            next_in_line,
        }
    }
}

/// How long to sleep, at most, when the lock is held and no release is announced: until the
/// holder's TTL ends (a holder that never announces, such as the Python library or a crashed
/// process), and never longer than the heartbeat that keeps our place in the queue.
pub(super) fn fallback_after(expires_in: Duration) -> Duration {
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
pub(super) fn grant_validity(
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
pub(super) fn announcements_for(releases: u64, quorum: usize) -> u64 {
    releases.saturating_sub(1).saturating_mul(quorum as u64) + 1
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
pub(super) fn undecided_retry(
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

/// `at + by`, or a day after `at` when that is beyond the clock (a `Config` duration of
/// `Duration::MAX`), rather than a panic.
pub(super) fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{NextAttempt, announcements_for, fallback_after, grant_validity};
    use crate::{acquire::Standing, keys::GRANT, quorum::drift};

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
    fn a_refusal_waits_for_the_releases_the_script_counted_or_the_fallback() {
        let now = Instant::now();
        let held = Standing {
            expires_in: Duration::from_secs(5),
            releases: 3,
            next_in_line: false,
            holder: 1,
            foreign: false,
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
            releases: 1,
            next_in_line: true,
            holder: 2,
            foreign: false,
        };
        assert_eq!(
            NextAttempt::after_refusal(Some(granted), now),
            NextAttempt::OnRelease {
                releases: 1,
                fallback: now + Duration::from_millis(201),
                next_in_line: true,
            }
        );
        // A plain `SET` learns nothing: the queued attempt follows at once.
        assert_eq!(
            NextAttempt::after_refusal(None, now),
            NextAttempt::OnRelease {
                releases: 0,
                fallback: now + Duration::from_secs(1),
                next_in_line: false,
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
}
