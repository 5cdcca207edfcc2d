//! The implementations the bench compares, behind one client: this crate's API and the Rust
//! peers a user would pick instead, each with its defaults (TTL 30 s).
//!
//! Peers' defects met here, which decide where they run:
//! - distkit 0.7 locks on one server only (`LockOptions` takes one connection); its waits
//!   poll with `SET NX` every 50 ms (`retry_interval`).
//! - distributed-lock-redis 0.2 runs Redlock over several servers, but once a quorum answered
//!   it cancels the last request, whose `SET` has mostly landed already: that key is never
//!   released and stays its TTL (seen in 30 of 30 acquire + release cycles on 3 masters), and
//!   a failed attempt is not undone. Repeated on one name, these keys block every client's
//!   quorum for up to 30 s, so it runs on 1 master only. Its `acquire(timeout)` tries once,
//!   like `try_acquire`: waiting is the caller's loop, here a poll every 10 ms.

use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    time::{Duration, Instant},
};

use configurable_redlock::Redlock;
use distkit::{
    DistkitRedisKey,
    lock::{LockOptions, Mutex},
};
use distributed_lock_core::{DistributedLock, LockHandle, LockProvider};
use distributed_lock_redis::RedisLockProvider;
use rslock::LockManager;

use crate::probes::TTL;

/// How long a waiting acquisition may wait before the bench fails.
const WAIT: i64 = 60;

/// A lock implementation of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Implementation {
    /// This crate's API.
    Api,
    Rslock,
    Distkit,
    DistributedLockRedis,
}

impl Implementation {
    /// This crate and every peer, in the order of the rows.
    pub(crate) const ALL: [Self; 4] = [
        Self::Api,
        Self::Rslock,
        Self::Distkit,
        Self::DistributedLockRedis,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Api => "API",
            Self::Rslock => "rslock",
            Self::Distkit => "distkit",
            Self::DistributedLockRedis => "distributed-lock-redis",
        }
    }

    /// The implementation called `name` (a worker process's argument).
    pub(crate) fn named(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|implementation| implementation.name() == name)
            .unwrap_or_else(|| panic!("no implementation {name}"))
    }

    /// Whether it runs on `masters` masters (see the module docs for the peers on 1 only).
    pub(crate) fn runs_on(self, masters: usize) -> bool {
        match self {
            Self::Api | Self::Rslock => true,
            Self::Distkit | Self::DistributedLockRedis => masters == 1,
        }
    }
}

/// What releases a held lock.
pub(crate) type Release = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// A client of one implementation on the bench's masters; cheap to clone.
#[derive(Clone)]
pub(crate) enum Client {
    Api(Redlock),
    Rslock(LockManager),
    /// A `Mutex` is one name: one is made per acquisition, on the shared connection.
    Distkit(redis::aio::ConnectionManager),
    DistributedLockRedis(Arc<RedisLockProvider>),
}

impl Client {
    pub(crate) async fn new(implementation: Implementation, urls: &[String]) -> Self {
        match implementation {
            Implementation::Api => Self::Api(Redlock::new(urls).unwrap()),
            Implementation::Rslock => Self::Rslock(LockManager::new(urls.to_vec())),
            Implementation::Distkit => {
                let client = redis::Client::open(urls[0].as_str()).unwrap();
                Self::Distkit(client.get_connection_manager().await.unwrap())
            }
            Implementation::DistributedLockRedis => {
                let provider = RedisLockProvider::builder()
                    .urls(urls)
                    .expiry(TTL)
                    // Its default (27 s) is for its default expiry; with 30 s it would leave
                    // an attempt 3 s, and fail some under load.
                    .min_validity(TTL * 9 / 10)
                    .build()
                    .await
                    .unwrap();
                Self::DistributedLockRedis(Arc::new(provider))
            }
        }
    }

    fn distkit(connection: &redis::aio::ConnectionManager, name: &str) -> Arc<Mutex> {
        // Its keys may hold no colon (it adds its own prefix).
        let key = DistkitRedisKey::try_from(name.replace(':', "-")).unwrap();
        let options = LockOptions::builder(key, connection.clone())
            .ttl(TTL)
            .max_wait(Duration::from_secs(WAIT as u64))
            .build();
        Mutex::new(options)
    }

    /// Acquires `name`, waiting while it is held; returns its release.
    pub(crate) async fn acquire(&self, name: &str) -> Release {
        match self {
            Self::Api(redlock) => {
                let guard = redlock.lock(name).timeout(WAIT).await.unwrap();
                Box::new(move || Box::pin(async move { guard.release().await.unwrap() }))
            }
            Self::Rslock(manager) => {
                let guard = manager.acquire(name.as_bytes(), TTL).await.unwrap();
                Box::new(move || Box::pin(guard.release()))
            }
            Self::Distkit(connection) => {
                let guard = Self::distkit(connection, name).lock().await.unwrap();
                Box::new(move || {
                    Box::pin(async move {
                        guard.release().await.unwrap();
                    })
                })
            }
            Self::DistributedLockRedis(provider) => {
                let lock = provider.create_lock(name);
                let gives_up_at = Instant::now() + Duration::from_secs(WAIT as u64);
                let handle = loop {
                    if let Some(handle) = lock.try_acquire().await.unwrap() {
                        break handle;
                    }
                    assert!(
                        Instant::now() < gives_up_at,
                        "distributed-lock-redis: timed out"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                };
                Box::new(move || Box::pin(async move { handle.release().await.unwrap() }))
            }
        }
    }

    /// One uncontended acquire + release of `name`, trying once.
    pub(crate) async fn cycle(&self, name: &str) {
        match self {
            Self::Api(redlock) => crate::probes::api_cycle(redlock, name).await,
            Self::Rslock(manager) => {
                let lock = manager.lock(name.as_bytes(), TTL).await.unwrap();
                manager.unlock(&lock).await;
            }
            Self::Distkit(connection) => {
                let guard = Self::distkit(connection, name).try_lock().await.unwrap();
                guard.release().await.unwrap();
            }
            Self::DistributedLockRedis(provider) => {
                let handle = provider.create_lock(name).try_acquire().await.unwrap();
                handle.expect("free").release().await.unwrap();
            }
        }
    }
}
