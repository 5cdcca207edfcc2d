//! Waiting without polling: a release wakes the waiters; a holder that never announces its
//! release (a Python worker, a crashed process) is taken over when its key expires.

mod common;

use std::time::{Duration, Instant};

use common::redlock;
use configurable_redlock::lock_key;
use redlock_runtime::test_util::Masters;

async fn handoff_latency(masters: &Masters) -> Duration {
    let redlock = redlock(masters);
    let held = redlock.lock("handoff").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move {
            let guard = redlock.lock("handoff").timeout(10).await.unwrap();
            let acquired_at = Instant::now();
            guard.release().await.unwrap();
            acquired_at
        }
    });
    // The waiter is queued and subscribed; its fallback timer is the heartbeat (1 s after it
    // queued) because the holder's TTL is 30 s.
    common::until_queued(masters, "handoff", 1).await;
    let released_at = Instant::now();
    held.release().await.unwrap();
    waiter.await.unwrap() - released_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_waiter_long_before_its_fallback_timer() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let latency = handoff_latency(&masters).await;
        // Round trips, plus the load margin; a waiter that missed the release would wake
        // only at its heartbeat, about 1 s after it queued.
        assert!(
            latency < common::SLACK,
            "{count} masters: handoff took {latency:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_announces_is_taken_over_when_its_key_expires() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    // What a Python worker writes: a plain SET NX PX, released by expiry only.
    let _: () = redis::cmd("SET")
        .arg(lock_key("python-held"))
        .arg("a-python-worker")
        .arg("NX")
        .arg("PX")
        .arg(300)
        .query(&mut masters[0].connection())
        .unwrap();
    let started = Instant::now();

    let guard = redlock.lock("python-held").timeout(5).await.unwrap();

    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "not before expiry: {waited:?}"
    );
    // The fallback timer fires 1 ms after the key's PTTL: promptly, plus the load margin;
    // without it the waiter would sleep to its 1 s heartbeat.
    assert!(
        waited < Duration::from_millis(300) + common::SLACK,
        "promptly after expiry: {waited:?}"
    );
    guard.release().await.unwrap();
}
