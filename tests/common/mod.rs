//! Helpers shared by the behaviour tests. The servers come from `redlock_runtime::test_util`.
#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, Instant};

use configurable_redlock::{Config, Redlock};
use redlock_runtime::test_util::Masters;

/// A client over `masters` with a short per-master timeout, so fault tests stay fast.
pub fn redlock(masters: &Masters) -> Redlock {
    Redlock::with_config(Config {
        master_timeout: Duration::from_millis(100),
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
