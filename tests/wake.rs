//! Waiting without polling: a release wakes the waiters; a holder that never announces its
//! release (a Python worker, a crashed process) is taken over when its key expires.

mod common;

use std::time::{Duration, Instant};

use common::redlock;
use configurable_redlock::{Redlock, lock_key};
use redlock_runtime::test_util::Masters;
use tokio::task::JoinHandle;

/// A task that waits for lock `name`, then releases it: when it acquired it.
fn spawn_timed_waiter(redlock: &Redlock, name: &'static str) -> JoinHandle<Instant> {
    let redlock = redlock.clone();
    tokio::spawn(async move {
        let guard = redlock.lock(name).timeout(10).await.unwrap();
        let acquired_at = Instant::now();
        guard.release().await.unwrap();
        acquired_at
    })
}

async fn handoff_latency(masters: &Masters) -> Duration {
    let redlock = redlock(masters);
    let held = redlock.lock("handoff").await.unwrap();
    let waiter = spawn_timed_waiter(&redlock, "handoff");
    // The waiter is queued and subscribed; its fallback timer is the heartbeat (1 s after it
    // queued) because the holder's TTL is 10 s.
    common::until_queued(masters, "handoff", 1).await;
    let released_at = Instant::now();
    held.release().await.unwrap();
    waiter.await.unwrap() - released_at
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_wakes_the_waiter_long_before_its_fallback_timer() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let latency = handoff_latency(&masters).await;
        // Round trips, plus the load margin; a waiter that missed the release would wake
        // only at its heartbeat, about 1 s after it queued.
        assert!(
            latency < common::SLACK,
            "{count} masters: handoff took {latency:?}"
        );
    }
}

/// A release that only offers the lock to the head (it may still be overtaken) and no other
/// release after it: the head takes the lock once its time to be overtaken is over, not at its
/// fallback timer (1 s here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_head_takes_the_lock_when_nobody_else_does() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let redlock = redlock(&masters);
        let held = redlock.lock("offered").await.unwrap();
        let waiter = spawn_timed_waiter(&redlock, "offered");
        common::until_queued(&masters, "offered", 1).await;
        // The head's ticket a minute ahead (a client whose clock runs fast): the release can
        // only offer it the lock.
        for index in 0..count {
            let (id, ticket) = common::head(&masters, index, "offered");
            let _: () = redis::cmd("ZADD")
                .arg(common::queue_key("offered"))
                .arg("XX")
                .arg(ticket + 60_000.0)
                .arg(id)
                .query(&mut masters[index].connection())
                .unwrap();
        }
        let released_at = Instant::now();
        held.release().await.unwrap();
        let latency = waiter.await.unwrap() - released_at;
        assert!(
            latency < configurable_redlock::OVERTAKE_FOR + common::SLACK,
            "{count} masters: the offered head took {latency:?}"
        );
    }
}

/// A head that is offered the lock and never takes it (killed or paused; here a place with
/// nobody behind it) lapses from the queue as a grant would (250 ms), and the waiter behind
/// it, woken by the offer, takes the lock then: not when the dead head's 3 s place expires.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offered_head_that_never_takes_the_lock_stalls_nobody() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    let held = redlock.lock("ghost").await.unwrap();
    let queue = common::queue_key("ghost");
    let mut connection = masters[0].connection();
    let now_ms = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            * 1000.0
    };
    // The dead head: a place ahead of ours, alive for 3 s as a waiter's is.
    let _: () = redis::cmd("ZADD")
        .arg(&queue)
        .arg(now_ms() - 1_000.0)
        .arg("ghost")
        .query(&mut connection)
        .unwrap();
    let _: () = redis::cmd("ZADD")
        .arg(format!("{{{}}}:leases", lock_key("ghost")))
        .arg(now_ms() + 3_000.0)
        .arg("ghost")
        .query(&mut connection)
        .unwrap();
    let waiter = spawn_timed_waiter(&redlock, "ghost");
    common::until_queued(&masters, "ghost", 2).await;
    // The head became the head just now (a grant's time, as a releaser's clock ahead would
    // write it): the release can only offer it the lock.
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{}}}:head", lock_key("ghost")))
        .arg("since")
        .arg(now_ms() + 60_000.0)
        .query(&mut connection)
        .unwrap();
    let released_at = Instant::now();
    held.release().await.unwrap();
    let latency = waiter.await.unwrap() - released_at;
    // The lapse after 250 ms, with a margin for load; the dead head's place lasts 3 s.
    assert!(
        latency < Duration::from_secs(2),
        "the waiter behind the offered head took {latency:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_never_announces_is_taken_over_when_its_key_expires() {
    let masters = Masters::start(1);
    let redlock = redlock(&masters);
    // What a Python worker writes: a plain SET NX PX, released by expiry only.
    let _: () = redis::cmd("SET")
        .arg(lock_key("python-held"))
        .arg("a-python-worker")
        .arg("NX")
        .arg("PX")
        .arg(300)
        .query(&mut masters[0].connection())
        .unwrap();
    let started = Instant::now();

    let guard = redlock.lock("python-held").timeout(5).await.unwrap();

    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(290),
        "not before expiry: {waited:?}"
    );
    // The fallback timer fires 1 ms after the key's PTTL: promptly, plus the load margin;
    // without it the waiter would sleep to its 1 s heartbeat.
    assert!(
        waited < Duration::from_millis(300) + common::SLACK,
        "promptly after expiry: {waited:?}"
    );
    guard.release().await.unwrap();
}

