//! A semaphore's request: one of its permits, each a lock of its own (see
//! `LockKeys::permit`), so that no more than N clients hold permits wherever a lock's exclusion
//! holds (a quorum refuses a second holder of each permit). The request takes the first free
//! permit it finds, or waits in the queue of every permit at once, from one moment: whichever
//! permit is released first goes to the waiter that asked first, and the waiter's other waits
//! are dropped, which passes on any grant that reached them meanwhile (see `wait`).

use std::{future::Future, time::Instant};

use futures_util::{StreamExt, stream::FuturesUnordered};

use crate::{LockError, LockGuard, Timeout};

/// The most permits a semaphore may have: each waiter queues for every one of them.
pub(crate) const MAX_PERMITS: usize = 64;

/// Takes one of `permits` with `take(permit, timeout, counted)` (`counted`: whether that
/// request may count the waiter in the waiting statistics). It tries each once without
/// waiting, from a random one so that contenders spread over them; then, unless `timeout` is
/// `Skip`, waits for all of them at once for what is left of `timeout`, the waiter counted
/// once. `permits` must not be empty.
pub(crate) async fn take_any<F, Fut>(
    mut permits: Vec<usize>,
    timeout: Timeout,
    take: F,
) -> Result<LockGuard, LockError>
where
    F: Fn(usize, Timeout, bool) -> Fut,
    Fut: Future<Output = Result<LockGuard, LockError>>,
{
    let started = Instant::now();
    let mut refused = Refused::since(started);
    let start = fastrand::usize(..permits.len());
    permits.rotate_left(start);
    for &permit in &permits {
        match take(permit, Timeout::Skip, true).await {
            Ok(guard) => return Ok(guard),
            // Held or split: another permit may be free.
            Err(error @ (LockError::Timeout { .. } | LockError::SplitVote { .. })) => {
                refused.note(error);
            }
            // The masters fail (for every permit alike), or the request is invalid: a request
            // that does not wait ends here; one that waits rides an outage out in its waits.
            Err(error) if timeout == Timeout::Skip => return Err(error),
            Err(error) => {
                refused.note(error);
                break;
            }
        }
    }
    let timeout = match timeout {
        Timeout::Skip => return Err(refused.error()),
        Timeout::Forever => Timeout::Forever,
        Timeout::After(wait) => match wait.checked_sub(started.elapsed()) {
            Some(left) if !left.is_zero() => Timeout::After(left),
            _ => return Err(refused.error()),
        },
    };
    let mut waits: FuturesUnordered<_> = permits
        .iter()
        .enumerate()
        .map(|(index, &permit)| take(permit, timeout, index == 0))
        .collect();
    // What the waits end with is the answer, not what the first tries met.
    let mut refused = Refused::since(started);
    while let Some(result) = waits.next().await {
        match result {
            Ok(guard) => return Ok(guard),
            Err(error) => refused.note(error),
        }
    }
    Err(refused.error())
}

/// Why no permit was taken so far.
struct Refused {
    started: Instant,
    /// The last "held by another client".
    held: Option<LockError>,
    /// The first other failure: it, not "held", is the answer, since a permit that was not
    /// refused as held may be free (`silent` must not skip the work then).
    other: Option<LockError>,
}

impl Refused {
    fn since(started: Instant) -> Self {
        Self {
            started,
            held: None,
            other: None,
        }
    }

    fn note(&mut self, error: LockError) {
        if matches!(error, LockError::Timeout { .. }) {
            self.held = Some(error);
        } else {
            self.other.get_or_insert(error);
        }
    }

    fn error(self) -> LockError {
        let mut error = self
            .other
            .or(self.held)
            .expect("a semaphore request tries at least one permit");
        if let LockError::Timeout { waited, .. } = &mut error {
            *waited = self.started.elapsed();
        }
        error
    }
}
