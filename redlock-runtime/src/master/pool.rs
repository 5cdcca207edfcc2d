//! How a master connects: its pool by kind of target (server, Cluster, Sentinel), the handle
//! each call gets, and where the release subscriber connects.

use std::{
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    time::Duration,
};

use deadpool_redis::{Runtime, cluster, sentinel};
use redis::{
    AsyncConnectionConfig, Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, Value,
    aio::{ConnectionLike, MultiplexedConnection, PubSub},
    cluster_async::ClusterConnection,
    sentinel::{SentinelClient, SentinelNodeConnectionInfo, SentinelServerType},
};

use super::error::{ConnectFailure, cannot_heal};
use crate::{
    restart::{self, Restart},
    target::Target,
};

/// A live connection, and what it learned of the master's last restart when it was made.
pub(crate) struct Connected {
    pub(super) handle: Handle,
    /// `None` for a master that keeps every write across restarts.
    pub(super) restart: Option<Restart>,
}

/// The pool of one master, by kind.
pub(super) enum Pool {
    Server(deadpool_redis::Pool),
    Cluster(cluster::Pool),
    Sentinel(sentinel::Pool),
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

impl Pool {
    /// Makes the pool (of at most one connection) and the subscription source of `target`.
    pub(super) fn build(
        target: Target,
        connect_timeout: Duration,
    ) -> Result<(Self, Subscriptions), String> {
        match target {
            Target::Server(url) => Self::server(url, connect_timeout),
            Target::Cluster(seeds) => Self::cluster(seeds),
            Target::Sentinel {
                sentinels,
                service,
                master,
                tls,
            } => Self::sentinel(sentinels, service, master, tls),
        }
    }

    fn server(url: String, connect_timeout: Duration) -> Result<(Self, Subscriptions), String> {
        // Time bounds are ours (see `call`), so the client's own response timeout is off.
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        let client = redis::Client::open(url.as_str()).map_err(message)?;
        let manager =
            deadpool_redis::Manager::new_with_config(url, connection_config).map_err(message)?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(message)?;
        Ok((Self::Server(pool), Subscriptions::Server(client)))
    }

    fn cluster(seeds: Vec<String>) -> Result<(Self, Subscriptions), String> {
        let clients = seeds
            .iter()
            .map(|seed| redis::Client::open(seed.as_str()))
            .collect::<Result<_, _>>()
            .map_err(message)?;
        let manager = cluster::Manager::new(seeds, false).map_err(message)?;
        let pool = cluster::Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(message)?;
        let subscriptions = Subscriptions::Cluster(clients, AtomicUsize::new(0));
        Ok((Self::Cluster(pool), subscriptions))
    }

    fn sentinel(
        sentinels: Vec<String>,
        service: String,
        master: redis::RedisConnectionInfo,
        tls: bool,
    ) -> Result<(Self, Subscriptions), String> {
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
        .map_err(message)?;
        let manager = sentinel::Manager::new(
            sentinels,
            service.clone(),
            Some(for_pool),
            sentinel::SentinelServerType::Master,
        )
        .map_err(message)?;
        let pool = sentinel::Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(message)?;
        let subscriptions = Subscriptions::Sentinel {
            client: tokio::sync::Mutex::new(client),
            service,
            following: AtomicBool::new(false),
        };
        Ok((Self::Sentinel(pool), subscriptions))
    }

