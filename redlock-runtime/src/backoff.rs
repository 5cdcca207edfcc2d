//! The pauses between tries while something fails: the attempts of a wait while masters fail,
//! the reconnections of the release subscriber and of the Sentinel failover follower. One
//! capped exponential backoff, jittered so that clients that failed together spread apart.

use std::time::Duration;

/// A capped, jittered exponential backoff.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures_in_a_row: u32,
}

impl Backoff {
    /// Pauses from about `base`, doubling with each failure in a row, up to about `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            failures_in_a_row: 0,
        }
    }

    /// A success: the next failure pauses `base` again.
    pub(crate) fn reset(&mut self) {
        self.failures_in_a_row = 0;
    }

    /// The pause after one more failure.
    pub(crate) fn next(&mut self) -> Duration {
        let factor = 1u32 << self.failures_in_a_row.min(16);
        self.failures_in_a_row = self.failures_in_a_row.saturating_add(1);
        jittered(self.base.saturating_mul(factor).min(self.cap))
    }
}

/// Uniform in [mean / 2, mean * 3 / 2): clients that failed together spread apart.
pub(crate) fn jittered(mean: Duration) -> Duration {
    (mean / 2).saturating_add(mean.mul_f64(fastrand::f64()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Backoff;

    #[test]
    fn the_backoff_doubles_with_jitter_up_to_its_cap_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
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
}
