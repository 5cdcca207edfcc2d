//! The Python library's wire format, read back with a plain Redis connection.

mod common;

use std::time::Duration;

use common::{eventually, get, redlock};
use configurable_redlock::{lock_key, waiting_key};
use redlock_runtime::test_util::Masters;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_key_holds_a_fresh_uuid_v4_with_the_ttl_in_ms() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock
        .lock("wire")
        .auto_release_time(Duration::from_secs_f64(12.3456))
        .await
        .unwrap();

    let key = "redlock:ConfigurableLock.wire";
    assert_eq!(lock_key("wire"), key);
    let value = get(&masters, 0, key).expect("lock key set");
    assert_eq!(value, guard.value());
    let uuid = uuid::Uuid::parse_str(&value).expect("a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    assert_eq!(value, uuid.hyphenated().to_string(), "lowercase hyphenated");
    let pttl: i64 = redis::cmd("PTTL")
        .arg(key)
        .query(&mut masters[0].connection())
        .unwrap();
    assert!(
        (12_000..=12_345).contains(&pttl),
        "TTL is floor(12.3456 s) in ms: {pttl}"
    );

    guard.release().await.unwrap();
    assert_eq!(get(&masters, 0, key), None);
    let second = redlock.lock("wire").await.unwrap();
    assert_ne!(second.value(), value, "a new value for every acquisition");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_statistics_use_the_seed_keys() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("report").await.unwrap();

    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move {
            redlock
                .lock("report")
                .stats_name("reports žluť")
                .timeout(5)
                .await
        }
    });
    let counter = waiting_key("reports žluť");
    assert_eq!(counter, "Waiting.ConfigurableLock.reports žluť");
    let counted = eventually(common::READY, || {
        get(&masters, 0, &counter).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the waiter is counted while it waits");
    assert_eq!(
        get(
            &masters,
            0,
            "Inserted.Waiting.ConfigurableLock.reports žluť"
        )
        .as_deref(),
        Some("1")
    );
    let registry = common::registry(&masters, 0);
    assert_eq!(
        registry,
        [r#""Waiting.ConfigurableLock.reports \u017elu\u0165""#]
    );
    assert_eq!(
        get(&masters, 0, "redlock:ConfigurableLock.reports žluť"),
        None,
        "stats_name never changes the lock key"
    );

    held.release().await.unwrap();
    waiter.await.unwrap().unwrap().release().await.unwrap();
    let uncounted = eventually(Duration::from_secs(2), || {
        get(&masters, 0, &counter).as_deref() == Some("0")
    })
    .await;
    assert!(uncounted, "the counter returns to 0 when the wait ends");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_and_skipped_requests_write_no_statistics() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("quiet").await.unwrap();
    let skipped = redlock.lock("quiet").timeout(-1).await;
    assert!(skipped.is_err());
    held.release().await.unwrap();

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut masters[0].connection())
        .unwrap();
    assert!(
        keys.is_empty(),
        "nothing but the lock key was ever written: {keys:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_forgot_the_scripts_still_runs_them() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let guard = redlock.lock("flushed").await.unwrap();
    // What a restart without persistence, or an operator, does to the script cache.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query(&mut masters[0].connection())
        .unwrap();

    // The release script is sent again, with its code, in the same call.
    guard.release().await.unwrap();
    assert_eq!(
        get(&masters, 0, &configurable_redlock::lock_key("flushed")),
        None
    );
}
