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

/// `SENTINEL FAILOVER jobs`, asked until accepted: the sentinel refuses (`NOGOODSLAVE`) until
/// it has discovered the replica and heard from it.
async fn request_failover(sentinel: &RedisServer) {
    let started = eventually(common::READY, || {
        redis::cmd("SENTINEL")
            .arg("FAILOVER")
            .arg("jobs")
            .query::<()>(&mut sentinel.connection())
            .is_ok()
    })
    .await;
    assert!(started, "the sentinel never accepted the failover");
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

    // The sentinel promotes the replica; the old master becomes its replica.
    request_failover(&sentinel).await;
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

#[configurable_redlock::redlock(name = "failover", client = client)]
async fn job(client: &Redlock, holds: &std::sync::atomic::AtomicU32) {
    holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
}

/// How a test makes the sentinel promote the replica.
#[derive(Clone, Copy, Debug)]
enum Failover {
    /// The master is killed; the sentinel notices and promotes the replica.
    Kill,
    /// `SENTINEL FAILOVER`: the master is demoted while still up.
    Graceful,
}

/// 4 tasks loop on one lock through the attribute, whose `()` return cannot carry an error
/// (a failure taken for a misconfiguration would panic them), while the sentinel fails over:
/// no task panics, and holds resume within 2 s of the promotion (the outage backoff's cap of
/// 1 s, jittered up to 1.5 s, plus the load margin).
async fn waiting_tasks_ride_out(failover: Failover) {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    };
    let master = RedisServer::start();
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    replica.wait_until_synced();
    let sentinel = RedisServer::start_sentinel(&master, "jobs");
    let url = format!("redis+sentinel://127.0.0.1:{}/jobs", sentinel.port());
    let client = Redlock::new([url]).unwrap();
    let holds = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, holds, stop) = (client.clone(), Arc::clone(&holds), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    job(&client, &holds).await;
                }
            })
        })
        .collect();
    assert!(eventually(common::READY, || holds.load(Ordering::SeqCst) > 20).await);

    // The sentinel knows the replica (it learns of it from the master) before it can promote it.
    let known = eventually(common::READY, || {
        redis::cmd("SENTINEL")
            .arg("REPLICAS")
            .arg("jobs")
            .query::<Vec<redis::Value>>(&mut sentinel.connection())
            .is_ok_and(|replicas| !replicas.is_empty())
    })
    .await;
    assert!(known, "the sentinel never learned of the replica");
    match failover {
        Failover::Kill => master.kill(),
        Failover::Graceful => request_failover(&sentinel).await,
    }
    let promoted = eventually(common::READY, || {
        master_port(&sentinel, "jobs") == replica.port()
    })
    .await;
    assert!(
        promoted,
        "{failover:?}: the sentinel never promoted the replica"
    );
    let promoted_at = std::time::Instant::now();
    let at_promotion = holds.load(Ordering::SeqCst);
    let resumed = eventually(common::READY, || {
        holds.load(Ordering::SeqCst) > at_promotion
    })
    .await;
    let took = promoted_at.elapsed();
    eprintln!("{failover:?}: holds resumed {took:?} after the promotion");
    assert!(resumed, "{failover:?}: no holds after the promotion");
    assert!(
        took < Duration::from_secs(2) + common::SLACK,
        "{failover:?}: holds resumed {took:?} after the promotion"
    );
    let more = eventually(common::READY, || {
        holds.load(Ordering::SeqCst) > at_promotion + 20
    })
    .await;
    assert!(more, "{failover:?}: holds stopped again");
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("no task panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_killed_under_waiting_tasks_is_an_outage_ridden_out_not_a_misconfiguration() {
    waiting_tasks_ride_out(Failover::Kill).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_failover_under_waiting_tasks_is_ridden_out() {
    waiting_tasks_ride_out(Failover::Graceful).await;
}
