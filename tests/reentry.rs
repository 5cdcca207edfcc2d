//! Re-entry: a task (or a thread, in blocking code) waiting without deadline for a lock it
//! already holds gets an error at once instead of waiting for itself forever; other tasks
//! still exclude each other.

mod common;

use std::time::Instant;

use configurable_redlock::{LockError, Redlock, blocking, redlock};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_task_asking_again_fails_at_once() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let outer = redlock.lock("nested").await.unwrap();

    let started = Instant::now();
    let inner = redlock.lock("nested").timeout(0).await;

    assert!(
        matches!(inner, Err(LockError::Reentered { ref name }) if name == "nested"),
        "{inner:?}"
    );
    // At once (the load margin at most): waiting forever on itself would never end.
    assert!(started.elapsed() < common::SLACK, "at once, no wait");
    assert!(!outer.is_lost());
    outer.release().await.unwrap();
    let again = redlock.lock("nested").timeout(-1).await;
    assert!(again.is_ok(), "free once released: {again:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_tasks_still_wait_their_turn() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let held = redlock.lock("shared").await.unwrap();

    let other = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("shared").timeout(5).await }
    });
    common::until_queued(&masters, "shared", 1).await;
    assert!(
        !other.is_finished(),
        "another task waits, it is not re-entry"
    );
    held.release().await.unwrap();

    let guard = other.await.unwrap().expect("the other task gets the lock");
    guard.release().await.unwrap();
}

#[test]
fn the_same_thread_asking_again_fails_at_once_in_blocking_code() {
    let masters = Masters::start(1);
    let redlock = blocking::Redlock::new(masters.urls()).unwrap();
    let outer = redlock.lock("sync-nested").acquire().unwrap();

    let inner = redlock.lock("sync-nested").acquire();
    assert!(
        matches!(inner, Err(LockError::Reentered { .. })),
        "{inner:?}"
    );

    let other_thread = std::thread::spawn({
        let redlock = redlock.clone();
        move || redlock.lock("sync-nested").timeout(-1).acquire().map(drop)
    });
    let refused = other_thread.join().unwrap();
    assert!(
        matches!(refused, Err(LockError::Timeout { .. })),
        "another thread is excluded: {refused:?}"
    );
    outer.release().unwrap();
}

#[redlock(name = "job:{id}", client = client)]
async fn outer_job(client: &Redlock, id: u64) -> Result<u64, LockError> {
    inner_job(client, id).await
}

#[redlock(name = "job:{id}", client = client)]
async fn inner_job(client: &Redlock, id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[redlock(name = "countdown", client = client)]
async fn countdown(client: &Redlock, n: u32) -> Result<u32, LockError> {
    if n == 0 {
        return Ok(0);
    }
    Box::pin(countdown(client, n - 1)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_and_recursive_annotated_functions_get_the_error() {
    let masters = Masters::start(1);
    let client = common::redlock(&masters);

    let started = Instant::now();
    assert!(matches!(
        outer_job(&client, 7).await,
        Err(LockError::Reentered { .. })
    ));
    assert!(matches!(
        countdown(&client, 3).await,
        Err(LockError::Reentered { .. })
    ));
    // Two calls that fail at once (the load margin at most); waiting on itself never ends.
    assert!(started.elapsed() < common::SLACK, "no waiting on itself");
    assert_eq!(
        inner_job(&client, 7).await.unwrap(),
        7,
        "the lock was released after the error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reentrant_request_nests_and_the_outermost_guard_releases() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let outer = redlock.lock("tree").await.unwrap();

    let started = Instant::now();
    let inner = redlock.lock("tree").reentrant(true).await.unwrap();
    assert!(started.elapsed() < common::SLACK, "no wait on itself");
    assert_eq!(inner.value(), outer.value(), "the same hold");
    assert_eq!(
        inner.fencing_token().await.unwrap(),
        outer.fencing_token().await.unwrap(),
        "one token per hold"
    );
    inner.release().await.unwrap();

    let other = common::redlock(&masters);
    let still_held = other.lock("tree").timeout(-1).await;
    assert!(
        matches!(still_held, Err(LockError::Timeout { .. })),
        "the outer guard still holds it: {still_held:?}"
    );
    outer.release().await.unwrap();
    let free = other.lock("tree").timeout(-1).await;
    assert!(free.is_ok(), "released by the outermost guard: {free:?}");
}

#[redlock(name = "walk", client = client, reentrant)]
async fn walk(client: &Redlock, depth: u32, other: &Redlock) -> Result<u32, LockError> {
    // Held all the way down: another client is refused at every depth.
    let refused = other.lock("walk").timeout(-1).await;
    assert!(
        matches!(refused, Err(LockError::Timeout { .. })),
        "{refused:?}"
    );
    if depth == 0 {
        return Ok(0);
    }
    Ok(1 + Box::pin(walk(client, depth - 1, other)).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reentrant_recursive_function_holds_the_lock_until_the_outermost_call_returns() {
    let masters = Masters::start(1);
    let (client, other) = (common::redlock(&masters), common::redlock(&masters));

    assert_eq!(walk(&client, 3, &other).await.unwrap(), 3);

    let free = other.lock("walk").timeout(-1).await;
    assert!(free.is_ok(), "released after the outermost call: {free:?}");
}
