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
    let killed_at = Instant::now();
    let guard = common::redlock(&masters)
        .lock("killed-holder")
        .timeout(5)
        .await
        .unwrap();
    let waited = killed_at.elapsed();

    // The last renewal left between 1.0 s and 1.5 s of TTL.
    assert!(
        waited >= Duration::from_millis(900),
        "taken over before the TTL ran out: {waited:?}"
    );
    assert!(
        waited <= Duration::from_millis(2_000),
        "taken over long after the TTL: {waited:?}"
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
        .auto_release_time(Duration::from_millis(1200))
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

    tokio::time::timeout(Duration::from_secs(2), held.lost())
        .await
        .expect("the first holder learns it lost the lock");
    let told_in = restarted_at.elapsed();
    assert!(
        told_in <= Duration::from_millis(400 + 300),
        "within one renewal interval (400 ms): {told_in:?}"
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
    assert!(
        waited < Duration::from_millis(1_400),
        "no stall past the deadline: {waited:?}"
    );
}
