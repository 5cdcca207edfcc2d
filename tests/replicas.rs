//! `Config::wait_for_replicas`: a master's vote counts once its replicas have the key.

mod common;

use std::time::Duration;

use configurable_redlock::{Config, LockError, Redlock, lock_key};
use redlock_runtime::test_util::RedisServer;

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .expect("GET")
}

fn waiting_for(replicas: u32, master: &RedisServer) -> Redlock {
    Redlock::with_config(Config {
        wait_for_replicas: replicas,
        ..Config::new([master.url()])
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_granted_lock_is_on_the_replica_when_the_request_returns() {
    let master = RedisServer::start();
    let replica =
        RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    replica.wait_until_synced();
    // A replica just synced may take a moment to answer the master's acknowledgement
    // requests: wait until a plain write is confirmed by it.
    let acknowledging = common::eventually(common::READY, || {
        let mut connection = master.connection();
        let _: () = redis::cmd("SET")
            .arg("warm-up")
            .arg(1)
            .query(&mut connection)
            .unwrap();
        redis::cmd("WAIT")
            .arg(1)
            .arg(100)
            .query::<u64>(&mut connection)
            .is_ok_and(|replicas| replicas == 1)
    })
    .await;
    assert!(acknowledging, "the replica never acknowledged a write");
    let redlock = waiting_for(1, &master);
    for round in 0..20 {
        let name = format!("replicated-{round}");
        let guard = redlock.lock(&name).timeout(-1).await.unwrap();
        // At once, not eventually: the grant waited for the replica.
        assert_eq!(
            get(&replica, &lock_key(&name)).as_deref(),
            Some(guard.value())
        );
        guard.release().await.unwrap();
    }
    // Waiting locks too (the queued attempt).
    let held = redlock.lock("queued").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("queued").timeout(10).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    held.release().await.unwrap();
    let next = waiter.await.unwrap().unwrap();
    let on_replica = common::eventually(common::READY, || {
        get(&replica, &lock_key("queued")).as_deref() == Some(next.value())
    })
    .await;
    assert!(on_replica);
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_without_the_replicas_asked_for_does_not_vote_and_keeps_no_key() {
    let master = RedisServer::start();
    let redlock = waiting_for(1, &master);
    let err = redlock.lock("unreplicated").timeout(-1).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(!failures[0].misconfigured, "{err}");
    assert!(
        err.to_string().contains("0 of 1 replicas confirmed it"),
        "{err}"
    );
    let undone = common::eventually(common::READY, || {
        get(&master, &lock_key("unreplicated")).is_none()
    })
    .await;
    assert!(undone, "the unreplicated key is undone");
}