/// How many of the `count` masters keep `key` with `value` at least until `valid_until`, as
/// far as their `PTTL` shows (read after `valid_until`, so an extension in between can only
/// move it later).
fn masters_keeping(
    masters: &Masters,
    count: usize,
    key: &str,
    value: &str,
    valid_until: Instant,
) -> usize {
    (0..count)
        .filter(|&index| {
            let read_at = Instant::now();
            let (held, pttl): (Option<String>, i64) = redis::pipe()
                .cmd("GET")
                .arg(key)
                .cmd("PTTL")
                .arg(key)
                .query(&mut masters[index].connection())
                .unwrap();
            held.as_deref() == Some(value)
                && pttl > 0
                && read_at + Duration::from_millis(pttl as u64 + 1) >= valid_until
        })
        .count()
}

/// A release grants the lock to the head of the queue, which holds it when it hears of the
/// grant, before any round trip of its own. Its validity must never exceed what the masters
/// keep: on a quorum, the key holds its value at least until `valid_until`. The grant is then
/// extended to the TTL at once, without the watchdog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grantee_counts_on_no_more_validity_than_the_masters_keep() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let holder = redlock(&masters);
        let waiter = redlock(&masters);
        for _ in 0..10 {
            let held = holder
                .lock("granted")
                .auto_release_time(Duration::from_secs(30))
                .await
                .unwrap();
            let grantee = tokio::spawn({
                let waiter = waiter.clone();
                async move {
                    let guard = waiter
                        .lock("granted")
                        .auto_extend(false)
                        .auto_release_time(Duration::from_secs(30))
                        .timeout(10)
                        .await
                        .unwrap();
                    let valid_until = guard.valid_until();
                    (guard, valid_until)
                }
            });
            common::until_queued(&masters, "granted", 1).await;
            held.release().await.unwrap();
            let (guard, valid_until) = grantee.await.unwrap();
            let keeping = masters_keeping(
                &masters,
                count,
                &lock_key("granted"),
                guard.value(),
                valid_until,
            );
            assert!(
                keeping > count / 2,
                "{keeping} of {count} masters keep the lock until its validity"
            );
            // Extended to its 30 s TTL at once, though the watchdog is off.
            let extended = common::eventually(common::READY, || {
                guard.valid_until() > Instant::now() + Duration::from_secs(20)
            })
            .await;
            assert!(extended, "the grant was extended");
            guard.release().await.unwrap();
        }
        // A TTL shorter than the grant: the extension shortens the key, and the validity must
        // not outlast it.
        let held = holder.lock("short").await.unwrap();
        let grantee = tokio::spawn({
            let waiter = waiter.clone();
            async move {
                waiter
                    .lock("short")
                    .auto_release_time(Duration::from_millis(120))
                    .auto_extend(false)
                    .timeout(10)
                    .await
                    .unwrap()
            }
        });
        common::until_queued(&masters, "short", 1).await;
        held.release().await.unwrap();
        let guard = grantee.await.unwrap();
        let key = lock_key("short");
        let pttl = |index: usize| -> i64 {
            redis::cmd("PTTL")
                .arg(&key)
                .query(&mut masters[index].connection())
                .unwrap()
        };
        let shortened = common::eventually(common::READY, || pttl(0) <= 120).await;
        assert!(shortened, "the extension set the TTL, or the grant ran out");
        let valid_until = guard.valid_until();
        if valid_until > Instant::now() {
            let keeping = masters_keeping(&masters, count, &key, guard.value(), valid_until);
            assert!(
                keeping > count / 2,
                "{keeping} of {count} masters keep a 120 ms lock until its validity"
            );
        }
    }
}
