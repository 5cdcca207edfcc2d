//! Where the quorum is decided: one request fanned out to every master in parallel, a decision
//! as soon as the outcome is certain, and the stragglers finished in the background.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::Poll,
    time::{Duration, Instant},
};

use futures_util::{StreamExt, stream::FuturesUnordered};

use crate::{
    MasterFailure,
    master::{CallError, Master},
};

type Reply<T> = (usize, Result<T, CallError>);
type Pending<T> = FuturesUnordered<Pin<Box<dyn Future<Output = Reply<T>> + Send>>>;

/// The clock-drift allowance of the Redlock spec: 1% of the TTL plus 2 ms.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How many of `masters` must agree: a strict majority.
pub(crate) fn quorum_of(masters: usize) -> usize {
    masters / 2 + 1
}

/// How long a lock granted `elapsed` after the attempt started stays ours: the TTL less the
/// time spent and the drift; `None` if nothing is left.
pub(crate) fn validity(ttl: Duration, elapsed: Duration) -> Option<Duration> {
    ttl.checked_sub(elapsed + drift(ttl))
        .filter(|validity| !validity.is_zero())
}

/// The replies of one round: yes (granted, or ours), no (held by another, or not ours), and
/// failures; and whether the outcome is certain.
#[derive(Debug)]
pub(crate) struct Tally {
    masters: usize,
    quorum: usize,
    yes: usize,
    no: usize,
    /// The refusals that named the value they found, counted per value: another client holds
    /// the lock only where one value stands on a quorum.
    holders: Vec<(String, usize)>,
    /// The refusals that named none (a queued attempt, an extension): counted as one
    /// holder's, the cautious reading.
    unnamed: usize,
    failures: Vec<MasterFailure>,
    /// The masters where a lock of ours is ours no more (see [`Tally::not_ours`]).
    not_ours: Vec<String>,
}

/// Who a refusal found holding the lock.
#[derive(Debug)]
pub(crate) enum Holder {
    /// Not said: counted as the same holder as every other unnamed refusal.
    Unnamed,
    /// The lock's value on that master.
    Value(String),
    /// Nobody any more (it expired between the refusal and the look).
    Nobody,
}

/// Why a round that did not grant the lock refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// One value stands on a quorum: another client holds the lock. Or every master refused
    /// us, split among other values: the contenders that took them decide among themselves
    /// (each retries a split round, and reports one that stays split), so for us the lock is
    /// taken, as for a skip under plain contention it is.
    Held,
    /// One value (perhaps one unseen), with the masters that failed or were not heard, could
    /// stand on a quorum: another client may hold the lock.
    MaybeHeld,
    /// No value can stand on a quorum: contenders split the votes, and nobody holds the lock.
    Split,
}

impl Tally {
    pub(crate) fn new(masters: usize) -> Self {
        Self {
            masters,
            quorum: quorum_of(masters),
            yes: 0,
            no: 0,
            holders: Vec::new(),
            unnamed: 0,
            failures: Vec::new(),
            not_ours: Vec::new(),
        }
    }

    /// A master answered that the lock of ours (extended or released) is not ours there:
    /// a refusal, named in the failures when too few answered for a quorum either way.
    pub(crate) fn not_ours(&mut self, master: &str) {
        self.no();
        self.not_ours.push(master.to_owned());
    }

    pub(crate) fn yes(&mut self) {
        self.yes += 1;
    }

    /// A refusal that names no holder.
    pub(crate) fn no(&mut self) {
        self.refused_by(Holder::Unnamed);
    }

    pub(crate) fn refused_by(&mut self, holder: Holder) {
        self.no += 1;
        match holder {
            Holder::Unnamed => self.unnamed += 1,
            Holder::Value(value) => match self.holders.iter_mut().find(|(v, _)| *v == value) {
                Some((_, count)) => *count += 1,
                None => self.holders.push((value, 1)),
            },
            Holder::Nobody => {}
        }
    }

    pub(crate) fn failed(&mut self, failure: MasterFailure) {
        self.failures.push(failure);
    }

    pub(crate) fn yes_count(&self) -> usize {
        self.yes
    }

