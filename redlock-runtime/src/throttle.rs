//! How often one repeated failure is logged: an outage retried every few milliseconds by
//! every waiter, or a skipped function called in a loop, would otherwise fill the log. Each
//! distinct failure is logged at once, the same one at most every [`EVERY`], with how often
//! it came again meanwhile.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// How often one failure is logged again.
pub(crate) const EVERY: Duration = Duration::from_secs(10);

/// The failures logged lately (a few at a time: the one logged longest ago is forgotten
/// first), each by its key.
#[derive(Debug)]
pub(crate) struct Throttle<K>(Mutex<Vec<Logged<K>>>);

#[derive(Debug)]
struct Logged<K> {
    key: K,
    at: Instant,
    repeats: u64,
}

/// Whether to log a failure now.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Not logged lately: log it.
    First,
    /// Logged `EVERY` ago or more: log it again, with how often it came meanwhile.
    Again {
        /// The times it came since it was last logged.
        repeats: u64,
    },
    /// Logged within `EVERY`: keep it quiet (DEBUG at most).
    Quiet,
}

impl<K: PartialEq> Throttle<K> {
    /// How many distinct failures are remembered.
    const KEPT: usize = 8;

    /// No failure logged yet (usable in a `static`).
    pub(crate) const fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    /// Whether the failure `key`, met now, is logged.
    pub(crate) fn admit(&self, key: K) -> Verdict {
        let mut logged = crate::rt::lock(&self.0);
        let now = Instant::now();
        if let Some(last) = logged.iter_mut().find(|last| last.key == key) {
            if now.duration_since(last.at) < EVERY {
                last.repeats += 1;
                return Verdict::Quiet;
            }
            let repeats = last.repeats;
            (last.at, last.repeats) = (now, 0);
            return Verdict::Again { repeats };
        }
        if logged.len() >= Self::KEPT {
            logged.sort_by_key(|last| last.at);
            logged.remove(0);
        }
        logged.push(Logged {
            key,
            at: now,
            repeats: 0,
        });
        Verdict::First
    }
}

#[cfg(test)]
mod tests {
    use super::{Throttle, Verdict};

    #[test]
    fn a_failure_is_logged_once_then_kept_quiet_and_others_are_logged_apart() {
        let throttle = Throttle::new();
        assert_eq!(throttle.admit("down"), Verdict::First);
        assert_eq!(throttle.admit("down"), Verdict::Quiet);
        assert_eq!(throttle.admit("refused"), Verdict::First);
        for other in ["a", "b", "c", "d", "e", "f", "g"] {
            assert_eq!(throttle.admit(other), Verdict::First);
        }
        // Eight kept: the oldest ("down") was forgotten, so it is logged again.
        assert_eq!(throttle.admit("down"), Verdict::First);
    }
}
