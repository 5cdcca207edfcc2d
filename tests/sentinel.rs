//! A master found through Sentinel: a real master, replica and sentinel started by the
//! harness, and a failover while a lock is held.

mod common;

use std::time::Duration;

use common::eventually;
use configurable_redlock::{Config, LockError, Redlock, lock_key};
use redlock_runtime::test_util::RedisServer;

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .expect("GET")
}

/// The port the sentinel reports for the master of `service`.
fn master_port(sentinel: &RedisServer, service: &str) -> u16 {
    let (_host, port): (String, u16) = redis::cmd("SENTINEL")
        .arg("GET-MASTER-ADDR-BY-NAME")
        .arg(service)
        .query(&mut sentinel.connection())
        .expect("SENTINEL GET-MASTER-ADDR-BY-NAME");
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_follows_the_master_through_a_failover() {
    let master = RedisServer::start();
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    replica.wait_until_synced();
    let sentinel = RedisServer::start_sentinel(&master, "jobs");
    let url = format!("redis+sentinel://127.0.0.1:{}/jobs", sentinel.port());
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_secs(1),
        ..Config::new([url])
    })
    .unwrap();

    // Through the sentinel, the lock lives on the master.
    let guard = redlock
        .lock("nightly")
        // Longer than the window between the promotion and the sentinels' announcement (about
        // a second), in which renewals still go to the old master.
        .auto_release_time(Duration::from_secs(5))
        .timeout(-1)
        .await
        .unwrap();
    let key = lock_key("nightly");
    assert_eq!(get(&master, &key).as_deref(), Some(guard.value()));
    let replicated = eventually(common::READY, || {
        get(&replica, &key).as_deref() == Some(guard.value())
    })
    .await;
    assert!(replicated, "the replica never got the lock key");

    // The sentinel promotes the replica; the old master becomes its replica. It refuses
    // (`NOGOODSLAVE`) until it has discovered the replica and heard from it: ask until then.
    let started = eventually(common::READY, || {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("jobs")
            .query::<()>(&mut sentinel.connection())
            .is_ok()
    })
    .await;
    assert!(started, "the sentinel never accepted the failover");
    let switched = eventually(common::READY, || {
        master_port(&sentinel, "jobs") == replica.port()
    })
    .await;
    assert!(switched, "the sentinel never switched to the replica");

    // The watchdog renews on the new master (the key was replicated), so the hold outlives its
    // TTL; new locks are granted there too.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !guard.is_lost(),
        "a replicated lock should survive a failover"
    );
    assert_eq!(get(&replica, &key).as_deref(), Some(guard.value()));
    let other = redlock.lock("after-failover").timeout(-1).await.unwrap();
    assert_eq!(
        get(&replica, &lock_key("after-failover")).as_deref(),
        Some(other.value())
    );
    other.release().await.unwrap();
    guard.release().await.unwrap();
    assert_eq!(get(&replica, &key), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_woken_through_the_sentinel_master() {
    let master = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(&master, "queue");
    let url = format!("redis+sentinel://127.0.0.1:{}/queue", sentinel.port());
    let holder_client = Redlock::new([&url]).unwrap();
    let waiter_client = Redlock::new([&url]).unwrap();

    let holder = holder_client.lock("handoff").timeout(-1).await.unwrap();
    let waiter = tokio::spawn(async move {
        let guard = waiter_client.lock("handoff").timeout(10).await;
        (guard, std::time::Instant::now())
    });
    let queued = eventually(common::READY, || {
        redis::cmd("ZCARD")
            .arg(format!("{{{}}}:queue", lock_key("handoff")))
            .query::<i64>(&mut master.connection())
            .unwrap()
            == 1
    })
    .await;
    assert!(queued, "the waiter never queued");
    let released = std::time::Instant::now();
    holder.release().await.unwrap();
    let (guard, acquired) = waiter.await.unwrap();
    let guard = guard.unwrap();
    // Round trips (through the sentinel's master) plus the load margin; without the release
    // notification the waiter would wake only at its 1 s heartbeat.
    let handoff = acquired - released;
    assert!(
        handoff < Duration::from_millis(300) + common::SLACK,
        "{handoff:?}"
    );
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_service_is_unavailable_and_named() {
    let master = RedisServer::start();
    let sentinel = RedisServer::start_sentinel(&master, "jobs");
    let url = format!("redis+sentinel://127.0.0.1:{}/nosuch", sentinel.port());
    let redlock = Redlock::new([&url]).unwrap();
    // Waiting cannot make the service exist: even a wait without deadline fails at once.
    let error = redlock.lock("x").timeout(0).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &error else {
        panic!("{error}")
    };
    assert!(failures[0].misconfigured, "{error}");
    let error = error.to_string();
    assert!(error.contains(&url), "{error}");
    assert!(error.contains("lock `x`"), "{error}");
}