    /// A quorum said yes.
    pub(crate) fn granted(&self) -> bool {
        self.yes >= self.quorum
    }

    /// One holder's refusals make a quorum of yes impossible: the answer is no whatever the
    /// others say.
    pub(crate) fn refused(&self) -> bool {
        self.largest_refusal() > self.masters - self.quorum
    }

    /// The most refusals that one holder may account for: the unnamed ones with the largest
    /// named group.
    fn largest_refusal(&self) -> usize {
        let named = self.holders.iter().map(|(_, count)| *count).max();
        self.unnamed + named.unwrap_or(0)
    }

    /// Whether `ours`, the value this round tried to set, leads the round it lost: no value
    /// stands on more masters, and those that stand on as many are greater. Every contender of
    /// a split round that heard the same masters agrees on the leader, which retries first.
    pub(crate) fn leads(&self, ours: &str) -> bool {
        self.unnamed == 0
            && self.holders.iter().all(|(value, count)| {
                *count < self.yes || (*count == self.yes && ours < value.as_str())
            })
    }

    /// Why a round that did not grant the lock refused it (see [`Refusal`]).
    pub(crate) fn refusal(&self) -> Refusal {
        let largest = self.largest_refusal();
        // Failed or not heard: they may hold any value.
        let unknown = self.masters - self.yes - self.no;
        if largest >= self.quorum || self.no == self.masters {
            Refusal::Held
        } else if largest + unknown >= self.quorum {
            Refusal::MaybeHeld
        } else {
            Refusal::Split
        }
    }

    /// Failures alone leave too few masters for a quorum of yes.
    pub(crate) fn impossible_by_failures(&self) -> bool {
        self.failures.len() > self.masters - self.quorum
    }

    /// Decided once the outcome and its kind are certain: a quorum said yes, a quorum said
    /// no, or failures alone leave too few masters. When refusals and failures together make a
    /// quorum impossible, the rest are heard too: whether the lock is held elsewhere or the
    /// masters are down is then told by all the answers, not by the first ones.
    pub(crate) fn verdict(&self) -> Verdict {
        let all_answered = self.yes + self.no + self.failures.len() == self.masters;
        if self.granted() || self.refused() || self.impossible_by_failures() || all_answered {
            Verdict::Decided
        } else {
            Verdict::Undecided
        }
    }

    /// When a quorum becomes possible again, if the masters inside their restart grace
    /// (voting again at `grace_ends`, one instant per such failure) alone make it impossible
    /// now; `None` otherwise. The other failures (down, paused, refusing for now) may heal at
    /// any moment, so they are an outage to retry, not a known time to wait for.
    pub(crate) fn votes_again_at(&self, mut grace_ends: Vec<Instant>) -> Option<Instant> {
        let spare = self.masters - self.quorum;
        // Enough of them must come back for the graces to leave a quorum possible.
        let needed = grace_ends.len().checked_sub(spare)?;
        grace_ends.sort_unstable();
        grace_ends.get(needed.checked_sub(1)?).copied()
    }

    /// The failures, then the masters where the lock was not ours, so that an `Unavailable`
    /// error names every master that kept the round from a quorum.
    pub(crate) fn into_failures(mut self) -> Vec<MasterFailure> {
        for master in self.not_ours {
            self.failures.push(MasterFailure::new(
                master,
                "answered that the lock is not ours there (it expired or another client took it)",
                false,
            ));
        }
        self.failures
    }
}

/// What a tally says after each reply.
pub(crate) enum Verdict {
    /// More replies are needed.
    Undecided,
    /// The outcome is certain; replies still in flight do not matter to the caller.
    Decided,
}