    /// A new connection, taken out of the pool for good, with what it learned of the master's
    /// last restart, and the `run_id`s of the servers behind it.
    /// `was_up`: whether the master was reached before, so that a sentinel that names no
    /// master for the service is in a failover, not misconfigured.
    /// `scripts`: loaded on the new connection, so that calls are not refused `NOSCRIPT`.
    pub(super) async fn connect(
        &self,
        was_up: bool,
        scripts: &[&'static str],
    ) -> Result<(Connected, Vec<String>), ConnectFailure> {
        let handle = match self {
            Self::Server(pool) => pool
                .get()
                .await
                .map(|c| Handle::Server(deadpool_redis::Connection::take(c))),
            Self::Cluster(pool) => pool
                .get()
                .await
                .map(|c| Handle::Cluster(cluster::Connection::take(c))),
            Self::Sentinel(pool) => pool
                .get()
                .await
                .map(|c| Handle::Server(sentinel::Connection::take(c))),
        };
        let mut handle = handle.map_err(|err| match err {
            deadpool_redis::PoolError::Backend(err) => {
                let misconfigured = cannot_heal(&err)
                    && !(was_up && err.kind() == ErrorKind::MasterNameNotFoundBySentinel);
                ConnectFailure::of(err, misconfigured)
            }
            // The pool has no timeouts of its own and is never closed: not expected, but
            // told in our words rather than the pool's.
            other => ConnectFailure::transient(format!("the connection pool failed ({other:?})")),
        })?;
        // The first commands on the connection: a missing password (`NOAUTH`) shows here.
        let learned = restart::learn(&mut handle).await.map_err(|err| {
            let misconfigured = cannot_heal(&err);
            ConnectFailure::of(err, misconfigured)
        })?;
        let mut load = redis::pipe();
        for code in scripts {
            load.cmd("SCRIPT").arg("LOAD").arg(*code).ignore();
        }
        // A master that forbids it (an ACL) gets each script as `EVAL` on first use instead.
        if let Err(err) = load.query_async::<()>(&mut handle).await {
            tracing::debug!(%err, "redlock: could not load the scripts; they are sent on first use");
        }
        Ok((
            Connected {
                handle,
                restart: learned.restart,
            },
            learned.run_ids,
        ))
    }
}

/// Where the release subscriber connects: releases are published on the master, and Redis
/// forwards them to every node of a cluster and to replicas, so any reachable node will do.
pub(super) enum Subscriptions {
    Server(redis::Client),
    /// The seed nodes, tried in turn.
    Cluster(Vec<redis::Client>, AtomicUsize),
    /// Asks the sentinels for the current master at each (re)connection.
    Sentinel {
        client: tokio::sync::Mutex<SentinelClient>,
        service: String,
        /// Whether the task that follows this service's failovers runs.
        following: AtomicBool,
    },
}

impl Subscriptions {
    /// A new pub/sub connection for the release subscriber.
    pub(super) async fn pubsub(&self) -> Result<PubSub, RedisError> {
        match self {
            Self::Server(client) => client.get_async_pubsub().await,
            Self::Cluster(clients, next) => {
                let first = next.fetch_add(1, Ordering::Relaxed);
                let mut last_error = None;
                for turn in 0..clients.len() {
                    match clients[(first + turn) % clients.len()]
                        .get_async_pubsub()
                        .await
                    {
                        Ok(pubsub) => return Ok(pubsub),
                        Err(err) => last_error = Some(err),
                    }
                }
                Err(last_error.expect("a cluster URL has at least one seed"))
            }
            Self::Sentinel { client, .. } => {
                let master = client.lock().await.async_get_client().await?;
                master.get_async_pubsub().await
            }
        }
    }
}

impl Subscriptions {
    /// A client for the key tracker of `wake.rs`: RESP3, so that invalidations come on the
    /// tracking connection itself. None for a Redis Cluster, whose keys live on several nodes.
    pub(super) async fn tracking(&self) -> Option<Result<redis::Client, RedisError>> {
        let client = match self {
            Self::Server(client) => client.clone(),
            Self::Cluster(..) => return None,
            Self::Sentinel { client, .. } => match client.lock().await.async_get_client().await {
                Ok(client) => client,
                Err(error) => return Some(Err(error)),
            },
        };
        let info = client.get_connection_info().clone();
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        Some(redis::Client::open(info.set_redis_settings(resp3)))
    }
}

/// A client or pool building error, as the message the link reports.
fn message(error: impl std::fmt::Display) -> String {
    error.to_string()
}
