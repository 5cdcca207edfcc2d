//! Fencing tokens: strictly increasing across successive holders of a name, also while a
//! minority of masters is killed and restarted with persistence, and after a majority restarted
//! empty (a lost counter starts again from the master's clock).

mod common;

use std::time::Duration;

use configurable_redlock::LockError;
use redlock_runtime::test_util::{Masters, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_across_holders_on_one_master() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let mut last = 0;
    for _ in 0..200 {
        let guard = redlock.lock("ledger").timeout(-1).await.unwrap();
        let token = guard.fencing_token().await.unwrap();
        assert_eq!(
            guard.fencing_token().await.unwrap(),
            token,
            "stable within a hold"
        );
        assert!(token > last, "{token} after {last}");
        last = token;
        guard.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_stay_monotonic_while_a_minority_is_killed_and_restarted() {
    // Durable servers (the harness's default): `appendfsync always`.
    let servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let redlock = configurable_redlock::Redlock::with_config(configurable_redlock::Config {
        // `appendfsync always` waits for the disk, which a busy shared machine can hold up
        // for hundreds of milliseconds. (A killed master refuses at once: no time is lost.)
        master_timeout: Duration::from_secs(2),
        ..configurable_redlock::Config::new(&urls)
    })
    .unwrap();

    // Monotonicity is the property; a round whose token or release a busy machine cannot
    // serve in time (`Unavailable`) is skipped, and the skips are bounded below.
    let (mut last, mut checked, mut skipped) = (0, 0, 0);
    for round in 0..2_000 {
        if round % 250 == 125 {
            servers[(round / 250) % 3].kill();
        }
        if round % 250 == 249 {
            servers[(round / 250) % 3].restart();
        }
        let guard = redlock
            .lock("ledger")
            .auto_release_time(Duration::from_secs(2))
            .timeout(5)
            .await
            .unwrap();
        match guard.fencing_token().await {
            Ok(token) => {
                assert!(token > last, "round {round}: token {token} after {last}");
                last = token;
                checked += 1;
            }
            Err(LockError::Unavailable { .. }) => skipped += 1,
            Err(other) => panic!("round {round}: {other}"),
        }
        match guard.release().await {
            Ok(()) | Err(LockError::Unavailable { .. }) => {}
            Err(other) => panic!("round {round}: {other}"),
        }
    }
    assert!(
        checked >= 1_950,
        "{checked} tokens checked, {skipped} skipped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_increase_after_a_majority_restarted_empty() {
    let masters = Masters::start_volatile(3);
    let redlock = common::redlock(&masters);
    let take = || async {
        // Waits out the restart grace of the fresh (or restarted) masters: one TTL.
        let guard = redlock
            .lock("ledger")
            .auto_release_time(Duration::from_secs(1))
            .timeout(10)
            .await
            .unwrap();
        let token = guard.fencing_token().await.unwrap();
        guard.release().await.unwrap();
        token
    };
    let mut before = 0;
    for _ in 0..5 {
        before = take().await;
    }
    for index in 0..2 {
        masters[index].kill();
        masters[index].restart(); // empty: the counter is gone on a majority
    }
    // The master that kept its counter is unreachable: the token comes from the restarted
    // majority alone.
    masters[2].pause();
    let after = take().await;
    masters[2].resume();
    assert!(after > before, "token {after} after {before}");
    assert!(take().await > after);
}
