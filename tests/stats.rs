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
    let all_counted = eventually(common::READY, || {
        get(&masters, 0, &counter).as_deref() == Some("7")
    })
    .await;
    assert!(all_counted, "7 waiters: {:?}", get(&masters, 0, &counter));

    held.release().await.unwrap();
    for waiter in waiters {
        waiter.await.unwrap().unwrap();
    }
    let registry = common::registry(&masters, 0);
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

    // Uncounted in the background at once: a round trip, plus the load margin.
    let counter = waiting_key("timed-out");
    let back_to_zero = eventually(common::SLACK * 2, || {
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
    // The wait was counted and uncounted (in the background): its registration has run.
    let done = eventually(common::READY, || {
        get(&masters, 0, &waiting_key("shared")).as_deref() == Some("0")
    })
    .await;
    assert!(done, "the wait was counted and uncounted");

    let length: i64 = redis::cmd("LLEN")
        .arg(REGISTRY_KEY)
        .query(&mut raw)
        .unwrap();
    assert_eq!(length, 1);
}

const WAITER_ENV: &str = "REDLOCK_STATS_WAITER_URL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_waiter_stops_counting_within_seconds() {
    if let Ok(url) = std::env::var(WAITER_ENV) {
        // The child: wait on the held lock until killed.
        let redlock = Redlock::new([url]).unwrap();
        let outcome = redlock.lock("killed-waiter").timeout(60).await;
        panic!("the waiter should have been killed, got {outcome:?}");
    }
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let _held = redlock.lock("killed-waiter").await.unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_killed_waiter_stops_counting_within_seconds"])
        .env(WAITER_ENV, masters[0].url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let counter = waiting_key("killed-waiter");
    let counted = eventually(common::READY, || {
        get(&masters, 0, &counter).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the child waits");
    let contended = redlock.waiting().await.unwrap();
    assert_eq!(contended.len(), 1);
    assert_eq!(
        (contended[0].stats_name.as_str(), contended[0].waiters),
        ("killed-waiter", 1)
    );

    child.kill().unwrap(); // SIGKILL: no cleanup runs in the child
    child.wait().unwrap();
    let killed_at = std::time::Instant::now();
    let mut recovered = false;
    while killed_at.elapsed() < Duration::from_secs(6) {
        if redlock.waiting().await.unwrap().is_empty() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        recovered,
        "the dead waiter is uncounted within its lease (3 s)"
    );
    assert!(
        killed_at.elapsed() >= Duration::from_secs(1),
        "not before its lease could run out"
    );
    assert_eq!(
        get(&masters, 0, &counter).as_deref(),
        Some("0"),
        "the compatible counter is repaired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reader_includes_waiters_counted_by_python_processes() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    // What the Python library writes while one of its processes waits on "emails", on master 2.
    let mut raw = masters[2].connection();
    let _: () = redis::cmd("INCRBY")
        .arg(waiting_key("emails"))
        .arg(1)
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("Inserted.Waiting.ConfigurableLock.emails")
        .arg(1)
        .query(&mut raw)
        .unwrap();
    let _: () = redis::cmd("RPUSH")
        .arg(REGISTRY_KEY)
        .arg(r#""Waiting.ConfigurableLock.emails""#)
        .query(&mut raw)
        .unwrap();
    // And a Rust waiter on the same stats name (counted on master 0).
    let held = redlock.lock("emails").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("emails").timeout(10).await.map(drop) }
    });
    let both = eventually(common::READY, || {
        get(&masters, 0, &waiting_key("emails")).as_deref() == Some("1")
    })
    .await;
    assert!(both);

    let contended = redlock.waiting().await.unwrap();

    assert_eq!(
        contended,
        [configurable_redlock::Contended {
            stats_name: "emails".into(),
            waiters: 2
        }]
    );
    held.release().await.unwrap();
    waiter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waits_without_statistics_write_no_statistics_keys() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let held = redlock.lock("invoice:1").await.unwrap();

    let err = redlock
        .lock("invoice:1")
        .stats(false)
        .timeout(0.2)
        .await
        .unwrap_err();
    assert!(
        matches!(err, configurable_redlock::LockError::Timeout { .. }),
        "{err}"
    );
    held.release().await.unwrap();

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*Waiting*")
        .query(&mut masters[0].connection())
        .unwrap();
    assert!(keys.is_empty(), "statistics written: {keys:?}");
    assert!(common::registry(&masters, 0).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locks_queue_keys_expire_with_its_waiters_leases() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let held = redlock.lock("queued").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = common::redlock(&masters);
        async move { redlock.lock("queued").timeout(10).await.map(drop) }
    });
    common::until_queued(&masters, "queued", 1).await;

    // Each waiter's lease is 3 s: the queue and its leases go with the newest of them, so a
    // waiter that dies leaves nothing for good, even if nobody waits for the lock again.
    for suffix in ["queue", "leases"] {
        let key = format!("{{{}}}:{suffix}", configurable_redlock::lock_key("queued"));
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query(&mut masters[0].connection())
            .unwrap();
        assert!((1..=3_000).contains(&ttl), "{key}: PTTL {ttl}");
    }
    held.release().await.unwrap();
    waiter.await.unwrap().unwrap();
}

#[configurable_redlock::redlock(name = "report:{tick}", timeout = 0.3, client = client)]
async fn per_tick(client: &Redlock, tick: u32) -> Result<u32, configurable_redlock::LockError> {
    Ok(tick)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_made_per_call_count_their_waiters_under_one_stats_name() {
    let masters = Masters::start(1);
    let client = common::redlock(&masters);
    let holder = common::redlock(&masters);
    for tick in 0..5 {
        let held = holder.lock(format!("report:{tick}")).await.unwrap();
        let err = per_tick(&client, tick).await.unwrap_err();
        assert!(
            matches!(err, configurable_redlock::LockError::Timeout { .. }),
            "{err}"
        );
        held.release().await.unwrap();
    }
    // Counted (and registered) under the template, not under each tick's name: three keys in
    // all, not three per tick.
    let registered = eventually(common::READY, || {
        common::registry(&masters, 0)
            .iter()
            .any(|entry| entry.contains("report:{tick}"))
    })
    .await;
    let entries = common::registry(&masters, 0);
    assert!(registered, "{entries:?}");
    assert!(
        !entries.iter().any(|entry| entry.contains("report:0")),
        "{entries:?}"
    );
    assert_eq!(get(&masters, 0, &waiting_key("report:3")), None);
}
