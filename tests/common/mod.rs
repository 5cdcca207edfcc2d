//! Helpers shared by the behaviour tests. The servers come from `redlock_runtime::test_util`.
#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, Instant};

use configurable_redlock::{Config, Redlock};
use redlock_runtime::test_util::Masters;

/// How late a loaded 2-core machine may run a task, a timer or a `redis-server` reply: the
/// margin every time bound in these tests adds to what the product promises. The suite must
/// pass with another process keeping one core busy; there, single delays of 100–300 ms were
/// seen, so the margin is 500 ms. Each bound is chosen so that the failure it guards against
/// (a wait for a fallback timer, a whole backoff pause, a TTL running out) still lies beyond it.
pub const SLACK: Duration = Duration::from_millis(500);

/// How long a test waits for a precondition that is no promise of the product (a child process
/// started, a key replicated, a waiter counted by another process): long, because the wait
/// ends as soon as the condition holds.
pub const READY: Duration = Duration::from_secs(30);

/// A client over `masters` with a short per-master timeout, so fault tests stay fast.
pub fn redlock(masters: &Masters) -> Redlock {
    redlock_with_master_timeout(masters, Duration::from_millis(100))
}

/// A client over `masters` whose calls to one master are bounded by `master_timeout`.
pub fn redlock_with_master_timeout(masters: &Masters, master_timeout: Duration) -> Redlock {
    Redlock::with_config(Config {
        master_timeout,
        ..Config::new(masters.urls())
    })
    .expect("valid test URLs")
}

/// Reads a string key from one server with a plain connection.
pub fn get(masters: &Masters, index: usize, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut masters[index].connection())
        .expect("GET")
}

/// The registry of stats keys (`ConfigurableLockKeys`) on one server, as stored.
pub fn registry(masters: &Masters, index: usize) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(configurable_redlock::REGISTRY_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut masters[index].connection())
        .expect("LRANGE")
}

/// How many waiters stand in the queue of lock `name` on one server. A waiter enters the queue
/// after it subscribed to release notifications, so a queued waiter is woken by a release.
pub fn queued(masters: &Masters, index: usize, name: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(format!(
            "{{{}}}:queue",
            configurable_redlock::lock_key(name)
        ))
        .query(&mut masters[index].connection())
        .expect("ZCARD")
}

/// Waits until `count` waiters stand in the queue of lock `name` on every server.
///
/// # Panics
/// If they are not there within [`READY`].
pub async fn until_queued(masters: &Masters, name: &str, count: usize) {
    let all = eventually(READY, || {
        (0..masters.servers().len()).all(|index| queued(masters, index, name) == count)
    })
    .await;
    assert!(all, "{count} waiters never queued on `{name}`");
}

/// Polls `condition` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
