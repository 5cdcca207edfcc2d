//! The blocking API: plain threads, `spawn_blocking`, and a clear error where blocking could
//! deadlock.

mod common;

use std::time::Instant;

use configurable_redlock::{LockError, blocking::Redlock, lock_key};
use redlock_runtime::test_util::Masters;

#[test]
fn plain_threads_exclude_each_other_and_release_on_drop() {
    let masters = Masters::start(3);
    let redlock = Redlock::new(masters.urls()).unwrap();

    let guard = redlock.lock("sync").acquire().unwrap();
    let other = std::thread::spawn({
        let redlock = redlock.clone();
        move || {
            redlock
                .lock("sync")
                .timeout(-1)
                .acquire()
                .map(|guard| guard.release())
        }
    });
    let refused = other.join().unwrap();
    assert!(
        matches!(refused, Err(LockError::Timeout { .. })),
        "{refused:?}"
    );

    drop(guard);
    let started = Instant::now();
    let next = redlock.lock("sync").timeout(2).acquire().unwrap();
    // Released at once in the background, and granted within round trips: 1 s is twice the
    // load margin. A drop that did not release would leave the key for its 10 s TTL.
    assert!(
        started.elapsed() < common::SLACK * 2,
        "freed by the dropped guard: {:?}",
        started.elapsed()
    );
    let mut next = next;
    next.extend().unwrap();
    next.release().unwrap();
    let mut raw = masters[0].connection();
    let left: Option<String> = redis::cmd("GET")
        .arg(lock_key("sync"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(left, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn works_from_spawn_blocking_and_from_a_multi_thread_worker() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();

    let from_blocking = tokio::task::spawn_blocking({
        let redlock = redlock.clone();
        move || redlock.lock("pool").acquire()?.release()
    });
    from_blocking.await.unwrap().unwrap();

    // On a worker thread of a multi-thread runtime the call hands the worker's tasks away
    // (`block_in_place`) instead of stalling them.
    let guard = redlock.lock("pool").acquire().unwrap();
    guard.release().unwrap();
}

#[tokio::test(flavor = "current_thread")]
async fn a_current_thread_runtime_gets_an_error_not_a_deadlock() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();

    let err = redlock.lock("single-threaded").acquire().unwrap_err();

    assert!(matches!(err, LockError::BlockingInAsyncContext), "{err}");
    assert!(err.to_string().contains("use the async API"), "{err}");
}

#[test]
fn the_blocking_guard_gives_fencing_tokens_and_tells_a_loss() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();

    let first = redlock.lock("parity").acquire().unwrap();
    let token = first.fencing_token().unwrap();
    assert_eq!(
        first.fencing_token().unwrap(),
        token,
        "stable within a hold"
    );
    first.release().unwrap();
    let second = redlock
        .lock("parity")
        .auto_release_time(std::time::Duration::from_millis(1500))
        .acquire()
        .unwrap();
    assert!(
        second.fencing_token().unwrap() > token,
        "greater for the next holder"
    );

    assert!(
        !second
            .lost_within(std::time::Duration::from_millis(50))
            .unwrap(),
        "held"
    );
    let _: () = redis::cmd("SET")
        .arg(lock_key("parity"))
        .arg("intruder")
        .query(&mut masters[0].connection())
        .unwrap();
    // Renewed every 500 ms: the next renewal finds the key replaced.
    assert!(
        second
            .lost_within(std::time::Duration::from_millis(500) + common::SLACK)
            .unwrap(),
        "the loss is told"
    );
    second.lost().unwrap();
    assert!(second.is_lost());
}
