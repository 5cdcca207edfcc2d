//! One Redis master: a deadpool-managed connection kept checked out, and per-call time bounds.
//!
//! `deadpool_redis::Pool::get()` sends `UNWATCH` + `PING` on every checkout, which would double
//! the cost of a lock. So each master takes one multiplexed connection out of its pool and clones
//! its handle per call (a channel send, no I/O). The pool creates connections; a connection we
//! give up (broken, or to a master that a failover demoted) is dropped, never handed back, since
//! a recycling `PING` would still pass on a demoted master.
//!
//! Keeping one connection per master also orders commands: a release always follows the `SET`
//! it undoes on the same socket, so a slow master cannot apply a straggling `SET` after its release.
//!
//! A master is one server, one Redis Cluster, or the master a set of sentinels points to (see
//! [`Target`]); past this module they look the same.

mod error;
mod pool;
mod sentinel;

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use redis::{RedisError, aio::PubSub};
use tokio::sync::watch;

pub(crate) use self::{
    error::{CallError, ConnectFailure},
    pool::Handle,
};
use self::{
    error::{read_only, refusal_hint},
    pool::{Connected, Pool, Subscriptions},
};
use crate::{
    LockError, MasterFailure,
    restart::Restart,
    rt,
    target::{Secret, Target, redact_url},
    throttle::{Throttle, Verdict},
};

/// The state of a master's connection, shared by all callers.
enum Link {
    /// No connection yet, or the last one broke.
    Down,
    /// One task is connecting; callers wait for it.
    Connecting,
    /// A live connection, taken out of the pool.
    Up(Arc<Connected>),
    /// The last connection attempt failed.
    Failed(ConnectFailure),
}

/// Which server each master of one client reached, by `run_id`: a server that two URLs name
/// (`127.0.0.1` and `localhost`, an IP and a name) must cast one vote, not two.
#[derive(Debug, Default)]
pub(crate) struct ServerIds(std::sync::Mutex<Vec<(String, Vec<String>)>>);

impl ServerIds {
    /// Records that the master `label` reached the servers `run_ids`; the label of another
    /// master that reached one of them, if any (then the record is not kept).
    fn claim(&self, label: &str, run_ids: Vec<String>) -> Option<String> {
        let mut claims = rt::lock(&self.0);
        // A reconnection (after a restart or a failover) replaces what the master reached.
        claims.retain(|(claimant, _)| claimant != label);
        let taken = claims
            .iter()
            .find(|(_, ids)| ids.iter().any(|id| run_ids.contains(id)))
            .map(|(claimant, _)| claimant.clone());
        if taken.is_none() {
            claims.push((label.to_owned(), run_ids));
        }
        taken
    }
}

/// How long a master that left a call unanswered within the per-master timeout gets only a
/// tenth of it to answer an attempt (see [`Master::call_voting`]), unless it answers a call
/// meanwhile: a paused master then costs an attempt round its whole timeout once per this
/// long, not once per round.
const SUSPECT_FOR: Duration = Duration::from_secs(5);

