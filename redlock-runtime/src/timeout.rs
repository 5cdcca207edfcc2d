//! How long a request waits for a held lock.

use std::time::Duration;

use crate::LockError;

/// What a lock request does when another client holds the lock.
///
/// The Python library's numbers convert with checks: `-1` → [`Timeout::Skip`], `0` →
/// [`Timeout::Forever`], `N > 0` (integer or float seconds) → [`Timeout::After`]; anything else
/// (below -1, between -1 and 0, NaN, infinite) is a [`LockError::InvalidTimeout`].
///
/// ```
/// use std::time::Duration;
/// use redlock_runtime::Timeout;
///
/// assert_eq!(Timeout::try_from(-1)?, Timeout::Skip);
/// assert_eq!(Timeout::try_from(0)?, Timeout::Forever);
/// assert_eq!(Timeout::try_from(2.5)?, Timeout::After(Duration::from_millis(2500)));
/// assert!(Timeout::try_from(f64::NAN).is_err());
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timeout {
    /// Wait until the lock is acquired (the Python library's `0`, and the default).
    #[default]
    Forever,
    /// Make one attempt round and give up at once if the lock is held (the Python library's `-1`).
    Skip,
    /// Wait up to this long; the last attempt is made at the deadline, not after it.
    After(Duration),
}

impl Timeout {
    /// Converts the Python library's number of seconds: `-1`, `0` or a positive finite number.
    ///
    /// ```
    /// use redlock_runtime::Timeout;
    ///
    /// assert_eq!(Timeout::from_secs_f64(-1.0)?, Timeout::Skip);
    /// assert!(Timeout::from_secs_f64(-0.5).is_err());
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn from_secs_f64(seconds: f64) -> Result<Self, LockError> {
        if seconds == -1.0 {
            Ok(Self::Skip)
        } else if seconds == 0.0 {
            Ok(Self::Forever)
        } else if seconds > 0.0 {
            Duration::try_from_secs_f64(seconds)
                .map(Self::After)
                .map_err(|_| invalid(seconds))
        } else {
            Err(invalid(seconds))
        }
    }
}

fn invalid(value: impl ToString) -> LockError {
    LockError::InvalidTimeout {
        value: value.to_string(),
    }
}

impl TryFrom<f64> for Timeout {
    type Error = LockError;

    fn try_from(seconds: f64) -> Result<Self, LockError> {
        Self::from_secs_f64(seconds)
    }
}

impl TryFrom<i64> for Timeout {
    type Error = LockError;

    fn try_from(seconds: i64) -> Result<Self, LockError> {
        match seconds {
            -1 => Ok(Self::Skip),
            0 => Ok(Self::Forever),
            // Every positive i64 fits a Duration of whole seconds.
            n if n > 0 => Ok(Self::After(Duration::from_secs(n.unsigned_abs()))),
            n => Err(invalid(n)),
        }
    }
}

impl TryFrom<i32> for Timeout {
    type Error = LockError;

    fn try_from(seconds: i32) -> Result<Self, LockError> {
        Self::try_from(i64::from(seconds))
    }
}

impl From<Duration> for Timeout {
    /// A `Duration` is always a bounded wait, even `Duration::ZERO` (one attempt, like `Skip`,
    /// but with waiting statistics): it never means "forever" as the Python library's `0` does.
    fn from(wait: Duration) -> Self {
        Self::After(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_numbers_outside_the_python_contract() {
        for bad in [
            -2.0,
            -0.5,
            -1.5,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
        ] {
            let err = Timeout::try_from(bad).unwrap_err();
            assert!(
                matches!(err, LockError::InvalidTimeout { .. }),
                "{bad}: {err}"
            );
        }
        assert!(Timeout::try_from(-2_i64).is_err());
        assert!(Timeout::try_from(i32::MIN).is_err());
    }

    #[test]
    fn converts_the_python_numbers() {
        assert_eq!(Timeout::try_from(-1_i32).unwrap(), Timeout::Skip);
        assert_eq!(Timeout::try_from(0.0).unwrap(), Timeout::Forever);
        assert_eq!(
            Timeout::try_from(5_i64).unwrap(),
            Timeout::After(Duration::from_secs(5))
        );
        assert_eq!(
            Timeout::try_from(0.25).unwrap(),
            Timeout::After(Duration::from_millis(250))
        );
    }
}
