//! Waiting statistics: counted while waiting, registered once, restored on every exit.

mod common;

use std::time::Duration;

use common::{eventually, get};
use configurable_redlock::{REGISTRY_KEY, Redlock, waiting_key};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_waiters_register_the_key_once_and_are_all_counted() {
    let masters = Masters::start(1);
    // Separate clients, as separate processes would be: separate connections.
    let clients: Vec<Redlock> = (0..8).map(|_| common::redlock(&masters)).collect();
    let held = clients[0].lock("crowded").await.unwrap();

    let waiters: Vec<_> = clients[1..]
        .iter()
        .map(|client| {
            let client = client.clone();
            tokio::spawn(async move {
                let guard = client.lock("crowded").timeout(10).await?;
                guard.release().await
            })
        })
        .collect();
    let counter = waiting_key("crowded");
    let all_counted = eventually(Duration::from_secs(2), || {
        get(&masters, 0, &counter).as_deref() == Some("7")
    })
    .await;
    assert!(all_counted, "7 waiters: {:?}", get(&masters, 0, &counter));

    held.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    let registry: Vec<String> = redis::cmd("LRANGE")
        .arg(REGISTRY_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut masters[0].connection())
        .unwrap();
    assert_eq!(
        registry,
        [r#""Waiting.ConfigurableLock.crowded""#],
        "no duplicates"
    );
    let back_to_zero = eventually(Duration::from_secs(2), || {
        get(&masters, 0, &counter).as_deref() == Some("0")
    })
    .await;
    assert!(back_to_zero, "{:?}", get(&masters, 0, &counter));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_wait_is_uncounted() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let _held = redlock.lock("timed-out").await.unwrap();

    let err = redlock.lock("timed-out").timeout(0.2).await.unwrap_err();
    assert!(matches!(
        err,
        configurable_redlock::LockError::Timeout { .. }
    ));

    let counter = waiting_key("timed-out");
    let back_to_zero = eventually(Duration::from_secs(1), || {
        get(&masters, 0, &counter).as_deref() == Some("0")
    })
    .await;
    assert!(back_to_zero, "{:?}", get(&masters, 0, &counter));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_registry_entry_is_not_duplicated() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    // What the Python library leaves after its first wait on this stats name.
    let mut raw = masters[0].connection();
    let _: () = redis::cmd("SET")
        .arg("Inserted.Waiting.ConfigurableLock.shared")
        .arg(1)
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(REGISTRY_KEY)
        .arg(r#""Waiting.ConfigurableLock.shared""#)
        .query(&mut raw)
        .unwrap();
    let _held = redlock.lock("shared").await.unwrap();

    let _ = redlock.lock("shared").timeout(0.1).await;

    let length: i64 = redis::cmd("LLEN")
        .arg(REGISTRY_KEY)
        .query(&mut raw)
        .unwrap();
    assert_eq!(length, 1);
}
