//! The Python library's three timeouts: -1 skips at once, N waits up to N seconds, 0 waits forever.

mod common;

use std::time::{Duration, Instant};

use common::redlock;
use configurable_redlock::{LockError, Timeout};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skip_returns_timeout_at_once_when_held() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("skip").await.unwrap();

    let started = Instant::now();
    let err = redlock.lock("skip").timeout(-1).await.unwrap_err();

    assert!(
        matches!(err, LockError::Timeout { ref name, .. } if name == "skip"),
        "{err}"
    );
    // One attempt round (plus the load margin): a skip never waits for the holder.
    assert!(started.elapsed() < common::SLACK, "{:?}", started.elapsed());
    held.release().await.unwrap();
    let again = redlock.lock("skip").timeout(Timeout::Skip).await;
    assert!(again.is_ok(), "free again after release: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_wait_gives_up_at_the_deadline() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let _held = redlock.lock("bounded").await.unwrap();

    let started = Instant::now();
    let err = redlock.lock("bounded").timeout(0.3).await.unwrap_err();
    let waited = started.elapsed();

    assert!(matches!(err, LockError::Timeout { .. }), "{err}");
    assert!(
        waited >= Duration::from_millis(300),
        "gave up early: {waited:?}"
    );
    // At most one attempt round (the per-master timeout, 100 ms) at the deadline, plus the
    // load margin; never a fallback pause past it (the heartbeat would sleep to 1 s).
    assert!(
        waited < Duration::from_millis(300 + 100) + common::SLACK,
        "overshot the deadline: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_wait_gets_the_lock_released_in_time() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("handoff").await.unwrap();

    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("handoff").timeout(5).await }
    });
    common::until_queued(&masters, "handoff", 1).await;
    held.release().await.unwrap();

    let guard = waiter.await.unwrap().expect("acquired once released");
    assert_eq!(guard.name(), "handoff");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forever_waits_past_the_holders_ttl() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    // A holder that crashed: its key stays until its TTL ends (700 ms).
    let _: () = redis::cmd("SET")
        .arg(configurable_redlock::lock_key("forever"))
        .arg("crashed-holder")
        .arg("PX")
        .arg(700)
        .query(&mut masters[0].connection())
        .unwrap();

    let started = Instant::now();
    let guard = redlock.lock("forever").timeout(0).await.unwrap();

    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    assert!(!guard.is_lost());
}
