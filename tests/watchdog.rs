//! The watchdog renews a held lock, and the guard learns at once when the lock is lost.

mod common;

use std::time::{Duration, Instant};

use common::{get, redlock};
use configurable_redlock::{LockError, Redlock, lock_key};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watchdog_keeps_a_lock_for_three_times_its_ttl() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("renewed")
        // Renewed every 333 ms: a renewal may run 600 ms late on a loaded machine and still
        // keep the lock.
        .auto_release_time(Duration::from_secs(1))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_secs(3)).await;

    assert!(!guard.is_lost());
    for index in 0..3 {
        assert_eq!(
            get(&masters, index, &lock_key("renewed")).as_deref(),
            Some(guard.value())
        );
    }
    let other = redlock.lock("renewed").timeout(-1).await;
    assert!(
        matches!(other, Err(LockError::Timeout { .. })),
        "still held: {other:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auto_extend_the_lock_expires_with_its_ttl() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("fixed")
        .auto_release_time(Duration::from_millis(300))
        .auto_extend(false)
        .await
        .unwrap();

    // Lost when the validity (the TTL less the drift) runs out; the key expires with the TTL.
    tokio::time::timeout(Duration::from_millis(300) + common::SLACK, guard.lost())
        .await
        .expect("lost with its TTL");
    assert!(guard.is_lost());
    let expired = common::eventually(common::SLACK, || {
        get(&masters, 0, &lock_key("fixed")).is_none()
    })
    .await;
    assert!(expired, "the key expires with its TTL");
    let started = Instant::now();
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    // Known to be lost: no round of retries (the load margin at most).
    assert!(started.elapsed() < common::SLACK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_key_is_detected_within_one_renewal_interval() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("stolen")
        // Renewed every 500 ms: detection by the next renewal (plus the load margin) comes
        // before the validity (1.5 s) could run out.
        .auto_release_time(Duration::from_millis(1500))
        .await
        .unwrap();
    // Another client overwrites the key on a majority (e.g. after a failover).
    for index in 0..2 {
        let _: () = redis::cmd("SET")
            .arg(lock_key("stolen"))
            .arg("intruder")
            .query(&mut masters[index].connection())
            .unwrap();
    }
    let stolen_at = Instant::now();

    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("lost() resolves");

    let detected_in = stolen_at.elapsed();
    assert!(
        detected_in <= Duration::from_millis(500) + common::SLACK,
        "one renewal interval (500 ms): {detected_in:?}"
    );
    assert!(guard.is_lost());
    let started = Instant::now();
    assert!(matches!(guard.release().await, Err(LockError::Lost { .. })));
    assert!(
        started.elapsed() < common::SLACK,
        "release of a lost lock is one round trip"
    );
    assert_eq!(
        get(&masters, 0, &lock_key("stolen")).as_deref(),
        Some("intruder"),
        "never deletes another holder's key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_that_cannot_reach_a_quorum_loses_the_lock_when_validity_ends() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("cut-off")
        .auto_release_time(Duration::from_millis(400))
        .await
        .unwrap();
    let valid_until = guard.valid_until();
    masters[0].kill();
    masters[1].kill();

    tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("lost() resolves");

    assert!(
        Instant::now() >= valid_until,
        "not before its validity ends"
    );
    assert!(guard.is_lost());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_never_resolves_while_the_lock_is_held() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("kept")
        .auto_release_time(Duration::from_millis(200))
        .await
        .unwrap();

    let resolved = tokio::time::timeout(Duration::from_millis(700), guard.lost()).await;

    assert!(resolved.is_err(), "the watchdog kept it");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_guards_are_renewed_through_a_paused_minority_and_none_is_lost() {
    let masters = Masters::start(3);
    // The default bound on a call to a master (200 ms).
    let redlock = Redlock::new(masters.urls()).unwrap();
    // Renewed every 667 ms, in batches: a renewal may run a second late on a loaded machine
    // and still keep its lock.
    let ttl = Duration::from_secs(2);
    let names: Vec<String> = (0..2000).map(|n| format!("many:{n}")).collect();
    let mut guards = Vec::new();
    // Taken 250 at a time, as a worker takes its jobs' locks: a burst of 2,000 at once would
    // starve the first renewals of a debug build on a loaded machine.
    for chunk in names.chunks(250) {
        let redlock = &redlock;
        let taken = futures_util::future::join_all(chunk.iter().map(|name| async move {
            redlock
                .lock(name.as_str())
                .auto_release_time(ttl)
                .timeout(30)
                .await
        }))
        .await;
        for guard in taken {
            guards.push(guard.expect("every lock taken"));
        }
    }

    // Master 2 stops answering for two TTLs: every renewal meanwhile is decided by the other
    // two, and none may wait for it.
    masters[2].pause();
    tokio::time::sleep(2 * ttl).await;
    masters[2].resume();
    tokio::time::sleep(ttl).await;

    let lost = guards.iter().filter(|guard| guard.is_lost()).count();
    assert_eq!(lost, 0, "guards lost of {}", guards.len());
    for index in 0..2 {
        let keys: Vec<String> = names.iter().map(|name| lock_key(name)).collect();
        let values: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query(&mut masters[index].connection())
            .unwrap();
        let kept = guards
            .iter()
            .zip(&values)
            .filter(|(guard, value)| value.as_deref() == Some(guard.value()))
            .count();
        assert_eq!(kept, guards.len(), "locks kept on master {index}");
    }
    for guard in guards {
        guard.release().await.unwrap();
    }
}
