//! `min_hold`: a lock released early stays held until its minimum hold has passed, so that
//! the replicas of a scheduled job run each tick once.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use configurable_redlock::{LockError, Redlock, lock_key, redlock};
use redlock_runtime::test_util::{Masters, RedisServer};

/// The key's remaining TTL on one master, in ms (negative: no key, or no expiry).
fn pttl(masters: &Masters, index: usize, key: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(key)
        .query(&mut masters[index].connection())
        .expect("PTTL")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_before_the_minimum_hold_keeps_the_lock_until_then() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let holder = common::redlock(&masters);
        let other = common::redlock(&masters);
        let min_hold = Duration::from_secs(2);
        for dropped in [false, true] {
            let name = format!("held-at-least-{dropped}");
            let guard = holder
                .lock(&name)
                .timeout(-1)
                .min_hold(min_hold)
                .await
                .unwrap();
            let acquired = Instant::now();
            if dropped {
                drop(guard);
            } else {
                guard.release().await.unwrap();
            }
            // Kept for what is left of the 2 s, on every master: not deleted, not left for the
            // 10 s TTL.
            let key = lock_key(&name);
            let kept = common::eventually(common::READY, || {
                (0..count).all(|index| {
                    let left = pttl(&masters, index, &key);
                    left > 0 && left <= 2_000
                })
            })
            .await;
            assert!(
                kept,
                "{count} masters, dropped {dropped}: kept for the rest of 2 s"
            );
            let busy = other.lock(&name).timeout(-1).await.unwrap_err();
            assert!(matches!(busy, LockError::Timeout { .. }), "{busy}");
            // Free once the 2 s from the acquisition have passed (Redis expires it then).
            let waited = other.lock(&name).timeout(10).await.unwrap();
            assert!(
                acquired.elapsed() >= min_hold,
                "free only after the minimum hold: {:?}",
                acquired.elapsed()
            );
            waited.release().await.unwrap();
        }
        // A hold longer than its minimum is released at once.
        let guard = holder
            .lock("long-job")
            .min_hold(Duration::from_millis(100))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        guard.release().await.unwrap();
        let next = other.lock("long-job").timeout(-1).await;
        assert!(next.is_ok(), "{next:?}");
    }
}

#[redlock(name = "tick-job", timeout = -1, silent, min_hold = 1.5, client = client)]
async fn tick_job(client: &Redlock, runs: &RedisServer) -> Result<(), LockError> {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let _: () = redis::cmd("RPUSH")
        .arg("runs")
        .arg(at)
        .query(&mut runs.connection())
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_of_a_scheduled_job_run_each_tick_once_with_a_master_paused() {
    // 3 replicas, each with its own 2 s interval started at a random offset within 1 s, run
    // a 50 ms job under `timeout = -1, silent, min_hold = 1.5`; one master of 3 is paused for
    // 4 of the 8 ticks. Each tick window (2 s, from the first replica's first tick) must have
    // exactly one run: none twice, none nowhere.
    let masters = Masters::start(3);
    let runs = RedisServer::start();
    let start = Instant::now() + Duration::from_millis(500);
    let epoch_ms = |at: Instant| {
        let since = at.saturating_duration_since(Instant::now());
        (std::time::SystemTime::now() + since)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let start_ms = epoch_ms(start);
    let ticks = 8;
    let runs = Arc::new(runs);
    // Random offsets within 1 s, different in each run (printed on failure).
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let mut offsets: Vec<u64> = (1..=3u64)
        .map(|replica| (seed / 1_000 * replica * 7_919) % 1_000)
        .collect();
    offsets.sort_unstable();
    let replicas: Vec<_> = offsets
        .iter()
        .map(|&offset| {
            let (client, runs) = (common::redlock(&masters), Arc::clone(&runs));
            tokio::spawn(async move {
                let first = start + Duration::from_millis(offset);
                let mut interval = tokio::time::interval_at(first.into(), Duration::from_secs(2));
                for _ in 0..ticks {
                    interval.tick().await;
                    tick_job(&client, &runs).await.unwrap();
                }
            })
        })
        .collect();
    tokio::time::sleep_until((start + Duration::from_secs(4)).into()).await;
    masters[2].pause();
    tokio::time::sleep(Duration::from_secs(8)).await;
    masters[2].resume();
    for replica in replicas {
        replica.await.unwrap();
    }
    let recorded: Vec<u64> = redis::cmd("LRANGE")
        .arg("runs")
        .arg(0)
        .arg(-1)
        .query(&mut runs.connection())
        .unwrap();
    let mut per_window = vec![0; ticks];
    for at in &recorded {
        let window = (at.saturating_sub(start_ms) / 2_000) as usize;
        assert!(
            window < ticks,
            "a run outside the {ticks} windows: {recorded:?}"
        );
        per_window[window] += 1;
    }
    assert_eq!(
        per_window,
        vec![1; ticks],
        "runs per tick window (offsets {offsets:?} ms)"
    );
}
