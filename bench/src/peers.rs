//! The implementations the bench compares, behind one client: this crate's API and the Rust
//! peers a user would pick instead, each with its defaults.

use std::{future::Future, pin::Pin};

use configurable_redlock::Redlock;
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
}

impl Implementation {
    /// This crate and every peer, in the order of the rows.
    pub(crate) const ALL: [Self; 2] = [Self::Api, Self::Rslock];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Api => "API",
            Self::Rslock => "rslock",
        }
    }

    /// The implementation called `name` (a worker process's argument).
    pub(crate) fn named(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|implementation| implementation.name() == name)
            .unwrap_or_else(|| panic!("no implementation {name}"))
    }

    /// Whether it locks over `masters` masters (a peer without Redlock runs on 1 only).
    pub(crate) fn runs_on(self, masters: usize) -> bool {
        match self {
            Self::Api | Self::Rslock => masters >= 1,
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
}

impl Client {
    pub(crate) async fn new(implementation: Implementation, urls: &[String]) -> Self {
        match implementation {
            Implementation::Api => Self::Api(Redlock::new(urls).unwrap()),
            Implementation::Rslock => Self::Rslock(LockManager::new(urls.to_vec())),
        }
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
        }
    }
}
