//! One Redis master: a deadpool-managed connection kept checked out, and per-call time bounds.
//!
//! `deadpool_redis::Pool::get()` sends `UNWATCH` + `PING` on every checkout, which would double
//! the cost of a lock. So each master keeps one multiplexed connection checked out and clones its
//! handle per call (a channel send, no I/O); the pool still creates it, bounds it and replaces it
//! after the connection breaks.
//!
//! Keeping one connection per master also orders commands: a release always follows the `SET`
//! it undoes on the same socket, so a slow master cannot apply a straggling `SET` after its release.
//!
//! A master is one server, one Redis Cluster, or the master a set of sentinels points to (see
//! [`Target`]); past this module they look the same.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use deadpool_redis::{Runtime, cluster, sentinel};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, ServerErrorKind,
    Value,
    aio::{ConnectionLike, MultiplexedConnection, PubSub},
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};
use tokio::sync::watch;

use crate::{LockError, MasterFailure, config::redact_url, target::Target};

/// The state of a master's connection, shared by all callers.
enum Link {
    /// No connection yet, or the last one broke.
    Down,
    /// One task is connecting; callers wait for it.
    Connecting,
    /// A live connection, kept checked out of the pool.
    Up(Arc<Pooled>),
    /// The last connection attempt failed with this message.
    Failed(String),
}

/// The pool of one master, by kind.
enum Pool {
    Server(deadpool_redis::Pool),
    Cluster(cluster::Pool),
    Sentinel(sentinel::Pool),
}

/// A connection checked out of a [`Pool`]; dropping it returns it.
enum Pooled {
    Server(deadpool_redis::Connection),
    Cluster(cluster::Connection),
    Sentinel(sentinel::Connection),
}

