//! Quorum over 1, 3 and 5 masters, with masters killed, paused and slow.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use common::{eventually, get, redlock};
use configurable_redlock::{LockError, lock_key};
use redlock_runtime::test_util::Masters;

fn lock_keys(masters: &Masters, index: usize) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("redlock:*")
        .query(&mut masters[index].connection())
        .expect("KEYS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acquires_and_releases_on_every_master() {
    for count in [1, 3, 5] {
        let masters = Masters::start(count);
        let redlock = redlock(&masters);
        assert_eq!(redlock.quorum(), count / 2 + 1);

        let guard = redlock.lock("all").timeout(-1).await.unwrap();
        // Granted once a quorum answers; the other masters' `SET`s may still be on their way.
        for index in 0..count {
            let set = eventually(Duration::from_secs(2), || {
                get(&masters, index, &lock_key("all")).as_deref() == Some(guard.value())
            })
            .await;
            assert!(set, "master {index} of {count} never got the key");
        }
        let busy = redlock.lock("all").timeout(-1).await.unwrap_err();
        assert!(
            matches!(busy, LockError::Timeout { .. }),
            "{count} masters: {busy}"
        );

        guard.release().await.unwrap();
        for index in 0..count {
            assert_eq!(
                lock_keys(&masters, index),
                Vec::<String>::new(),
                "master {index} of {count}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_killed_still_grants_locks() {
    for (count, killed) in [(3, 1), (5, 2)] {
        let masters = Masters::start(count);
        let redlock = redlock(&masters);
        for index in 0..killed {
            masters[index].kill();
        }

        let guard = redlock.lock("minority").timeout(-1).await.unwrap();
        let busy = redlock.lock("minority").timeout(-1).await.unwrap_err();
        assert!(
            matches!(busy, LockError::Timeout { .. }),
            "{count}/{killed}: {busy}"
        );
        guard.release().await.unwrap();
        for index in killed..count {
            assert!(lock_keys(&masters, index).is_empty());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_killed_is_unavailable_without_hanging() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    let dead = [masters[0].url(), masters[1].url()];
    masters[0].kill();
    masters[1].kill();

    for timeout in [-1.0, 0.4] {
        let started = Instant::now();
        let err = redlock.lock("majority").timeout(timeout).await.unwrap_err();
        let elapsed = started.elapsed();

        let LockError::Unavailable {
            failures,
            quorum,
            masters: total,
            ..
        } = &err
        else {
            panic!("expected Unavailable, got {err}");
        };
        assert_eq!((*quorum, *total), (2, 3));
        let failing: Vec<&str> = failures
            .iter()
            .map(|failure| failure.master.as_str())
            .collect();
        assert!(
            dead.iter().all(|url| failing.contains(&url.as_str())),
            "{err}"
        );
        assert!(
            err.to_string().contains("majority"),
            "names the lock: {err}"
        );
        let bound = Duration::from_secs_f64(timeout.max(0.0)) + Duration::from_millis(300);
        assert!(elapsed < bound, "timeout {timeout}: took {elapsed:?}");
    }
    // The surviving master keeps no key of the failed attempts.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(lock_keys(&masters, 2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_does_not_slow_the_quorum() {
    let masters = Masters::start(3);
    let redlock = redlock(&masters);
    // Connect to every master first, so the pause hits live connections.
    redlock.lock("warm").await.unwrap().release().await.unwrap();
    masters[2].pause();

    let started = Instant::now();
    let guard = redlock.lock("paused").timeout(-1).await.unwrap();
    let acquired_in = started.elapsed();
    guard.release().await.unwrap();
    let cycle = started.elapsed();
    masters[2].resume();

    assert!(
        acquired_in < Duration::from_millis(50),
        "acquired in {acquired_in:?}"
    );
    assert!(
        cycle < Duration::from_millis(100),
        "acquire+release in {cycle:?}"
    );
    // Once resumed, the paused master applies the SET and then its release, in order.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lock_keys(&masters, 2).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_single_master_fails_within_the_master_timeout() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    redlock.lock("warm").await.unwrap().release().await.unwrap();
    masters[0].pause();

    let started = Instant::now();
    let err = redlock.lock("stalled").timeout(-1).await.unwrap_err();
    let elapsed = started.elapsed();
    masters[0].resume();

    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no reply within 100ms"), "{err}");
    assert!(elapsed < Duration::from_millis(300), "took {elapsed:?}");
    // The undo follows the late SET on the same connection: no key survives.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(lock_keys(&masters, 0).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_stale_key_after_thousands_of_cycles_with_a_slow_master() {
    let masters = Arc::new(Masters::start(3));
    let redlock = redlock(&masters);
    redlock.lock("warm").await.unwrap().release().await.unwrap();

    // Master 2 is frozen and thawed every few ms, so its replies straggle behind the quorum.
    let stop = Arc::new(AtomicBool::new(false));
    let toggler = std::thread::spawn({
        let (masters, stop) = (Arc::clone(&masters), Arc::clone(&stop));
        move || {
            while !stop.load(Ordering::Relaxed) {
                masters[2].pause();
                std::thread::sleep(Duration::from_millis(8));
                masters[2].resume();
                std::thread::sleep(Duration::from_millis(4));
            }
        }
    });

    // Two contenders on one name: besides clean cycles, attempts split 1-1 on the fast masters
    // and must be undone everywhere, the slow master included.
    let contenders: Vec<_> = (0..2)
        .map(|_| {
            let redlock = redlock.clone();
            tokio::spawn(async move {
                let (mut held, mut refused) = (0, 0);
                for _ in 0..1_500 {
                    match redlock.lock("slow").timeout(-1).await {
                        Ok(guard) => {
                            held += 1;
                            guard.release().await.unwrap();
                        }
                        Err(LockError::Timeout { .. } | LockError::Unavailable { .. }) => {
                            refused += 1
                        }
                        Err(other) => panic!("{other}"),
                    }
                }
                (held, refused)
            })
        })
        .collect();
    let mut held = 0;
    for contender in contenders {
        held += contender.await.unwrap().0;
    }
    stop.store(true, Ordering::Relaxed);
    toggler.join().unwrap();
    masters[2].resume();

    assert!(held > 1_000, "most cycles acquire the lock: {held}");
    // Let the slow master drain its backlog, then no master may keep a key (TTL is 30 s).
    tokio::time::sleep(Duration::from_millis(500)).await;
    for index in 0..3 {
        assert_eq!(
            lock_keys(&masters, index),
            Vec::<String>::new(),
            "master {index}"
        );
    }
}