/// One independent Redis master of the quorum.
pub(crate) struct Master {
    /// The URL with its password redacted: the only form ever shown.
    pub(crate) label: String,
    /// Kept out of the errors we report (see [`Master::failure`]).
    secret: Secret,
    /// The servers that the client's masters reached, shared by them.
    server_ids: Arc<ServerIds>,
    /// Whether a connection was ever made: a sentinel that then names no master for the
    /// service is in a failover (the master died, no replica promoted yet), not misconfigured.
    was_up: AtomicBool,
    /// The failures warned about lately, by what happened and why.
    warned: Throttle<(&'static str, String)>,
    /// The code of the scripts, loaded on each new connection.
    scripts: Arc<[&'static str]>,
    /// The last restart whose grace refused a new lock, warned about once.
    grace_warned: std::sync::Mutex<Option<Restart>>,
    /// Whether this master is a Redis Cluster, where every script must keep to one slot.
    pub(crate) is_cluster: bool,
    pool: Pool,
    subscriptions: Subscriptions,
    link: watch::Sender<Link>,
    /// Callers hand their commands to the connection in the order they called (a fair lock,
    /// held until the command is queued): a release issued after its `SET` cannot overtake
    /// it, even when both wait for the connection to come up.
    order: tokio::sync::Mutex<()>,
    /// Bound on one call: getting the connection plus one round trip.
    call_timeout: Duration,
    /// Since when this master has not answered a call within `call_timeout` (none: it answers);
    /// see [`SUSPECT_FOR`].
    unanswered_since: std::sync::Mutex<Option<Instant>>,
    /// Bound on establishing a connection; it goes on in the background past `call_timeout`.
    connect_timeout: Duration,
}

impl Master {
    pub(crate) fn new(
        url: &str,
        call_timeout: Duration,
        connect_timeout: Duration,
        server_ids: Arc<ServerIds>,
        scripts: Arc<[&'static str]>,
    ) -> Result<Self, LockError> {
        let label = redact_url(url);
        let secret = Secret::of(url);
        // A third party's reason may quote part of the URL.
        let invalid = |reason: String| LockError::InvalidUrl {
            url: label.clone(),
            reason: secret.scrub(&reason),
        };
        let target = Target::parse(url).map_err(invalid)?;
        let is_cluster = matches!(target, Target::Cluster(_));
        let (pool, subscriptions) = Pool::build(target, connect_timeout).map_err(invalid)?;
        Ok(Self {
            label,
            secret,
            server_ids,
            was_up: AtomicBool::new(false),
            warned: Throttle::new(),
            grace_warned: std::sync::Mutex::new(None),
            scripts,
            is_cluster,
            pool,
            subscriptions,
            link: watch::Sender::new(Link::Down),
            order: tokio::sync::Mutex::new(()),
            call_timeout,
            unanswered_since: std::sync::Mutex::new(None),
            connect_timeout,
        })
    }

    /// A new pub/sub connection for the release subscriber.
    pub(crate) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        self.subscriptions.pubsub().await
    }

    /// A client for the key tracker (see `wake.rs`), if this kind of master has one.
    pub(crate) async fn tracking_client(&self) -> Option<Result<redis::Client, RedisError>> {
        self.subscriptions.tracking().await
    }

    /// For a master found through Sentinel: starts, once, a task that drops the connection as
    /// soon as the sentinels announce a failover (`+switch-master`). The old master may accept
    /// writes until the sentinels reconfigure it, seconds later; locks taken or renewed there
    /// meanwhile would be invisible on the new master.
    fn follow_failovers(self: &Arc<Self>) {
        let Subscriptions::Sentinel { following, .. } = &self.subscriptions else {
            return;
        };
        if following.swap(true, Ordering::Relaxed) {
            return;
        }
        rt::spawn(sentinel::follow_failovers(Arc::downgrade(self)));
    }

    /// Warns that `what` happened on this master for `reason` (see [`Throttle`]; DEBUG in
    /// between). An outage or a paused master meets every attempt of every waiter.
    pub(crate) fn warn(&self, what: &'static str, reason: &str) {
        match self.warned.admit((what, reason.to_owned())) {
            Verdict::First => tracing::warn!(master = %self.label, %reason, "redlock: {what}"),
            Verdict::Again { repeats } => {
                tracing::warn!(master = %self.label, %reason, repeats_since_last_warning = repeats, "redlock: {what}");
            }
            Verdict::Quiet => tracing::debug!(master = %self.label, %reason, "redlock: {what}"),
        }
    }

    /// Warns, once per restart of this master, that it refused its first new lock: the moment
    /// a newcomer's lock waits on a fresh server, with the ways out.
    fn warn_grace(&self, restart: &Restart, left: Duration) {
        let mut warned = rt::lock(&self.grace_warned);
        if warned.as_ref().is_some_and(|last| last.same_start(restart)) {
            return;
        }
        *warned = Some(restart.clone());
        tracing::warn!(master = %self.label, "redlock: Redis master {}. To let it vote at once, run it with `appendonly yes` and `appendfsync always`; on a development server, or if no lock must survive its restarts, set REDLOCK_RESTART_GRACE=off (Config::restart_grace = RestartGrace::Off)", restart.sits_out(left));
    }

    /// Whether this master accepts writes now, and what its connection learned of its last
    /// restart (`None`: it keeps every write). The probe is a `PEXPIRE` of a key that does not
    /// exist: a write command (refused by a replica, or with too few replicas for
    /// `min-replicas-to-write`) that changes nothing.
    pub(crate) async fn probe(self: &Arc<Self>) -> Result<Option<Restart>, CallError> {
        self.call(|mut connection| async move {
            redis::cmd("PEXPIRE")
                .arg("{redlock}:readiness-probe")
                .arg(1)
                .query_async::<()>(&mut connection)
                .await
        })
        .await?;
        Ok(match &*self.link.borrow() {
            Link::Up(connected) => connected.restart.clone(),
            // Broken since the reply: what the next connection learns is not known yet.
            _ => None,
        })
    }

    /// Runs one request on this master, bounded by the per-master timeout.
    pub(crate) async fn call<T, F, Fut>(self: &Arc<Self>, request: F) -> Result<T, CallError>
    where
        F: Fn(Handle) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        self.call_within(None, self.call_timeout, request).await
    }

    /// [`call`](Self::call) for a request whose yes grants a new hold: unless `grace` is
    /// `None`, a master that restarted less than `grace` ago and may have lost its keys then
    /// is not asked (`CallError::InGrace`). A request that also blocks on the server (`WAIT`)
    /// for up to `blocks` gets that much more than the per-master timeout.
    ///
    /// A request that meets a broken connection (a restart or a failover closes every
    /// connection, and the client learns it from the next command) is sent once more, on a
    /// fresh connection, within its own per-master timeout: every request of ours may be sent
    /// twice (compare-and-act scripts, and a `SET NX` of a value that counts as ours where it
    /// is found).
    ///
    /// With `spare` (a quorum can do without this master's vote), a master that left a call
    /// unanswered lately (paused, overloaded: see [`SUSPECT_FOR`]) gets a tenth of the timeout
    /// to show it answers again: a round that needs its vote because contenders split the
    /// others would otherwise wait the whole timeout, round after round.
    pub(crate) async fn call_voting<T, F, Fut>(
        self: &Arc<Self>,
        grace: Option<Duration>,
        blocks: Duration,
        spare: bool,
        request: F,
    ) -> Result<T, CallError>
    where
        F: Fn(Handle) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let limit = if spare && self.suspect(Instant::now()) {
            (self.call_timeout / 10).max(Duration::from_millis(5))
        } else {
            self.call_timeout
        };
        self.call_within(grace, limit + blocks, request).await
    }

