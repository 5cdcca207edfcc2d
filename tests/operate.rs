//! An operator's view: `readiness` for health checks, `inspect` and `force_release` for a
//! stuck lock.

mod common;

use std::time::{Duration, Instant};

use configurable_redlock::{Redlock, lock_key};
use redlock_runtime::test_util::{Masters, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_tells_which_masters_vote_and_whether_a_lock_can_be_granted() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    let ready = redlock.readiness().await;
    assert!(ready.can_grant(), "{ready}");
    assert_eq!(ready.quorum, 2);
    for master in &ready.masters {
        let master = master.as_ref().expect("all up");
        assert_eq!(master.may_lose_locks, None, "durable: {ready}");
        assert_eq!(master.grace_left, None, "{ready}");
    }

    masters[0].kill();
    let ready = redlock.readiness().await;
    assert!(ready.can_grant(), "2 of 3 still vote: {ready}");
    assert!(ready.masters[0].is_err(), "{ready}");
    masters[1].kill();
    let ready = redlock.readiness().await;
    assert!(!ready.can_grant(), "1 of 3: {ready}");
    assert!(
        ready.to_string().starts_with("cannot grant locks now"),
        "{ready}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_shows_a_fresh_server_in_its_grace_until_it_ends() {
    let server = RedisServer::start_volatile();
    let redlock = Redlock::new([server.url()]).unwrap();
    let ready = redlock.readiness().await;
    assert!(!ready.can_grant(), "in its grace: {ready}");
    let master = ready.masters[0].as_ref().unwrap();
    assert!(
        master
            .may_lose_locks
            .as_deref()
            .is_some_and(|why| why.contains("append-only")),
        "{ready}"
    );
    let left = master.grace_left.expect("in its grace");
    assert!(
        left <= configurable_redlock::DEFAULT_AUTO_RELEASE_TIME,
        "{left:?}"
    );

    // The grace is the default TTL (10 s): then it votes, and a lock is granted at once.
    let started = Instant::now();
    let mut ready = redlock.readiness().await;
    while !ready.can_grant() && started.elapsed() < common::READY {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = redlock.readiness().await;
    }
    assert!(ready.can_grant(), "{ready}");
    let guard = redlock.lock("after-grace").timeout(-1).await.unwrap();
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inspect_shows_the_holder_its_ttl_and_its_waiters_on_each_master() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    let held = redlock.lock("inspected").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("inspected").timeout(0).await }
    });
    common::until_queued(&masters, "inspected", 1).await;

    // Waiters are counted in the statistics in the background, just after they begin.
    let mut state = redlock.inspect("inspected").await;
    let started = Instant::now();
    while state.waiting != Some(1) && started.elapsed() < common::READY {
        tokio::time::sleep(Duration::from_millis(20)).await;
        state = redlock.inspect("inspected").await;
    }
    assert_eq!(state.waiting, Some(1), "{state:?}");
    assert_eq!(state.key, lock_key("inspected"));
    assert_eq!(state.masters.len(), 3);
    for master in &state.masters {
        let master = master.as_ref().expect("all up");
        assert_eq!(master.holder.as_deref(), Some(held.value()), "{state:?}");
        let ttl = master.ttl.expect("expires");
        assert!(ttl <= Duration::from_secs(10) && !ttl.is_zero(), "{ttl:?}");
        assert_eq!(master.queued, 1, "{state:?}");
    }
    held.release().await.unwrap();
    waiter.await.unwrap().unwrap().release().await.unwrap();
    let state = redlock.inspect("inspected").await;
    for master in &state.masters {
        let master = master.as_ref().unwrap();
        assert_eq!(
            (master.holder.as_deref(), master.ttl, master.queued),
            (None, None, 0)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_release_frees_a_stuck_lock_and_hands_it_to_the_first_waiter() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    // A holder that died with a long TTL (a Python worker's, say): its key on every master.
    for server in masters.servers() {
        let _: () = redis::cmd("SET")
            .arg(lock_key("stuck"))
            .arg("dead-holder")
            .arg("PX")
            .arg(600_000)
            .query(&mut server.connection())
            .unwrap();
    }
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("stuck").timeout(0).await }
    });
    common::until_queued(&masters, "stuck", 1).await;

    let freed_at = Instant::now();
    assert_eq!(redlock.force_release("stuck").await.unwrap(), 3);
    let guard = tokio::time::timeout(common::READY, waiter)
        .await
        .expect("the waiter got the lock")
        .unwrap()
        .unwrap();
    // Handed over by the release's announcement, not found by a poll or the TTL.
    assert!(
        freed_at.elapsed() < common::SLACK * 2,
        "{:?}",
        freed_at.elapsed()
    );
    // Held on a quorum (a grant that a loaded machine confirmed too late on one master lapses
    // there after its 250 ms).
    let state = redlock.inspect("stuck").await;
    let holding = state
        .masters
        .iter()
        .filter(|master| master.as_ref().unwrap().holder.as_deref() == Some(guard.value()))
        .count();
    assert!(holding >= 2, "{state:?}");
    guard.release().await.unwrap();
    assert_eq!(
        redlock.force_release("stuck").await.unwrap(),
        0,
        "nothing held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_release_without_a_quorum_is_unavailable() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    let _held = redlock.lock("unreachable").await.unwrap();
    masters[0].kill();
    masters[1].kill();
    let err = redlock.force_release("unreachable").await.unwrap_err();
    assert!(
        matches!(err, configurable_redlock::LockError::Unavailable { .. }),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_counts_a_master_that_refuses_writes_as_not_ready() {
    // Too few replicas for `min-replicas-to-write`: it answers a PING, but grants nothing.
    let refusing = RedisServer::start_with_args(&["--min-replicas-to-write", "1"]);
    let redlock = Redlock::new([refusing.url()]).unwrap();
    let ready = redlock.readiness().await;
    assert!(!ready.can_grant(), "{ready}");
    assert!(ready.to_string().contains("NOREPLICAS"), "{ready}");

    // A replica listed as a master: not ready, and a misconfiguration (only Sentinel can
    // lead to the new master).
    let master = RedisServer::start();
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    replica.wait_until_synced();
    let redlock = Redlock::new([replica.url()]).unwrap();
    let ready = redlock.readiness().await;
    assert!(!ready.can_grant(), "{ready}");
    let failure = ready.masters[0].as_ref().unwrap_err();
    assert!(failure.misconfigured, "{ready}");
    let started = Instant::now();
    let err = redlock.lock("on-a-replica").timeout(0).await.unwrap_err();
    assert!(
        started.elapsed() < common::SLACK * 2,
        "refused at once, not after the outage timeout: {:?}",
        started.elapsed()
    );
    assert!(err.to_string().contains("read-only replica"), "{err}");
}
