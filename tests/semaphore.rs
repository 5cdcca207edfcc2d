//! Semaphores: at most N holders, each permit a lock of its own; waiters woken by releases.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use common::{READY, SLACK, eventually, get, redlock};
use configurable_redlock::{LockError, LockGuard, Redlock, lock_key};
use redlock_runtime::test_util::Masters;

/// Takes `count` permits of `name` (of `permits`) without waiting.
async fn take(client: &Redlock, name: &str, permits: usize, count: usize) -> Vec<LockGuard> {
    let mut guards = Vec::new();
    for _ in 0..count {
        let guard = client.semaphore(name, permits).timeout(-1).await;
        guards.push(guard.expect("a free permit"));
    }
    guards
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_holders_at_once_then_the_next_skips_or_waits_for_a_release() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let (first, second) = (redlock(&masters), redlock(&masters));
        let guards = take(&first, "encoder", 3, 3).await;
        match second.semaphore("encoder", 3).timeout(-1).await {
            Err(LockError::Timeout { name, .. }) => assert_eq!(name, "encoder"),
            other => panic!("{count} masters: a 4th holder: {other:?}"),
        }
        let waiter = tokio::spawn({
            let second = second.clone();
            async move { second.semaphore("encoder", 3).timeout(30).await }
        });
        // Queued for every permit (each a lock of its own).
        let queued = eventually(READY, || {
            (0..3).all(|index| permit_queue(&masters, 0, index) == 1)
        })
        .await;
        assert!(
            queued,
            "{count} masters: the waiter never queued for all 3 permits"
        );
        assert!(!waiter.is_finished(), "{count} masters: a 4th holder");
        let mut guards = guards.into_iter();
        let released = Instant::now();
        guards.next().unwrap().release().await.unwrap();
        let guard = waiter.await.unwrap().expect("the released permit");
        // Woken by the release, not by a fallback timer (the holders' 10 s TTL).
        assert!(released.elapsed() < SLACK * 2, "{:?}", released.elapsed());
        // It left the queues of the other permits.
        let left = eventually(READY, || {
            (0..3).all(|index| permit_queue(&masters, 0, index) == 0)
        })
        .await;
        assert!(left, "{count} masters: the holder stayed queued");
        guard.release().await.unwrap();
        for guard in guards {
            guard.release().await.unwrap();
        }
    }
}

