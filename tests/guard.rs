//! The guard: release, extend, drop, panic, cancellation, and a lock that is no longer ours.

mod common;

use std::{
    future::IntoFuture,
    time::{Duration, Instant},
};

use common::{eventually, get, redlock};
use configurable_redlock::{LockError, lock_key, waiting_key};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_guard_releases_in_the_background_at_once() {
    let masters = Masters::start(3);
    // A long per-master timeout: a `Drop` that waited for a paused master would block 10 s.
    let redlock = common::redlock_with_master_timeout(&masters, Duration::from_secs(10));
    let guard = redlock.lock("dropped").await.unwrap();
    masters[0].pause();

    let started = Instant::now();
    drop(guard);
    assert!(
        started.elapsed() < common::SLACK,
        "Drop must not block: {:?}",
        started.elapsed()
    );
    masters[0].resume();

    // At once in the background: round trips, plus the load margin.
    let freed = eventually(common::SLACK * 2, || {
        (0..3).all(|index| get(&masters, index, &lock_key("dropped")).is_none())
    })
    .await;
    assert!(freed, "the key is deleted on every master");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_return_with_question_mark_releases() {
    async fn job(redlock: &configurable_redlock::Redlock) -> Result<(), LockError> {
        let _guard = redlock.lock("early").await?;
        Err(LockError::Lost {
            name: "simulated failure".into(),
        })?;
        unreachable!("the `?` above returns");
    }
    let masters = Masters::start(1);
    let redlock = redlock(&masters);

    assert!(job(&redlock).await.is_err());
    let next = redlock.lock("early").timeout(1).await;
    assert!(next.is_ok(), "released by the early return: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_critical_section_releases_and_propagates() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);

    let task = tokio::spawn({
        let redlock = redlock.clone();
        async move {
            let _guard = redlock.lock("panics").await.unwrap();
            panic!("boom inside the lock");
        }
    });
    let joined = task.await.unwrap_err();
    assert!(joined.is_panic(), "the panic propagates to the caller");

    let next = redlock.lock("panics").timeout(1).await;
    assert!(next.is_ok(), "released by unwinding: {next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_short_of_a_quorum_names_the_master_down_and_the_one_not_ours() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let guard = redlock.lock("half-stolen").await.unwrap();
    let _: () = redis::cmd("SET")
        .arg(lock_key("half-stolen"))
        .arg("someone-else")
        .query(&mut masters[1].connection())
        .unwrap();
    masters[0].kill();

    let err = guard.release().await.unwrap_err();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    let named: Vec<&str> = failures
        .iter()
        .map(|failure| failure.master.as_str())
        .collect();
    assert_eq!(named, [masters[0].url(), masters[1].url()], "{err}");
    assert!(err.to_string().contains("not ours there"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releasing_a_lock_no_longer_ours_is_lost_within_a_round_trip() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let guard = redlock.lock("stolen").await.unwrap();
    for index in 0..2 {
        let _: () = redis::cmd("SET")
            .arg(lock_key("stolen"))
            .arg("someone-else")
            .query(&mut masters[index].connection())
            .unwrap();
    }

    let started = Instant::now();
    let err = guard.release().await.unwrap_err();
    assert!(
        matches!(err, LockError::Lost { ref name } if name == "stolen"),
        "{err}"
    );
    // One round trip (plus the load margin), never seconds of retries.
    assert!(started.elapsed() < common::SLACK, "{:?}", started.elapsed());
    assert_eq!(
        get(&masters, 0, &lock_key("stolen")).as_deref(),
        Some("someone-else"),
        "another holder's key is never deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_renews_the_ttl_and_reports_a_lost_lock() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("extended")
        .auto_release_time(Duration::from_millis(1200))
        .auto_extend(false)
        .await
        .unwrap();

    // Extended every 500 ms: 700 ms of margin for a late timer on a loaded machine.
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        guard.extend().await.unwrap();
        assert!(!guard.is_lost());
    }
    // 1.5 s after acquiring a 1.2 s lock, it is still held thanks to the extensions.
    assert_eq!(
        get(&masters, 0, &lock_key("extended")).as_deref(),
        Some(guard.value())
    );

    let _: () = redis::cmd("DEL")
        .arg(lock_key("extended"))
        .query(&mut masters[0].connection())
        .unwrap();
    let err = guard.extend().await.unwrap_err();
    assert!(matches!(err, LockError::Lost { .. }), "{err}");
    assert!(guard.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validity_runs_out_without_extension() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("short")
        .auto_release_time(Duration::from_secs(1))
        .auto_extend(false)
        .await
        .unwrap();
    let acquired = Instant::now();
    assert!(!guard.is_lost());
    tokio::time::timeout(Duration::from_secs(1) + common::SLACK, guard.lost())
        .await
        .expect("lost when its validity runs out");
    assert!(guard.is_lost());
    assert!(
        acquired.elapsed() >= Duration::from_millis(900),
        "not before its validity (1 s less the drift) ran out: {:?}",
        acquired.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_wait_restores_the_counter_and_leaves_nothing_behind() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("cancelled").await.unwrap();

    // Another client waits (the same task waiting forever would be re-entry), counted and
    // queued, and is cancelled mid-wait.
    let waiter = tokio::spawn({
        let waiter = common::redlock(&masters);
        async move { waiter.lock("cancelled").await.map(drop) }
    });
    let counter = waiting_key("cancelled");
    let counted = eventually(common::READY, || {
        get(&masters, 0, &counter).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the waiter is counted");
    common::until_queued(&masters, "cancelled", 1).await;
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());

    // Uncounted in the background at once: a round trip, plus the load margin.
    let restored = eventually(common::SLACK * 2, || {
        get(&masters, 0, &counter).as_deref() == Some("0")
    })
    .await;
    assert!(
        restored,
        "counter back to 0: {:?}",
        get(&masters, 0, &counter)
    );
    assert_eq!(
        get(&masters, 0, &lock_key("cancelled")).as_deref(),
        Some(held.value())
    );
    held.release().await.unwrap();
    assert_eq!(get(&masters, 0, &lock_key("cancelled")), None);
    // No queue place, no live-waiter entry: only the Python library's statistics keys remain
    // (the queue place is left in the background, at once).
    let keys = || {
        let mut keys: Vec<String> = redis::cmd("KEYS")
            .arg("*")
            .query(&mut masters[0].connection())
            .unwrap();
        keys.sort();
        keys
    };
    let expected = [
        "ConfigurableLockKeys",
        "Inserted.Waiting.ConfigurableLock.cancelled",
        "Waiting.ConfigurableLock.cancelled",
    ];
    let clean = eventually(common::SLACK * 2, || keys() == expected).await;
    assert!(clean, "{:?}", keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_waiter_restores_the_counter() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let _held = redlock.lock("waiter-panics").await.unwrap();

    let (panic_now, told) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn({
        let redlock = redlock.clone();
        async move {
            let wait = redlock.lock("waiter-panics").timeout(30).into_future();
            tokio::select! {
                outcome = wait => panic!("the wait ended: {outcome:?}"),
                // The wait is still alive here: unwinding drops it.
                _ = told => panic!("the waiter panics mid-wait"),
            }
        }
    });
    let counter = waiting_key("waiter-panics");
    let counted = eventually(common::READY, || {
        get(&masters, 0, &counter).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the waiter is counted");
    panic_now.send(()).unwrap();
    assert!(task.await.unwrap_err().is_panic());

    // Uncounted in the background at once: a round trip, plus the load margin.
    let restored = eventually(common::SLACK * 2, || {
        get(&masters, 0, &counter).as_deref() == Some("0")
    })
    .await;
    assert!(
        restored,
        "counter back to 0: {:?}",
        get(&masters, 0, &counter)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_dropped_then_retaken_at_once_is_free() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    for round in 0..200 {
        let guard = redlock.lock("again").timeout(-1).await;
        assert!(guard.is_ok(), "round {round}: {guard:?}");
        drop(guard); // the background release goes before this process's next attempt
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_mid_attempt_leaves_no_value_behind() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        // A per-master timeout far beyond the cancellation: the attempt is in flight when
        // dropped.
        let redlock = common::redlock_with_master_timeout(&masters, Duration::from_secs(10));
        common::warm_up(&redlock).await;
        for server in masters.servers() {
            server.pause();
        }
        // Written to the paused masters' sockets; its reply never read.
        let request = redlock
            .lock("cut")
            .auto_release_time(Duration::from_secs(60));
        let attempt = tokio::time::timeout(Duration::from_millis(50), request).await;
        assert!(
            attempt.is_err(),
            "{count} masters: the attempt was not cut short"
        );
        for server in masters.servers() {
            server.resume();
        }
        // The masters run the `SET` when they resume, then its undo, issued behind it (not
        // the key's expiry, a minute away).
        let undone = eventually(common::SLACK * 4, || {
            (0..count).all(|index| get(&masters, index, &lock_key("cut")).is_none())
        })
        .await;
        let left: Vec<_> = (0..count)
            .map(|index| get(&masters, index, &lock_key("cut")))
            .collect();
        assert!(undone, "{count} masters: values left behind: {left:?}");
    }
}
