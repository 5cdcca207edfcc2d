//! The one error type of the crate.

use std::{convert::Infallible, fmt, sync::Arc, time::Duration};

/// Why one master failed during an operation; listed by [`LockError::Unavailable`]. Its
/// [`source`](std::error::Error::source) is the client's or the server's own error, when
/// there was one (a `redis::RedisError`).
///
/// ```
/// use redlock_runtime::MasterFailure;
///
/// let failure = MasterFailure::new("redis://:***@db1:6379", "timed out", false);
/// assert_eq!(failure.to_string(), "redis://:***@db1:6379: timed out");
/// assert!(std::error::Error::source(&failure).is_none());
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct MasterFailure {
    /// The master's URL, with any password replaced by `***`.
    pub master: String,
    /// What went wrong, as reported by the client or the server.
    pub error: String,
    /// Whether waiting cannot fix it: a wrong password or user, an ACL that forbids the lock's
    /// commands, a sentinel service or database that does not exist, an untrusted TLS
    /// certificate. A request whose quorum fails this way gives up at once, whatever its
    /// timeout.
    pub misconfigured: bool,
    /// The error underneath (see [`MasterFailure::source`](std::error::Error::source)).
    pub(crate) cause: Option<Arc<redis::RedisError>>,
}

impl MasterFailure {
    /// A failure of `master` (its URL, redacted) described by `error`, without an error
    /// underneath.
    ///
    /// ```
    /// let failure = redlock_runtime::MasterFailure::new("redis://db1:6379", "timed out", false);
    /// assert!(!failure.misconfigured);
    /// ```
    pub fn new(master: impl Into<String>, error: impl Into<String>, misconfigured: bool) -> Self {
        Self {
            master: master.into(),
            error: error.into(),
            misconfigured,
            cause: None,
        }
    }
}

impl fmt::Display for MasterFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.master, self.error)
    }
}

impl fmt::Debug for MasterFailure {
    /// Without the error underneath, whose text we did not scrub of secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterFailure")
            .field("master", &self.master)
            .field("error", &self.error)
            .field("misconfigured", &self.misconfigured)
            .finish_non_exhaustive()
    }
}

impl PartialEq for MasterFailure {
    /// Compares what is shown: the master, the description and `misconfigured`.
    fn eq(&self, other: &Self) -> bool {
        (&self.master, &self.error, self.misconfigured)
            == (&other.master, &other.error, other.misconfigured)
    }
}

impl Eq for MasterFailure {}

impl std::error::Error for MasterFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// The longest `auto_release_time`: 2^53 ms, the milliseconds that Redis's Lua scripts (which
/// count in doubles) and its expiry clock hold exactly.
pub(crate) const MAX_AUTO_RELEASE_TIME: Duration = Duration::from_millis(1 << 53);

/// How one master answered the last attempt of a request that did not get the lock; listed
/// by [`LockError::Timeout`] and [`LockError::SplitVote`].
///
/// ```
/// use redlock_runtime::{MasterVote, Vote};
///
/// let vote = MasterVote { master: "redis://db1:6379".into(), vote: Vote::Held };
/// assert_eq!(vote.to_string(), "redis://db1:6379: refused (another client's value)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterVote {
    /// The master's URL, with any password replaced by `***`.
    pub master: String,
    /// Its answer.
    pub vote: Vote,
}

/// One master's answer to an attempt; see [`MasterVote`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Vote {
    /// It took our value (undone since: too few others did).
    Ours,
    /// It refused: another client's value is set there (for a waiting request: or other
    /// waiters go first).
    Held,
    /// It failed, for this reason.
    Failed(String),
    /// It had not answered when the outcome became certain.
    Unheard,
}

impl fmt::Display for MasterVote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.vote {
            Vote::Ours => write!(f, "{}: ours (undone)", self.master),
            Vote::Held => write!(f, "{}: refused (another client's value)", self.master),
            Vote::Failed(error) => write!(f, "{}: failed: {error}", self.master),
            Vote::Unheard => write!(f, "{}: no answer yet", self.master),
        }
    }
}