    /// Whether this master left a call unanswered within `SUSPECT_FOR` of `now` (and answered
    /// none since).
    fn suspect(&self, now: Instant) -> bool {
        rt::lock(&self.unanswered_since)
            .is_some_and(|since| now.saturating_duration_since(since) < SUSPECT_FOR)
    }

    /// [`call_voting`](Self::call_voting) bounded by `limit`.
    async fn call_within<T, F, Fut>(
        self: &Arc<Self>,
        grace: Option<Duration>,
        limit: Duration,
        request: F,
    ) -> Result<T, CallError>
    where
        F: Fn(Handle) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let reply = match self.call_once(grace, limit, &request).await {
            Err(CallError::Redis(err)) if err.is_io_error() || err.is_connection_dropped() => {
                tracing::debug!(master = %self.label, %err, "redlock: the connection broke; sending again on a new one");
                self.call_once(grace, limit, &request).await
            }
            other => other,
        };
        if let Ok(_) | Err(CallError::Redis(_)) = &reply {
            *rt::lock(&self.unanswered_since) = None;
        }
        reply
    }

    async fn call_once<T, F, Fut>(
        self: &Arc<Self>,
        grace: Option<Duration>,
        limit: Duration,
        request: F,
    ) -> Result<T, CallError>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        // Whether the command was sent: a timeout before that is a connection problem, and
        // the command cannot have been applied.
        let sent = AtomicBool::new(false);
        let bounded = tokio::time::timeout(limit, async {
            // Uncontended, the turn is taken without a waiter node (tokio's mutex is fair:
            // `try_lock` fails while callers wait, so nobody is overtaken).
            let turn = match self.order.try_lock() {
                Ok(turn) => turn,
                Err(_) => self.order.lock().await,
            };
            let connection = self.connection().await?;
            if let (Some(grace), Some(restart)) = (grace, &connection.restart)
                && let Some(left) = restart.grace_left(grace, Instant::now())
            {
                let restart = restart.clone();
                self.warn_grace(&restart, left);
                return Err(CallError::InGrace { restart, left });
            }
            sent.store(true, Ordering::Relaxed);
            let mut request = std::pin::pin!(request(connection.handle.clone()));
            // The first poll queues the command on the connection; the next caller may go then.
            let first = std::future::poll_fn(|cx| Poll::Ready(request.as_mut().poll(cx))).await;
            drop(turn);
            let reply = match first {
                Poll::Ready(reply) => reply,
                Poll::Pending => request.await,
            };
            reply.map_err(|err| {
                // A master that a failover turned into a replica answers READONLY: reconnect,
                // which asks the sentinels again.
                let demoted = read_only(&err);
                if err.is_io_error() || err.is_unrecoverable_error() || demoted {
                    self.disconnect(Some(&connection));
                }
                // Refusing writes stalls every lock on this master until it ends: say so.
                let err = CallError::Redis(err);
                if let CallError::Redis(refused) = &err
                    && refusal_hint(refused).is_some()
                {
                    self.warn(
                        "Redis master refuses writes",
                        &self.secret.scrub(&err.to_string()),
                    );
                }
                err
            })
        });
        bounded.await.unwrap_or_else(|_| {
            // A suspicion starts at a silence (no reply, or no connection: a paused server
            // accepts connections and answers nothing) and is not prolonged by the short
            // calls that time out during it: once per `SUSPECT_FOR`, a call waits the whole
            // timeout again.
            let now = Instant::now();
            if !self.suspect(now) {
                *rt::lock(&self.unanswered_since) = Some(now);
            }
            Err(if sent.load(Ordering::Relaxed) {
                CallError::TimedOut(limit)
            } else {
                CallError::NotConnected(ConnectFailure::transient(format!(
                    "no connection within {limit:?} (still trying)"
                )))
            })
        })
    }

    pub(crate) fn failure(&self, error: &CallError) -> MasterFailure {
        // A replica named as a master: only Sentinel can lead us to the new master.
        if let CallError::Redis(err) = error
            && read_only(err)
            && !matches!(self.subscriptions, Subscriptions::Sentinel { .. })
        {
            return MasterFailure {
                cause: Some(Arc::new(err.clone())),
                ..MasterFailure::new(
                    self.label.clone(),
                    "a read-only replica, not a master: list masters (or their sentinels, \
                     which follow failovers)",
                    true,
                )
            };
        }
        MasterFailure {
            cause: match error {
                CallError::Redis(err) => Some(Arc::new(err.clone())),
                CallError::NotConnected(failure) => failure.cause.clone().map(Arc::new),
                CallError::TimedOut(_) | CallError::InGrace { .. } => None,
            },
            ..MasterFailure::new(
                self.label.clone(),
                self.secret.scrub(&error.to_string()),
                error.misconfigured(),
            )
        }
    }

    /// The live connection, connecting first if there is none. A caller that finds the link
    /// down starts one connection attempt and reports its error; it never loops.
    async fn connection(self: &Arc<Self>) -> Result<Arc<Connected>, CallError> {
        // The usual case, without registering as a receiver.
        if let Link::Up(connection) = &*self.link.borrow() {
            return Ok(Arc::clone(connection));
        }
        let mut link = self.link.subscribe();
        let mut started = false;
        loop {
            match &*link.borrow_and_update() {
                Link::Up(connection) => return Ok(Arc::clone(connection)),
                Link::Failed(failure) if started => {
                    return Err(CallError::NotConnected(failure.clone()));
                }
                Link::Connecting => {}
                Link::Down | Link::Failed(_) => {}
            }
            if !started {
                self.start_connecting();
                started = true;
            }
            // The sender lives in `self`, so `changed` cannot fail.
            let _ = link.changed().await;
        }
    }

    fn start_connecting(self: &Arc<Self>) {
        let claimed = self.link.send_if_modified(|link| {
            let idle = matches!(link, Link::Down | Link::Failed(_));
            if idle {
                *link = Link::Connecting;
            }
            idle
        });
        if !claimed {
            return;
        }
        self.follow_failovers();
        // Connecting runs in its own task so that it survives callers that time out, on the
        // private runtime so that the connection's I/O outlives the caller's runtime.
        let master = Arc::clone(self);
        rt::spawn(async move {
            // Should the attempt panic, the link must not stay `Connecting` forever.
            let mut attempt = ConnectAttempt {
                master: Arc::clone(&master),
                finished: false,
            };
            let was_up = master.was_up.load(Ordering::Relaxed);
            let next = match tokio::time::timeout(
                master.connect_timeout,
                master.pool.connect(was_up, &master.scripts),
            )
            .await
            {
                Ok(Ok((connection, run_ids))) => {
                    match master.server_ids.claim(&master.label, run_ids) {
                        None => {
                            master.was_up.store(true, Ordering::Relaxed);
                            Link::Up(Arc::new(connection))
                        }
                        Some(other) => Link::Failed(ConnectFailure {
                            cause: None,
                            reason: format!(
                                "the same Redis server as `{other}`: one server must cast \
                                     one vote; list each server once"
                            ),
                            misconfigured: true,
                        }),
                    }
                }
                Ok(Err(failure)) => Link::Failed(failure),
                Err(_) => Link::Failed(ConnectFailure::transient(format!(
                    "no connection within {:?}",
                    master.connect_timeout
                ))),
            };
            if let Link::Failed(failure) = &next {
                master.warn("cannot connect to Redis master", &failure.reason);
            }
            attempt.finished = true;
            master.link.send_replace(next);
        });
    }

    /// Forgets the connection so that the next call connects anew: `broken` only if it is
    /// still the current one (a newer connection stays), or with `None` whichever is up.
    fn disconnect(&self, broken: Option<&Arc<Connected>>) {
        let mut dropped = None;
        self.link.send_if_modified(|link| match link {
            Link::Up(current) if broken.is_none_or(|broken| Arc::ptr_eq(current, broken)) => {
                dropped = Some(std::mem::replace(link, Link::Down));
                true
            }
            _ => false,
        });
        tracing::debug!(master = %self.label, "redlock: connection to Redis master dropped");
        // The connection closes when the calls still using it are done.
        drop(dropped);
    }
}

/// A connection attempt: if it ends without a result (a panic), the link is marked failed.
struct ConnectAttempt {
    master: Arc<Master>,
    finished: bool,
}

impl Drop for ConnectAttempt {
    fn drop(&mut self) {
        if !self.finished {
            let failed = Link::Failed(ConnectFailure::transient(
                "the connection attempt panicked".into(),
            ));
            self.master.link.send_replace(failed);
        }
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("url", &self.label).finish()
    }
}
