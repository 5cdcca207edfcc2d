//! Faults around one holder: a holder process killed, masters restarted without persistence,
//! Redis unreachable for a whole wait.

mod common;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use configurable_redlock::{LockError, lock_key};
use redlock_runtime::test_util::Masters;

const HOLDER_ENV: &str = "REDLOCK_FAULTS_HOLDER_URLS";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_holder_is_succeeded_only_after_its_ttl() {
    if let Ok(urls) = std::env::var(HOLDER_ENV) {
        // The holder process: take the lock (renewed every 500 ms), say so, hold until killed.
        let redlock = configurable_redlock::Redlock::new(urls.split(',')).unwrap();
        let _guard = redlock
            .lock("killed-holder")
            .auto_release_time(Duration::from_millis(1500))
            .await
            .unwrap();
        println!("holding");
        tokio::time::sleep(Duration::from_secs(60)).await;
        panic!("the holder should have been killed");
    }
    let masters = Masters::start(3);
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_killed_holder_is_succeeded_only_after_its_ttl",
            "--nocapture",
        ])
        .env(HOLDER_ENV, masters.urls().join(","))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // libtest prints its own lines first.
    let holding = BufReader::new(holder.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .any(|line| line == "holding");
    assert!(holding, "the holder process took the lock");
    tokio::time::sleep(Duration::from_millis(700)).await; // at least one renewal happened

    holder.kill().unwrap(); // SIGKILL: no release, no more renewals
    holder.wait().unwrap();
    // What the dead holder left: the key expires on each master after its PTTL. A quorum (2 of
    // 3) is free once the second-soonest has expired. (Read rather than assumed: a renewal
    // that ran late on a loaded machine leaves less than the nominal 1.0-1.5 s.)
    let reads_began = Instant::now();
    let mut ttls: Vec<i64> = (0..3)
        .map(|index| {
            redis::cmd("PTTL")
                .arg(lock_key("killed-holder"))
                .query(&mut masters[index].connection())
                .unwrap()
        })
        .collect();
    let read_at = Instant::now();
    ttls.sort_unstable();
    assert!(
        ttls[1] > 0,
        "the dead holder's key is on a quorum: {ttls:?}"
    );
    let quorum_free_in = Duration::from_millis(ttls[1] as u64);
    let guard = common::redlock(&masters)
        .lock("killed-holder")
        .timeout(5)
        .await
        .unwrap();
    let acquired_at = Instant::now();

    // Each key expired no sooner than its PTTL after the reads began, and no later than its
    // PTTL (+1 ms of rounding) after they ended.
    let waited = acquired_at - reads_began;
    assert!(
        waited >= quorum_free_in,
        "taken over before the TTL ran out: {waited:?} < {quorum_free_in:?}"
    );
    // The fallback timer fires 1 ms after the PTTL: promptly, plus the load margin; a waiter
    // that missed it would sleep to its 1 s heartbeat.
    let waited = acquired_at - read_at;
    assert!(
        waited <= quorum_free_in + common::SLACK,
        "taken over long after the TTL: {waited:?} for {quorum_free_in:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_restarted_without_persistence_loses_the_lock_and_the_holder_learns_it() {
    // What Redlock guarantees here is nothing more than the holder being told: a master that
    // restarts empty forgets the lock, and once a majority did, another client can take it.
    // Use persistence (appendfsync always), or keep a restarted master out for one TTL (the
    // spec's delayed restart), to keep mutual exclusion through restarts.
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    let held = redlock
        .lock("amnesia")
        // Renewed every second: the holder learns it at the next renewal (plus the load
        // margin), before its validity (3 s) could run out.
        .auto_release_time(Duration::from_secs(3))
        .await
        .unwrap();

    for index in 0..2 {
        masters[index].kill();
        masters[index].restart(); // empty: no persistence
    }
    let restarted_at = Instant::now();
    let other = redlock.lock("amnesia").timeout(2).await;
    assert!(
        other.is_ok(),
        "the restarted majority grants the lock again: {other:?}"
    );

    tokio::time::timeout(Duration::from_secs(3), held.lost())
        .await
        .expect("the first holder learns it lost the lock");
    let told_in = restarted_at.elapsed();
    assert!(
        told_in <= Duration::from_secs(1) + common::SLACK,
        "within one renewal interval (1 s): {told_in:?}"
    );
    assert!(held.is_lost());
    let mut raw = masters[2].connection();
    let survivor: Option<String> = redis::cmd("GET")
        .arg(lock_key("amnesia"))
        .query(&mut raw)
        .unwrap();
    assert_eq!(
        survivor.as_deref(),
        Some(held.value()),
        "the old value survives only on the master that never restarted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_for_the_whole_wait_is_unavailable_at_the_deadline() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    redlock.lock("warm").await.unwrap().release().await.unwrap();
    for index in 0..3 {
        masters[index].kill();
    }

    let started = Instant::now();
    let err = redlock.lock("unreachable").timeout(1).await.unwrap_err();
    let waited = started.elapsed();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    // The decision is taken once a quorum is impossible: at least a majority is listed.
    assert!(failures.len() >= 2, "the failing masters are listed: {err}");
    assert!(
        waited >= Duration::from_millis(1_000),
        "it waits for the deadline: {waited:?}"
    );
    // One attempt round (at most the per-master timeout, 100 ms) at the deadline, plus the
    // load margin: no stall past it (a backoff pause or a connect timeout would add up to 1 s).
    assert!(
        waited < Duration::from_millis(1_000 + 100) + common::SLACK,
        "no stall past the deadline: {waited:?}"
    );
}