/// Everything that can go wrong when taking, holding or releasing a lock.
///
/// Every message names the lock, and, for backend failures, each failing master
/// (passwords redacted).
///
/// ```
/// use redlock_runtime::{LockError, Timeout};
///
/// let err = Timeout::try_from(-2).unwrap_err();
/// assert!(matches!(err, LockError::InvalidTimeout { .. }));
/// assert!(err.to_string().contains("-1, 0 or a positive number of seconds"));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another client holds the lock (or may: its value stands on a quorum of masters, or
    /// could with the masters that did not answer): after the attempts of `Timeout::Skip`, or
    /// when the wait ended. This, and only this, is what `silent` skips.
    #[error(
        "lock `{name}` is held by another client{} (gave up after {waited:?})",
        held_on(votes)
    )]
    Timeout {
        /// The lock name.
        name: String,
        /// How long this request waited before giving up.
        waited: Duration,
        /// How each master answered the last attempt; empty when the request gave up before
        /// attempting (waiting behind tasks of this process that want the same lock).
        votes: Vec<MasterVote>,
    },
    /// No client holds the lock, yet no attempt reached a quorum: contenders that tried at
    /// the same moment split the masters' votes, again after every retry (`Timeout::Skip`
    /// retries such a round 3 times, after jittered pauses of about `Config::retry_delay`,
    /// twice it, four times it). Not contention: `silent` does not skip it.
    #[error(
        "lock `{name}`: no quorum either way after {attempts} attempts: contenders split the \
         masters' votes, so no client's value stands on a quorum and nobody holds the lock ({})",
        list(votes)
    )]
    SplitVote {
        /// The lock name.
        name: String,
        /// How many attempt rounds were made.
        attempts: u32,
        /// How each master answered the last attempt.
        votes: Vec<MasterVote>,
    },
    /// Too many masters failed (down, unreachable, timing out, refusing writes for now, in
    /// their restart grace) for a quorum, so the lock could be neither taken nor refused.
    #[error(
        "lock `{name}`: no quorum of {quorum} of {masters} Redis masters can answer: {}",
        list(failures)
    )]
    Unavailable {
        /// The lock name.
        name: String,
        /// How many masters must agree.
        quorum: usize,
        /// How many masters are configured.
        masters: usize,
        /// Each failing master with its error.
        failures: Vec<MasterFailure>,
    },
    /// The lock is no longer ours on a quorum of masters (it expired, or was deleted or replaced).
    #[error("lock `{name}` was lost: it expired or another client replaced it")]
    Lost {
        /// The lock name.
        name: String,
    },
    /// This task (or, with the blocking API, this thread) already holds the lock, and asked
    /// for it again with `Timeout::Forever`: it would wait for itself forever. (With `Skip` or
    /// a deadline the answer is `Timeout`.) Futures joined inside one task (`join!`,
    /// `select!`) count as that one task.
    #[error(
        "lock `{name}` is already held by this task or thread: acquiring it again would wait \
         for itself forever; use the guard you hold, or release it first"
    )]
    Reentered {
        /// The lock name.
        name: String,
    },
    /// The lock name is not usable.
    #[error("invalid lock name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A timeout outside -1, 0 or a positive finite number of seconds.
    #[error(
        "invalid timeout {value}: `timeout` must be -1, 0 or a positive number of seconds \
         (-1 = one attempt, skip if held; 0 = wait forever; N = wait up to N seconds)"
    )]
    InvalidTimeout {
        /// The value as given.
        value: String,
    },
    /// An `auto_release_time` (TTL) too short to leave any validity after the clock-drift
    /// allowance, or longer than Redis counts (2^53 ms, about 285,000 years).
    #[error(
        "invalid auto_release_time {value:?} for lock `{name}`: it must be at least 3 ms, \
         more than the clock-drift allowance (1% of the TTL + 2 ms), and at most 2^53 ms \
         (Redis's scripts count milliseconds in doubles); the default is 10 s"
    )]
    InvalidAutoReleaseTime {
        /// The lock name.
        name: String,
        /// The value as given.
        value: Duration,
    },
    /// A semaphore with no permits, more than 64, or asked for re-entrantly.
    #[error("invalid semaphore `{name}` of {permits} permits: {reason}")]
    InvalidPermits {
        /// The semaphore name.
        name: String,
        /// The permits as given.
        permits: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A master URL that cannot be used.
    #[error("invalid Redis URL `{url}`: {reason}")]
    InvalidUrl {
        /// The URL with any password replaced by `***`.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting read from the environment (`Config::from_env`) that does not read.
    #[error("invalid {variable}={value:?}: expected {expected}")]
    InvalidEnvironment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it may hold.
        expected: &'static str,
    },
    /// A [`Config`](crate::Config) setting that cannot work, such as a zero `master_timeout`
    /// (every call would time out before it is sent).
    #[error("invalid Config::{setting} {value}: {reason}")]
    InvalidSetting {
        /// The setting's field name.
        setting: &'static str,
        /// The value as given.
        value: String,
        /// What it must be.
        reason: &'static str,
    },
    /// No master URL was given.
    #[error("no Redis master given: pass at least one URL (e.g. \"redis://127.0.0.1:6379\")")]
    NoMasters,
    /// The blocking API was called where blocking would stall the async runtime that must run
    /// the lock holder: on a tokio current-thread runtime.
    #[error(
        "the blocking API of configurable-redlock was called on a tokio current-thread runtime, \
         where blocking could deadlock: use the async API (`configurable_redlock::Redlock`) there, \
         or a multi-thread runtime"
    )]
    BlockingInAsyncContext,
}

impl From<Infallible> for LockError {
    fn from(never: Infallible) -> Self {
        match never {}
    }
}

fn list<T: fmt::Display>(items: &[T]) -> String {
    let items: Vec<String> = items.iter().map(ToString::to_string).collect();
    items.join("; ")
}

/// ": N of M masters refused", from the votes of the last attempt, if there was one.
fn held_on(votes: &[MasterVote]) -> String {
    if votes.is_empty() {
        return String::new();
    }
    let held = votes.iter().filter(|vote| vote.vote == Vote::Held).count();
    format!(": {held} of {} masters refused", votes.len())
}

impl From<LockError> for std::io::Error {
    /// Lets functions returning `std::io::Result` use `?` on lock errors (and `#[redlock]`).
    fn from(error: LockError) -> Self {
        let kind = match error {
            LockError::Timeout { .. } => std::io::ErrorKind::TimedOut,
            LockError::Unavailable { .. } => std::io::ErrorKind::ConnectionRefused,
            LockError::SplitVote { .. } => std::io::ErrorKind::ResourceBusy,
            LockError::Lost { .. } => std::io::ErrorKind::Other,
            LockError::Reentered { .. } => std::io::ErrorKind::Deadlock,
            _ => std::io::ErrorKind::InvalidInput,
        };
        std::io::Error::new(kind, error)
    }
}
