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

/// Whether every master in `indexes` ends up without lock keys. A release or an undo returns
/// once a quorum answered, so the others' `DEL`s may still be on their way; a key left behind
/// would stay for its TTL (10 s), beyond this wait.
async fn no_keys_left(masters: &Masters, indexes: std::ops::Range<usize>) -> bool {
    eventually(Duration::from_secs(5), || {
        indexes
            .clone()
            .all(|index| lock_keys(masters, index).is_empty())
    })
    .await
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
            let set = eventually(common::READY, || {
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
        assert!(
            no_keys_left(&masters, 0..count).await,
            "{count} masters: a key survived the release"
        );
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
        // The deadline (none for a skip) and one attempt round of at most the per-master
        // timeout (100 ms), plus the load margin: no hang, no pause past the deadline.
        let bound =
            Duration::from_secs_f64(timeout.max(0.0)) + Duration::from_millis(100) + common::SLACK;
        assert!(elapsed < bound, "timeout {timeout}: took {elapsed:?}");
    }
    assert!(
        no_keys_left(&masters, 2..3).await,
        "the surviving master keeps a key of the failed attempts"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_does_not_slow_the_quorum() {
    let masters = Masters::start(3);
    // A long per-master timeout: a quorum that waited for the paused master would take 10 s.
    let redlock = common::redlock_with_master_timeout(&masters, Duration::from_secs(10));
    // Connect to every master first, so the pause hits live connections.
    redlock.lock("warm").await.unwrap().release().await.unwrap();
    masters[2].pause();

    let started = Instant::now();
    let guard = redlock.lock("paused").timeout(-1).await.unwrap();
    let acquired_in = started.elapsed();
    guard.release().await.unwrap();
    let cycle = started.elapsed();
    masters[2].resume();

    // Decided by the two live masters: round trips, plus the load margin.
    assert!(acquired_in < common::SLACK, "acquired in {acquired_in:?}");
    assert!(cycle < common::SLACK * 2, "acquire+release in {cycle:?}");
    // Once resumed, the paused master applies the SET and then its release, in order.
    assert!(
        no_keys_left(&masters, 2..3).await,
        "the paused master kept the key"
    );
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
    // The per-master timeout, plus the load margin: never a hang on the paused master.
    assert!(
        elapsed < Duration::from_millis(100) + common::SLACK,
        "took {elapsed:?}"
    );
    // The undo follows the late SET on the same connection: no key survives.
    assert!(
        no_keys_left(&masters, 0..1).await,
        "the undo did not follow the late SET"
    );
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
                            // With master 2 frozen, a busy machine can make a second master miss
                            // the 100 ms timeout: the release is then `Unavailable`, its commands
                            // still on their way. Whether a key is left is checked at the end.
                            match guard.release().await {
                                Ok(()) | Err(LockError::Unavailable { .. }) => {}
                                Err(other) => panic!("{other}"),
                            }
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
    // Once the slow master drained its backlog, no master may keep a key (TTL is 10 s).
    let left = no_keys_left(&masters, 0..3).await;
    let stale: Vec<(usize, Vec<String>, Option<String>)> = (0..3)
        .map(|index| {
            let value = get(&masters, index, &lock_key("slow"));
            (index, lock_keys(&masters, index), value)
        })
        .collect();
    assert!(left, "a stale key survived: {stale:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_under_two_urls_casts_one_vote() {
    let masters = Masters::start(2);
    let (p, q) = (masters[0].url(), masters[1].url());
    // The first server twice (database 0 named or not), and a second one: 3 URLs, 2 servers.
    let client = configurable_redlock::Redlock::with_config(configurable_redlock::Config {
        master_timeout: Duration::from_millis(100),
        ..configurable_redlock::Config::new([p.clone(), format!("{p}/0"), q])
    })
    .unwrap();

    // Both servers up: a quorum of 2 of the 3 URLs needs both servers, as it should.
    let guard = client
        .lock("twice")
        .auto_release_time(Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        get(&masters, 1, &lock_key("twice")).as_deref(),
        Some(guard.value())
    );

    // The second server dies: one server is no quorum, so the guard is lost...
    masters[1].kill();
    tokio::time::timeout(common::READY, guard.lost())
        .await
        .expect("the lock is lost once only one server holds it");
    // ...and a new request is refused at once, naming both URLs of the first server.
    let err = client.lock("again").timeout(-1).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    let twice = failures
        .iter()
        .find(|failure| failure.error.contains("the same Redis server as"))
        .unwrap_or_else(|| panic!("{err}"));
    assert!(twice.misconfigured, "{err}");
    // Whichever connected second is refused, naming the other.
    let other = if twice.master == p {
        format!("`{p}/0`")
    } else {
        format!("`{p}`")
    };
    assert!(twice.error.contains(&other), "{err}");
}
