//! One Redis master: a deadpool-managed connection kept checked out, and per-call time bounds.
//!
//! `deadpool_redis::Pool::get()` sends `UNWATCH` + `PING` on every checkout, which would double
//! the cost of a lock. So each master keeps one multiplexed connection checked out and clones its
//! handle per call (a channel send, no I/O); the pool still creates it, bounds it and replaces it
//! after the connection breaks.
//!
//! Keeping one connection per master also orders commands: a release always follows the `SET`
//! it undoes on the same socket, so a slow master cannot apply a straggling `SET` after its release.

use std::{future::Future, sync::Arc, time::Duration};

use deadpool_redis::{Connection, Manager, Pool, Runtime};
use redis::{AsyncConnectionConfig, RedisError, aio::MultiplexedConnection};
use tokio::sync::watch;

use crate::{LockError, MasterFailure, config::redact_url};

/// The state of a master's connection, shared by all callers.
enum Link {
    /// No connection yet, or the last one broke.
    Down,
    /// One task is connecting; callers wait for it.
    Connecting,
    /// A live connection, kept checked out of the pool.
    Up(Arc<Connection>),
    /// The last connection attempt failed with this message.
    Failed(String),
}

/// One independent Redis master of the quorum.
pub(crate) struct Master {
    /// The URL with its password redacted: the only form ever shown.
    pub(crate) label: String,
    /// For the release subscriber, which needs a connection of its own.
    pub(crate) client: redis::Client,
    pool: Pool,
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
        // Time bounds are ours (see `call`), so the client's own response timeout is off.
        let connection_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(connect_timeout))
            .set_response_timeout(None);
        let client = redis::Client::open(url).map_err(|err| invalid(err.to_string()))?;
        let manager = Manager::new_with_config(url, connection_config)
            .map_err(|err| invalid(err.to_string()))?;
        let pool = Pool::builder(manager)
            .max_size(1)
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|err| invalid(err.to_string()))?;
        Ok(Self {
            label,
            client,
            pool,
            link: watch::Sender::new(Link::Down),
            call_timeout,
            connect_timeout,
        })
    }

    /// Runs one request on this master, bounded by the per-master timeout.
    pub(crate) async fn call<T, F, Fut>(self: &Arc<Self>, request: F) -> Result<T, CallError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = Result<T, RedisError>>,
    {
        let bounded = tokio::time::timeout(self.call_timeout, async {
            let connection = self.connection().await?;
            let handle: MultiplexedConnection = (*connection).clone();
            request(handle).await.map_err(|err| {
                if err.is_io_error() || err.is_unrecoverable_error() {
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
    async fn connection(self: &Arc<Self>) -> Result<Arc<Connection>, CallError> {
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
                Ok(Err(err)) => Link::Failed(err.to_string()),
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
    fn disconnect(&self, broken: &Arc<Connection>) {
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