/// Sends `request` to every master at once and feeds each reply to `tally` until it decides.
///
/// Every request is polled once, in master order, before any reply is tallied: that queues its
/// command on the master's connection (see `Master::call`), so a caller that acts on the
/// decision (a release after a grant) can never send its next command ahead of this one. The
/// requests run outside tokio's cooperative budget, which could otherwise postpone that first
/// poll.
///
/// Returns the requests still in flight at the decision: the caller hands them to
/// [`Stragglers::finish_in_background`] rather than dropping them, which could cancel a command
/// before it is written and leave its fate unknown.
pub(crate) async fn fan_out<T, R, Fut>(
    masters: &[Arc<Master>],
    request: R,
    mut tally: impl FnMut(usize, Result<T, CallError>) -> Verdict,
) -> Stragglers<T>
where
    R: Fn(Arc<Master>) -> Fut,
    Fut: Future<Output = Result<T, CallError>> + Send + 'static,
{
    // One master: nothing runs in parallel, so nothing is boxed or queued.
    if let [master] = masters {
        tally(
            0,
            tokio::task::unconstrained(request(Arc::clone(master))).await,
        );
        return Stragglers(None);
    }
    let mut pending: Pending<T> = FuturesUnordered::new();
    let mut replied = Vec::new();
    for (index, master) in masters.iter().enumerate() {
        let reply = tokio::task::unconstrained(request(Arc::clone(master)));
        let mut reply: Pin<Box<dyn Future<Output = Reply<T>> + Send>> =
            Box::pin(async move { (index, reply.await) });
        match std::future::poll_fn(|cx| Poll::Ready(reply.as_mut().poll(cx))).await {
            Poll::Ready(reply) => replied.push(reply),
            Poll::Pending => pending.push(reply),
        }
    }
    // Every reply already in is tallied, even past a decision: the caller must see each one
    // (a late grant is undone).
    let mut decided = false;
    for (index, reply) in replied {
        decided |= matches!(tally(index, reply), Verdict::Decided);
    }
    if decided {
        return Stragglers(Some(pending));
    }
    while let Some((index, reply)) = pending.next().await {
        if let Verdict::Decided = tally(index, reply) {
            break;
        }
    }
    Stragglers(Some(pending))
}

/// Requests still in flight after a decision.
pub(crate) struct Stragglers<T>(Option<Pending<T>>);

