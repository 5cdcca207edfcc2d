//! Waiting forever (`timeout = 0`, the default) is a promise about contention, not about
//! outages: failures that waiting cannot fix fail at once, and a quorum that stays unreachable
//! ends the wait after `Config::outage_timeout`.

mod common;

use std::time::{Duration, Instant};

use configurable_redlock::{Config, LockError, Redlock};
use redlock_runtime::test_util::{Masters, RedisServer};

/// Waits forever for `name` and expects an `Unavailable` whose only failure is misconfigured,
/// reported at once (one connection attempt, plus the load margin), naming `what`.
async fn fails_at_once(url: &str, what: &str) {
    let redlock = Redlock::new([url]).unwrap();
    let started = Instant::now();
    let err = redlock.lock("misconfigured").timeout(0).await.unwrap_err();
    let elapsed = started.elapsed();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{what}: {err}")
    };
    assert_eq!(failures.len(), 1, "{err}");
    assert!(failures[0].misconfigured, "{what}: {err}");
    // The client's own error underneath, for callers that inspect it.
    let source = std::error::Error::source(&failures[0]).expect("the error underneath");
    assert!(
        source.downcast_ref::<redis::RedisError>().is_some(),
        "{what}: {source:?}"
    );
    assert!(
        err.to_string()
            .to_lowercase()
            .contains(&what.to_lowercase()),
        "the error names the cause ({what}): {err}"
    );
    // The outage timeout (30 s) would be the other way out.
    assert!(elapsed < common::SLACK * 2, "{what}: took {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_at_once() {
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw"]);
    let url = format!("redis://:wrong-pw@127.0.0.1:{}", server.port());
    fails_at_once(&url, "authentication failed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_password_fails_at_once() {
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw"]);
    let url = format!("redis://127.0.0.1:{}", server.port());
    fails_at_once(&url, "NOAUTH").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_that_forbids_the_lock_commands_fails_at_once() {
    // A user that may connect but not write.
    let server = RedisServer::start_with_args(&[
        "--user",
        "reader",
        "on",
        ">reader-pw",
        "~*",
        "&*",
        "+@all",
        "-@write",
        "-@scripting",
    ]);
    let url = format!("redis://reader:reader-pw@127.0.0.1:{}", server.port());
    fails_at_once(&url, "no permissions to run the 'set' command").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_server_does_not_have_fails_at_once() {
    let server = RedisServer::start();
    let url = format!("{}/99", server.url());
    fails_at_once(&url, "DB index is out of range").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_quorum_ends_the_wait_after_the_outage_timeout() {
    let masters = Masters::start(3);
    let urls = masters.urls();
    masters[0].kill();
    masters[1].kill();
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_millis(100),
        outage_timeout: Some(Duration::from_secs(1)),
        ..Config::new(&urls)
    })
    .unwrap();

    let started = Instant::now();
    let err = redlock.lock("outage").timeout(0).await.unwrap_err();
    let waited = started.elapsed();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        failures.iter().all(|failure| !failure.misconfigured),
        "{err}"
    );
    assert!(
        waited >= Duration::from_secs(1),
        "rode out the outage for its timeout: {waited:?}"
    );
    // The outage timeout plus one attempt round (100 ms) and the load margin.
    assert!(
        waited < Duration::from_millis(1_100) + common::SLACK,
        "gave up at the outage timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_outage_is_ridden_out() {
    let masters = Masters::start(1);
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_millis(100),
        outage_timeout: Some(Duration::from_secs(20)),
        ..Config::new(masters.urls())
    })
    .unwrap();
    masters[0].kill();

    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("outage").timeout(0).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await; // a few failed attempts
    masters[0].restart();

    let guard = waiter
        .await
        .unwrap()
        .expect("acquired once the master is back");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_refuses_writes_for_now_is_an_outage_not_a_misconfiguration() {
    // What a failover with `min-replicas-to-write 1` and one replica per master leaves: a
    // master that answers, and refuses every write until a replica is in sync.
    let master = RedisServer::start_with_args(&["--min-replicas-to-write", "1"]);
    let redlock = Redlock::with_config(Config {
        outage_timeout: Some(Duration::from_millis(300)),
        ..Config::new([master.url()])
    })
    .unwrap();
    let err = redlock.lock("replicated").timeout(0).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(!failures[0].misconfigured, "waiting can fix it: {err}");
    let source = std::error::Error::source(&failures[0]).expect("the server's error");
    let source = source.downcast_ref::<redis::RedisError>().unwrap();
    // Redis 7 keeps the code of a write refused inside a script; 6.2 wraps it in its text.
    assert!(source.to_string().contains("NOREPLICAS"), "{source}");
    let text = err.to_string();
    assert!(
        text.contains("answered but refused: NOREPLICAS") && text.contains("2 replicas"),
        "names the refusal and the advice: {text}"
    );
    assert!(!text.contains("script:"), "no script hash: {text}");

    // A wait rides it out: granted once a replica is in sync.
    let waiting = tokio::spawn({
        let redlock = Redlock::with_config(Config {
            outage_timeout: None,
            ..Config::new([master.url()])
        })
        .unwrap();
        async move { redlock.lock("replicated").timeout(0).await }
    });
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    replica.wait_until_synced();
    let guard = tokio::time::timeout(common::READY, waiting)
        .await
        .expect("granted once the replica is in sync")
        .unwrap()
        .unwrap();
    guard.release().await.unwrap();
}