/// What each call gets: a clone of the master's connection handle.
#[derive(Clone)]
pub(crate) enum Handle {
    /// One server, or the master a sentinel named.
    Server(MultiplexedConnection),
    /// A cluster: each command goes to the node that owns its keys' slot.
    Cluster(ClusterConnection),
}

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Server(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Server(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Server(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

impl Pooled {
    fn handle(&self) -> Handle {
        match self {
            Self::Server(connection) => Handle::Server((**connection).clone()),
            Self::Cluster(connection) => Handle::Cluster((**connection).clone()),
            Self::Sentinel(connection) => Handle::Server((**connection).clone()),
        }
    }
}

impl Pool {
    async fn get(&self) -> Result<Pooled, String> {
        let pooled = match self {
            Self::Server(pool) => pool.get().await.map(Pooled::Server),
            Self::Cluster(pool) => pool.get().await.map(Pooled::Cluster),
            Self::Sentinel(pool) => pool.get().await.map(Pooled::Sentinel),
        };
        pooled.map_err(|err| err.to_string())
    }
}

/// Where the release subscriber connects: releases are published on the master, and Redis
/// forwards them to every node of a cluster and to replicas, so any reachable node will do.
enum Subscriptions {
    Server(redis::Client),
    /// The seed nodes, tried in turn.
    Cluster(Vec<redis::Client>, AtomicUsize),
    /// Asks the sentinels for the current master at each (re)connection.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

/// One independent Redis master of the quorum.
pub(crate) struct Master {
    /// The URL with its password redacted: the only form ever shown.
    pub(crate) label: String,
    /// Whether this master is a Redis Cluster, where every script must keep to one slot.
    pub(crate) is_cluster: bool,
    pool: Pool,
    subscriptions: Subscriptions,
    link: watch::Sender<Link>,
    /// Bound on one call: getting the connection plus one round trip.
    call_timeout: Duration,
    /// Bound on establishing a connection; it goes on in the background past `call_timeout`.
    connect_timeout: Duration,
}

/// Why one call to a master failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No connection could be established; the command was never sent.
    NotConnected(String),
    /// No answer within the per-master timeout; the command may still be applied.
    TimedOut(Duration),
    /// The client or the server reported an error.
    Redis(RedisError),
}

impl CallError {
    /// Whether the command may have reached the master (so its effect may need undoing).
    pub(crate) fn maybe_applied(&self) -> bool {
        !matches!(self, Self::NotConnected(_))
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConnected(reason) => write!(f, "cannot connect: {reason}"),
            Self::TimedOut(limit) => write!(f, "no reply within {limit:?}"),
            Self::Redis(err) => write!(f, "{err}"),
        }
    }
}

impl Master {
    pub(crate) fn new(
        url: &str,
        call_timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<Self, LockError> {
        let label = redact_url(url);
        let invalid = |reason: String| LockError::InvalidUrl {
            url: label.clone(),
            reason,
        };
        let target = Target::parse(url).map_err(invalid)?;
        let is_cluster = matches!(target, Target::Cluster(_));
        let (pool, subscriptions) = Self::pool(target, connect_timeout).map_err(invalid)?;
        Ok(Self {
            label,
            is_cluster,
            pool,
            subscriptions,
            link: watch::Sender::new(Link::Down),
            call_timeout,
            connect_timeout,
        })
    }

    /// Makes the pool (of at most one connection) and the subscription source of `target`.
    fn pool(target: Target, connect_timeout: Duration) -> Result<(Pool, Subscriptions), String> {
        let text = |err: &dyn std::fmt::Display| err.to_string();
        let built = |err: deadpool_redis::BuildError| err.to_string();
        Ok(match target {
            Target::Server(url) => {
                // Time bounds are ours (see `call`), so the client's own response timeout is off.
                let connection_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(connect_timeout))
                    .set_response_timeout(None);
                let client = redis::Client::open(url.as_str()).map_err(|e| text(&e))?;
                let manager = deadpool_redis::Manager::new_with_config(url, connection_config)
                    .map_err(|e| text(&e))?;
                let pool = deadpool_redis::Pool::builder(manager)
                    .max_size(1)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(built)?;
                (Pool::Server(pool), Subscriptions::Server(client))
            }
            Target::Cluster(seeds) => {
                let clients = seeds
                    .iter()
                    .map(|seed| redis::Client::open(seed.as_str()))
                    .collect::<Result<_, _>>()
                    .map_err(|e| text(&e))?;
                let manager = cluster::Manager::new(seeds, false).map_err(|e| text(&e))?;
                let pool = cluster::Pool::builder(manager)
                    .max_size(1)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(built)?;
                let subscriptions = Subscriptions::Cluster(clients, AtomicUsize::new(0));
                (Pool::Cluster(pool), subscriptions)
            }
            Target::Sentinel {
                sentinels,
                service,
                master,
                tls,
            } => {
                // The pool's copy of the master's settings, in deadpool's own types.
                let for_pool = sentinel::SentinelNodeConnectionInfo {
                    tls_mode: tls.then_some(sentinel::TlsMode::Secure),
                    redis_connection_info: Some(master.clone().into()),
                };
                let mut node = SentinelNodeConnectionInfo::default().set_redis_connection_info(master);
                if tls {
                    node = node.set_tls_mode(redis::TlsMode::Secure);
                }
                let client = SentinelClient::build(
                    sentinels.clone(),
                    service.clone(),
                    Some(node),
                    SentinelServerType::Master,
                )
                .map_err(|e| text(&e))?;
                let manager = sentinel::Manager::new(
                    sentinels,
                    service,
                    Some(for_pool),
                    sentinel::SentinelServerType::Master,
                )
                .map_err(|e| text(&e))?;
                let pool = sentinel::Pool::builder(manager)
                    .max_size(1)
                    .runtime(Runtime::Tokio1)
                    .build()
                    .map_err(built)?;
                let subscriptions = Subscriptions::Sentinel(tokio::sync::Mutex::new(client));
                (Pool::Sentinel(pool), subscriptions)
            }
        })
    }

    /// A new pub/sub connection for the release subscriber.
    pub(crate) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        match &self.subscriptions {
            Subscriptions::Server(client) => client.get_async_pubsub().await,
            Subscriptions::Cluster(clients, next) => {
                let first = next.fetch_add(1, Ordering::Relaxed);
                let mut last_error = None;
                for turn in 0..clients.len() {
                    match clients[(first + turn) % clients.len()].get_async_pubsub().await {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(err) => last_error = Some(err),
                    }
                }
                Err(last_error.expect("a cluster URL has at least one seed"))
            }
            Subscriptions::Sentinel(client) => {
                let master = client.lock().await.async_get_client().await?;
                master.get_async_pubsub().await
            }
        }
    }

    /// Runs one request on this master, bounded by the per-master timeout.
    pub(crate) async fn call<T, F, Fut>(self: &Arc<Self>, request: F) -> Result<T, CallError>
    where
        F: FnOnce(Handle) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let bounded = tokio::time::timeout(self.call_timeout, async {
            let connection = self.connection().await?;
            request(connection.handle()).await.map_err(|err| {
                // A master that a failover turned into a replica answers READONLY: reconnect,
                // which asks the sentinels again.
                let demoted = err.kind() == ErrorKind::Server(ServerErrorKind::ReadOnly);
                if err.is_io_error() || err.is_unrecoverable_error() || demoted {
                    self.disconnect(&connection);
                }
                CallError::Redis(err)
            })
        });
        bounded
            .await
            .unwrap_or(Err(CallError::TimedOut(self.call_timeout)))
    }

    pub(crate) fn failure(&self, error: &CallError) -> MasterFailure {
        MasterFailure {
            master: self.label.clone(),
            error: error.to_string(),
        }
    }

    /// The live connection, connecting first if there is none. A caller that finds the link
    /// down starts one connection attempt and reports its error; it never loops.
    async fn connection(self: &Arc<Self>) -> Result<Arc<Pooled>, CallError> {
        let mut link = self.link.subscribe();
        let mut started = false;
        loop {
            match &*link.borrow_and_update() {
                Link::Up(connection) => return Ok(Arc::clone(connection)),
                Link::Failed(reason) if started => {
                    return Err(CallError::NotConnected(reason.clone()));
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
        // Connecting runs in its own task so that it survives callers that time out.
        let master = Arc::clone(self);
        tokio::spawn(async move {
            // Should the attempt panic, the link must not stay `Connecting` forever.
            let mut attempt = Attempt {
                master: Arc::clone(&master),
                finished: false,
            };
            let next = match tokio::time::timeout(master.connect_timeout, master.pool.get()).await {
                Ok(Ok(connection)) => Link::Up(Arc::new(connection)),
                Ok(Err(reason)) => Link::Failed(reason),
                Err(_) => {
                    Link::Failed(format!("no connection within {:?}", master.connect_timeout))
                }
            };
            if let Link::Failed(reason) = &next {
                tracing::warn!(master = %master.label, %reason, "redlock: cannot connect to Redis master");
            }
            attempt.finished = true;
            master.link.send_replace(next);
        });
    }

    /// Forgets a broken connection so that the next call connects anew.
    fn disconnect(&self, broken: &Arc<Pooled>) {
        let mut dropped = None;
        self.link.send_if_modified(|link| match link {
            Link::Up(current) if Arc::ptr_eq(current, broken) => {
                dropped = Some(std::mem::replace(link, Link::Down));
                true
            }
            _ => false,
        });
        tracing::debug!(master = %self.label, "redlock: connection to Redis master dropped");
        // Dropping the last handle returns the connection to the pool, whose recycle check
        // then discards it.
        drop(dropped);
    }
}

/// A connection attempt: if it ends without a result (a panic), the link is marked failed.
struct Attempt {
    master: Arc<Master>,
    finished: bool,
}

impl Drop for Attempt {
    fn drop(&mut self) {
        if !self.finished {
            let failed = Link::Failed("the connection attempt panicked".into());
            self.master.link.send_replace(failed);
        }
    }
}

impl std::fmt::Debug for Master {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Master").field("url", &self.label).finish()
    }
}