impl<T: Send + 'static> Stragglers<T> {
    /// Lets the late requests finish in a background task that hands each reply to `on_reply`.
    pub(crate) fn finish_in_background(
        self,
        mut on_reply: impl FnMut(usize, Result<T, CallError>) + Send + 'static,
    ) {
        let Self(Some(mut pending)) = self else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        // On the caller's runtime: the requests' timers belong to it. Should it shut down first,
        // the late replies go unheard and a late `SET` expires with its TTL.
        let work = crate::rt::Work::start();
        tokio::spawn(async move {
            let _work = work;
            while let Some((index, reply)) = pending.next().await {
                on_reply(index, reply);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Holder, Refusal, Tally, Verdict, drift, quorum_of, validity};
    use crate::MasterFailure;

    fn failure() -> MasterFailure {
        MasterFailure::new("redis://m", "down", false)
    }

    #[test]
    fn a_quorum_is_a_strict_majority() {
        assert_eq!([1, 2, 3, 4, 5].map(quorum_of), [1, 2, 2, 3, 3]);
    }

    #[test]
    fn the_tally_decides_as_soon_as_the_outcome_is_certain() {
        let mut tally = Tally::new(5);
        tally.yes();
        tally.yes();
        assert!(matches!(tally.verdict(), Verdict::Undecided));
        tally.yes();
        assert!(tally.granted() && matches!(tally.verdict(), Verdict::Decided));

        let mut tally = Tally::new(5);
        tally.no();
        tally.no();
        assert!(matches!(tally.verdict(), Verdict::Undecided) && !tally.refused());
        tally.failed(failure());
        // Two no and one failure make a quorum of three impossible, but say not yet whether
        // the lock is held or the masters are down: the others are heard.
        assert!(matches!(tally.verdict(), Verdict::Undecided));
        assert!(!tally.refused() && !tally.impossible_by_failures());
        tally.no();
        assert!(tally.refused() && matches!(tally.verdict(), Verdict::Decided));
    }

    fn held_by(tally: &mut Tally, value: &str) {
        tally.refused_by(Holder::Value(value.into()));
    }

    #[test]
    fn a_lock_is_held_elsewhere_only_where_one_value_can_stand_on_a_quorum() {
        // Three contenders took one master each: nobody holds it, and all is heard.
        let mut tally = Tally::new(3);
        tally.yes();
        held_by(&mut tally, "b");
        assert!(matches!(tally.verdict(), Verdict::Undecided) && !tally.refused());
        held_by(&mut tally, "c");
        assert!(matches!(tally.verdict(), Verdict::Decided));
        assert_eq!(tally.refusal(), Refusal::Split);

        // One value on a quorum: held, decided at once.
        let mut tally = Tally::new(3);
        held_by(&mut tally, "b");
        held_by(&mut tally, "b");
        assert!(tally.refused() && matches!(tally.verdict(), Verdict::Decided));
        assert_eq!(tally.refusal(), Refusal::Held);

        // One value and a master that failed could make a quorum: maybe held.
        let mut tally = Tally::new(3);
        tally.yes();
        held_by(&mut tally, "b");
        tally.failed(failure());
        assert_eq!(tally.refusal(), Refusal::MaybeHeld);

        // Every master refused us, split among others: taken, by contenders who decide.
        let mut tally = Tally::new(3);
        for other in ["a", "b", "c"] {
            held_by(&mut tally, other);
        }
        assert_eq!(tally.refusal(), Refusal::Held);

        // A key that expired before it was read is nobody's.
        let mut tally = Tally::new(3);
        tally.yes();
        tally.refused_by(Holder::Nobody);
        held_by(&mut tally, "b");
        assert_eq!(tally.refusal(), Refusal::Split);

        // The value on the most masters leads a split round, the least value among equals.
        let mut tally = Tally::new(5);
        tally.yes();
        tally.yes();
        held_by(&mut tally, "m");
        held_by(&mut tally, "m");
        held_by(&mut tally, "c");
        assert!(tally.leads("b") && !tally.leads("z"));
        tally.no();
        assert!(!tally.leads("b"), "an unnamed refusal may be anyone's");

        // Unnamed refusals are read as one holder's.
        let mut tally = Tally::new(3);
        tally.yes();
        tally.no();
        tally.no();
        assert_eq!(tally.refusal(), Refusal::Held);
    }

    #[test]
    fn failures_alone_can_make_a_quorum_impossible() {
        let mut tally = Tally::new(3);
        tally.failed(failure());
        assert!(!tally.impossible_by_failures());
        tally.failed(failure());
        assert!(tally.impossible_by_failures());
        assert_eq!(tally.into_failures().len(), 2);
    }

    #[test]
    fn a_quorum_blocked_by_restart_graces_votes_again_when_enough_graces_end() {
        let now = std::time::Instant::now();
        let at = |seconds| now + Duration::from_secs(seconds);
        // 5 masters, quorum 3: 3 in grace, so one of them must come back: the earliest.
        let mut tally = Tally::new(5);
        (0..3).for_each(|_| tally.failed(failure()));
        assert_eq!(tally.votes_again_at(vec![at(9), at(4), at(7)]), Some(at(4)));
        // Failures that are no grace may heal any time: still the earliest.
        tally.failed(failure());
        assert_eq!(tally.votes_again_at(vec![at(9), at(4), at(7)]), Some(at(4)));
        tally.failed(failure());
        assert_eq!(tally.votes_again_at(vec![at(9), at(4), at(7)]), Some(at(4)));
        // Two graces of five masters leave a quorum possible: the rest is an outage.
        assert_eq!(tally.votes_again_at(vec![at(9), at(4)]), None);
        // 3 masters, one in its grace and one paused: an outage that ends when the paused
        // one comes back, not at the end of the grace.
        let mut tally = Tally::new(3);
        (0..2).for_each(|_| tally.failed(failure()));
        assert_eq!(tally.votes_again_at(vec![at(9)]), None);
    }

    #[test]
    fn validity_is_the_ttl_less_elapsed_time_and_drift() {
        let ttl = Duration::from_secs(10);
        assert_eq!(drift(ttl), Duration::from_millis(102));
        assert_eq!(
            validity(ttl, Duration::from_millis(900)),
            Some(Duration::from_millis(8_998))
        );
        assert_eq!(validity(ttl, Duration::from_millis(9_898)), None);
        assert_eq!(
            validity(Duration::from_millis(3), Duration::ZERO),
            Some(Duration::from_micros(970))
        );
        assert_eq!(validity(Duration::from_millis(2), Duration::ZERO), None);
    }
}
