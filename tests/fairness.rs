//! Fair handoff: with 4 workers looping on one lock, a worker that releases and comes back
//! overtakes a waiter for `OVERTAKE_FOR` at most, so every worker gets its share.

mod common;

use std::time::{Duration, Instant};

use redlock_runtime::test_util::Masters;

/// Jain's fairness index: 1.0 when all shares are equal, 1/n when one worker gets everything.
fn jain(counts: &[u64]) -> f64 {
    let sum: f64 = counts.iter().map(|&c| c as f64).sum();
    let squares: f64 = counts.iter().map(|&c| (c as f64).powi(2)).sum();
    sum * sum / (counts.len() as f64 * squares)
}

async fn run_workers(masters: &Masters, hold: Duration, run_for: Duration) -> (Vec<u64>, Duration) {
    let stop_at = Instant::now() + run_for;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            // A client per worker: separate connections, as separate processes would have.
            let redlock = common::redlock(masters);
            tokio::spawn(async move {
                let (mut count, mut longest_wait) = (0, Duration::ZERO);
                while Instant::now() < stop_at {
                    let asked = Instant::now();
                    let guard = redlock.lock("fair").timeout(5).await.unwrap();
                    longest_wait = longest_wait.max(asked.elapsed());
                    tokio::time::sleep(hold).await;
                    guard.release().await.unwrap();
                    count += 1;
                }
                (count, longest_wait)
            })
        })
        .collect();
    let (mut counts, mut longest) = (Vec::new(), Duration::ZERO);
    for worker in workers {
        let (count, wait) = worker.await.unwrap();
        counts.push(count);
        longest = longest.max(wait);
    }
    (counts, longest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_share_one_lock_fairly() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let (counts, longest_wait) =
            run_workers(&masters, Duration::from_millis(5), Duration::from_secs(2)).await;

        let index = jain(&counts);
        assert!(
            index >= 0.95,
            "{count} masters: Jain index {index:.3} for {counts:?}"
        );
        let fair_share = counts.iter().sum::<u64>() / 4;
        assert!(
            counts.iter().all(|&c| c * 2 >= fair_share),
            "{count} masters: a starved worker in {counts:?}"
        );
        // Behind three others with 5 ms holds: a wait of a few holds (plus the load margin),
        // never the 1 s heartbeat of a waiter that missed its turn.
        assert!(
            longest_wait < Duration::from_millis(3 * 5) + common::SLACK,
            "{count} masters: longest wait {longest_wait:?}"
        );
    }
}

/// Without holds, a looping worker takes the lock back while the head of the queue may still
/// be overtaken (`OVERTAKE_FOR`), and then hands it over: every worker gets its share, and no
/// wait is longer than that bound per waiter ahead, plus the handoffs (and the load margin).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_workers_without_holds_share_one_lock_and_wait_a_bounded_time() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let (counts, longest_wait) =
            run_workers(&masters, Duration::ZERO, Duration::from_secs(2)).await;

        let index = jain(&counts);
        assert!(
            index >= 0.95,
            "{count} masters: Jain index {index:.3} for {counts:?}"
        );
        let bound = configurable_redlock::OVERTAKE_FOR * 3 + common::SLACK;
        assert!(
            longest_wait < bound,
            "{count} masters: longest wait {longest_wait:?} for {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_releasing_client_cannot_barge_ahead_of_a_waiter_that_waited_long_enough() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let (releaser, waiting) = (common::redlock(&masters), common::redlock(&masters));
        let held = releaser.lock("turn").await.unwrap();
        let waiter = tokio::spawn(async move { waiting.lock("turn").timeout(5).await });
        common::until_queued(&masters, "turn", 1).await;
        common::until_head_cannot_be_overtaken(&masters, "turn").await;

        held.release().await.unwrap();
        let barge = releaser.lock("turn").timeout(-1).await;

        assert!(
            barge.is_err(),
            "{count} masters: the released lock went to the waiter, not back: {barge:?}"
        );
        let guard = waiter.await.unwrap().expect("the waiter gets its turn");
        guard.release().await.unwrap();
    }
}

/// A Python waiter that crashed stays counted in the waiting counter for good, so our fleet
/// sees a foreign waiter that never takes its turn. Each unused window doubles the rounds
/// between windows (up to 64), so the cost fades: 400 back-to-back acquisitions of two
/// clients take a few windows of 250 ms, where a window every round would take 50 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_foreign_waiter_costs_only_a_few_windows() {
    let masters = Masters::start(1);
    let _: () = redis::cmd("INCR")
        .arg(configurable_redlock::waiting_key("stale"))
        .query(&mut masters[0].connection())
        .unwrap();
    let started = Instant::now();
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let redlock = common::redlock(&masters);
            tokio::spawn(async move {
                for _ in 0..200 {
                    let guard = redlock.lock("stale").timeout(30).await.unwrap();
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    // About 8 unused windows (2 s), plus the acquisitions themselves; a bound far below the
    // 50 s of a window every round, with room for a loaded machine.
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(20),
        "400 acquisitions took {took:?}"
    );
}