/// How many waiters stand in the queue of permit `index` of `encoder` on server `server`.
fn permit_queue(masters: &Masters, server: usize, index: usize) -> usize {
    redis::cmd("ZCARD")
        .arg(common::permit_queue_key("encoder", index))
        .query(&mut masters[server].connection())
        .expect("ZCARD")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_more_holders_than_permits_and_all_permits_used() {
    let masters = Masters::start(3);
    let clients: Vec<Redlock> = (0..3).map(|_| redlock(&masters)).collect();
    let (holding, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..12)
        .map(|task| {
            let client = clients[task % clients.len()].clone();
            let (holding, most) = (Arc::clone(&holding), Arc::clone(&most));
            tokio::spawn(async move {
                for _ in 0..10 {
                    let guard = client
                        .semaphore("pool", 3)
                        .timeout(READY)
                        .await
                        .expect("a permit");
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    guard.release().await.expect("released");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    assert_eq!(most.load(Ordering::SeqCst), 3, "most holders at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphore_of_one_permit_is_the_lock_of_its_name() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let guard = client.semaphore("report", 1).await.unwrap();
    assert_eq!(
        get(&masters, 0, &lock_key("report")).as_deref(),
        Some(guard.value())
    );
    assert!(matches!(
        client.lock("report").timeout(-1).await,
        Err(LockError::Timeout { .. })
    ));
    guard.release().await.unwrap();
    // And the lock is the first permit of a semaphore of more.
    let lock = client.lock("report").await.unwrap();
    let permits = take(&client, "report", 2, 1).await;
    assert!(matches!(
        client.semaphore("report", 2).timeout(-1).await,
        Err(LockError::Timeout { .. })
    ));
    lock.release().await.unwrap();
    for permit in permits {
        permit.release().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_holds_a_permit_takes_another_and_holding_all_it_cannot_wait() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let first = client.semaphore("pair", 2).await.unwrap();
    let second = client.semaphore("pair", 2).await.unwrap();
    assert_ne!(first.value(), second.value());
    assert!(matches!(
        client.semaphore("pair", 2).await,
        Err(LockError::Reentered { name }) if name == "pair"
    ));
    assert!(matches!(
        client.semaphore("pair", 2).timeout(-1).await,
        Err(LockError::Timeout { .. })
    ));
    first.release().await.unwrap();
    second.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_permits_are_refused_with_the_reason() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    for (permits, reentrant, reason) in [
        (0, false, "from 1 to 64"),
        (65, false, "from 1 to 64"),
        (3, true, "not re-entrant"),
    ] {
        let error = client
            .semaphore("bad", permits)
            .reentrant(reentrant)
            .await
            .expect_err("invalid");
        assert!(
            matches!(&error, LockError::InvalidPermits { name, permits: given, .. } if name == "bad" && *given == permits),
            "{error:?}"
        );
        assert!(error.to_string().contains(reason), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_holders_permit_is_back_after_its_ttl() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let guard = client
        .semaphore("crash", 2)
        .auto_release_time(Duration::from_secs(1))
        .auto_extend(false)
        .await
        .unwrap();
    let other = client
        .semaphore("crash", 2)
        .auto_release_time(Duration::from_secs(30))
        .await
        .unwrap();
    // The holder crashes: no release, no renewal.
    std::mem::forget(guard);
    let asked = Instant::now();
    let waiter = Redlock::clone(&client);
    let taken = tokio::spawn(async move { waiter.semaphore("crash", 2).timeout(10).await })
        .await
        .unwrap()
        .expect("the crashed holder's permit");
    let waited = asked.elapsed();
    assert!(waited < Duration::from_secs(1) + SLACK * 2, "{waited:?}");
    taken.release().await.unwrap();
    other.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permits_are_held_with_a_paused_master_and_fenced_by_one_counter() {
    let masters = Masters::start(3);
    let client = redlock(&masters);
    common::warm_up(&client).await;
    masters[2].pause();
    let guards = take(&client, "fenced", 2, 2).await;
    assert!(matches!(
        redlock(&masters).semaphore("fenced", 2).timeout(-1).await,
        Err(LockError::Timeout { .. })
    ));
    let first = guards[0].fencing_token().await.unwrap();
    let second = guards[1].fencing_token().await.unwrap();
    assert!(second > first, "{first} then {second}");
    masters[2].resume();
    for guard in guards {
        guard.release().await.unwrap();
    }
}

#[test]
fn the_blocking_api_takes_permits() {
    let masters = Masters::start(1);
    let client = configurable_redlock::blocking::Redlock::new(masters.urls()).unwrap();
    let first = client
        .semaphore("blocking", 2)
        .timeout(-1)
        .acquire()
        .unwrap();
    let second = client
        .semaphore("blocking", 2)
        .timeout(-1)
        .acquire()
        .unwrap();
    assert!(matches!(
        client.semaphore("blocking", 2).timeout(-1).acquire(),
        Err(LockError::Timeout { .. })
    ));
    first.release().unwrap();
    second.release().unwrap();
}

/// At most two run the body at once; a third call skips while both run.
#[configurable_redlock::redlock(name = "attribute-pool", permits = 2, timeout = -1, silent, client = client)]
async fn pooled(
    client: Redlock,
    inside: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
) -> bool {
    inside.fetch_add(1, Ordering::SeqCst);
    gate.acquire().await.expect("open").forget();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_runs_up_to_permits_bodies_at_once() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let (inside, gate) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(tokio::sync::Semaphore::new(0)),
    );
    let running: Vec<_> = (0..2)
        .map(|_| {
            let call = pooled(client.clone(), Arc::clone(&inside), Arc::clone(&gate));
            tokio::spawn(call)
        })
        .collect();
    let both = eventually(READY, || inside.load(Ordering::SeqCst) == 2).await;
    assert!(both, "two bodies never ran at once");
    assert!(
        !pooled(client.clone(), Arc::clone(&inside), Arc::clone(&gate)).await,
        "a third body ran beside two holders of a 2-permit semaphore"
    );
    assert_eq!(inside.load(Ordering::SeqCst), 2);
    gate.add_permits(2);
    for call in running {
        assert!(call.await.unwrap(), "a holder's body ran");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_permit_stays_held_once_every_holder_released() {
    let masters = Masters::start(1);
    let clients: Vec<Redlock> = (0..3).map(|_| redlock(&masters)).collect();
    let tasks: Vec<_> = (0..12)
        .map(|task| {
            let client = clients[task % clients.len()].clone();
            tokio::spawn(async move {
                for _ in 0..40 {
                    let guard = client
                        .semaphore("leak", 3)
                        .timeout(READY)
                        .await
                        .expect("a permit");
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    guard.release().await.expect("released");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("no panic");
    }
    let keys = [0, 1, 2].map(|index| common::permit_key("leak", index));
    let free = eventually(READY, || {
        keys.iter().all(|key| get(&masters, 0, key).is_none())
    })
    .await;
    let left: Vec<_> = keys.iter().map(|key| get(&masters, 0, key)).collect();
    assert!(free, "permits left held: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_rides_out_an_outage_as_a_lock_does() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    common::warm_up(&client).await;
    masters[0].kill();
    let waiter = tokio::spawn({
        let client = client.clone();
        async move { client.semaphore("outage", 2).timeout(READY).await }
    });
    // Down for a while: the request meets the outage first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiter.is_finished(), "gave up: {:?}", waiter.await);
    masters[0].restart();
    let guard = waiter
        .await
        .unwrap()
        .expect("a permit once the master is back");
    guard.release().await.unwrap();
    // One that does not wait reports the outage at once.
    masters[0].kill();
    assert!(matches!(
        client.semaphore("outage", 2).timeout(-1).await,
        Err(LockError::Unavailable { name, .. }) if name == "outage"
    ));
}
