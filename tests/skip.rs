//! `timeout = -1` skips only when another client holds the lock: rounds that contenders split
//! are retried, an outage is never reported as contention, and the refusal tells each
//! master's vote.

mod common;

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use common::{get, redlock};
use configurable_redlock::{Config, LockError, Redlock, Vote, lock_key, redlock};
use futures_util::future::join_all;
use redlock_runtime::test_util::{Masters, RedisServer};

/// Three clients (three processes, as far as Redis can tell) try a fresh name together,
/// `rounds` times: returns the rounds won by nobody and those won by several.
async fn contend(masters: &Masters, scenario: &str, rounds: usize) -> (usize, usize) {
    let clients: Vec<Redlock> = (0..3).map(|_| redlock(masters)).collect();
    let (mut lost, mut doubled) = (0, 0);
    for round in 0..rounds {
        let name = format!("split:{scenario}:{round}");
        let start = Arc::new(tokio::sync::Barrier::new(clients.len()));
        let tries = clients.iter().map(|client| {
            let (client, start, name) = (client.clone(), Arc::clone(&start), name.clone());
            tokio::spawn(async move {
                start.wait().await;
                client.lock(&name).timeout(-1).await
            })
        });
        // Every result is in before a winner releases: the losers saw the lock held.
        let results: Vec<_> = join_all(tries)
            .await
            .into_iter()
            .map(|joined| joined.expect("no panic"))
            .collect();
        let mut winners = Vec::new();
        for result in results {
            match result {
                Ok(guard) => winners.push(guard),
                Err(LockError::Timeout { .. }) => {}
                Err(other) => panic!("round {round} of `{scenario}`: {other}"),
            }
        }
        lost += usize::from(winners.is_empty());
        doubled += usize::from(winners.len() > 1);
        for guard in winners {
            guard.release().await.expect("released");
        }
    }
    (lost, doubled)
}

/// Connects each client's masters before a fault, as a running service has.
async fn warm_up(masters: &Masters) {
    let client = redlock(masters);
    common::warm_up(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_votes_are_retried_until_one_contender_wins_with_all_masters_up() {
    let masters = Masters::start(3);
    assert_eq!(
        contend(&masters, "up", 100).await,
        (0, 0),
        "(lost, doubled)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_votes_are_retried_with_one_master_refusing_connections() {
    let masters = Masters::start(3);
    masters[2].kill();
    assert_eq!(
        contend(&masters, "down", 100).await,
        (0, 0),
        "(lost, doubled)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_votes_are_retried_with_one_master_paused() {
    let masters = Masters::start(3);
    warm_up(&masters).await;
    masters[2].pause();
    // Each round waits for the paused master's per-master timeout (100 ms) at least twice.
    let outcome = contend(&masters, "paused", 40).await;
    masters[2].resume();
    assert_eq!(outcome, (0, 0), "(lost, doubled)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_skipped_after_one_round_trip_with_every_vote_named() {
    let masters = Masters::start(3);
    // A long TTL: no renewal (its `GET`) while the commands are counted.
    let held = redlock(&masters)
        .lock("held")
        .auto_release_time(Duration::from_secs(300))
        .await
        .unwrap();
    // Granted by a quorum; a slow third `SET` (a loaded machine) must land before the
    // commands are counted.
    let everywhere = common::eventually(common::READY, || {
        (0..3).all(|index| get(&masters, index, &lock_key("held")).as_deref() == Some(held.value()))
    })
    .await;
    assert!(everywhere, "the holder's key never reached every master");
    let skipper = redlock(&masters);
    warm_up(&masters).await;
    // The warm-up returned once a quorum released: its last command (the release's
    // `EVALSHA`) must have run on every master before the commands are counted.
    let released_everywhere = common::eventually(common::READY, || {
        masters
            .servers()
            .iter()
            .all(|server| command_stats(server).contains("cmdstat_evalsha:"))
    })
    .await;
    assert!(
        released_everywhere,
        "the warm-up's release never reached every master"
    );
    for server in masters.servers() {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut server.connection())
            .unwrap();
    }

    let err = skipper.lock("held").timeout(-1).await.unwrap_err();

    let LockError::Timeout { votes, .. } = &err else {
        panic!("{err}")
    };
    // Decided as soon as a quorum named the holder: the third may not have answered yet.
    let held_on = votes.iter().filter(|vote| vote.vote == Vote::Held).count();
    assert!(held_on >= 2, "{err}");
    assert!(
        votes
            .iter()
            .all(|vote| matches!(vote.vote, Vote::Held | Vote::Unheard)),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!(
            "held by another client: {held_on} of 3 masters refused"
        )),
        "{err}"
    );
    // One attempt: one `SET` and one `GET` on each master, no retry.
    for server in masters.servers() {
        let once = |stats: &str| {
            stats.contains("cmdstat_set:calls=1,") && stats.contains("cmdstat_get:calls=1,")
        };
        common::eventually(common::READY, || once(&command_stats(server))).await;
        assert!(once(&command_stats(server)), "{}", command_stats(server));
    }
    held.release().await.unwrap();
}

/// `INFO commandstats` of `server`: the commands it ran since its last `CONFIG RESETSTAT`.
fn command_stats(server: &RedisServer) -> String {
    redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.connection())
        .unwrap()
}

/// Another client's value on masters `holders` (one value each: `x0`, `x1`…).
fn hold_by_others(masters: &Masters, name: &str, holders: &[usize]) {
    for &index in holders {
        let _: () = redis::cmd("SET")
            .arg(lock_key(name))
            .arg(format!("x{index}"))
            .arg("PX")
            .arg(30_000)
            .query(&mut masters[index].connection())
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_that_stays_split_is_a_split_vote_error_not_a_skip() {
    let masters = Masters::start(3);
    // Two other clients hold one master each: nobody holds the lock, nobody can take it.
    hold_by_others(&masters, "split", &[0, 1]);
    let client = redlock(&masters);

    let err = client.lock("split").timeout(-1).await.unwrap_err();

    let LockError::SplitVote {
        attempts, votes, ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(*attempts, 4, "{err}");
    let votes: Vec<_> = votes.iter().map(|vote| vote.vote.clone()).collect();
    assert_eq!(votes, [Vote::Held, Vote::Held, Vote::Ours]);
    assert!(
        err.to_string()
            .contains("no quorum either way after 4 attempts")
    );
    // Our votes were undone.
    assert!(
        common::eventually(common::READY, || get(&masters, 2, &lock_key("split"))
            .is_none())
        .await
    );
    // `silent` does not hide it.
    assert!(matches!(
        split_job(&client).await,
        Err(LockError::SplitVote { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_master_taken_by_contenders_is_a_skip_at_once() {
    let masters = Masters::start(3);
    // Three other clients hold one master each (mid-handoff under plain contention): none
    // has a quorum, but we have no vote anywhere; they decide among themselves.
    hold_by_others(&masters, "taken", &[0, 1, 2]);
    let client = redlock(&masters);

    let err = client.lock("taken").timeout(-1).await.unwrap_err();

    let LockError::Timeout { votes, .. } = &err else {
        panic!("{err}")
    };
    assert!(votes.iter().all(|vote| vote.vote == Vote::Held), "{err}");
    assert!(
        err.to_string()
            .contains("held by another client: 3 of 3 masters refused"),
        "{err}"
    );
}

#[redlock(name = "split", timeout = -1, silent, client = client)]
async fn split_job(client: &Redlock) -> Result<bool, LockError> {
    Ok(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_that_a_failed_master_may_complete_is_retried_then_reported_as_held() {
    let masters = Masters::start(3);
    hold_by_others(&masters, "maybe", &[0]);
    masters[2].kill();
    let client = redlock(&masters);

    let err = client.lock("maybe").timeout(-1).await.unwrap_err();

    let LockError::Timeout { votes, .. } = &err else {
        panic!("{err}")
    };
    assert!(matches!(
        votes.iter().map(|vote| &vote.vote).collect::<Vec<_>>()[..],
        [Vote::Held, Vote::Ours, Vote::Failed(_)]
    ));
    assert!(
        err.to_string().contains(": 1 of 3 masters refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_reaches_every_task_of_a_process_as_unavailable() {
    let client = Redlock::new([common::nobody_listening()]).unwrap();
    let tasks = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.lock("outage").timeout(2).await })
    });
    for result in join_all(tasks).await {
        let err = result.unwrap().unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    }

    // Through the attribute, `silent` with a `Result` return: each an error, none a skip.
    let tasks = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { outage_job(&client).await })
    });
    for result in join_all(tasks).await {
        let err = result.unwrap().unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    }
}

#[redlock(name = "outage", timeout = 2, silent, client = client)]
async fn outage_job(client: &Redlock) -> Result<bool, LockError> {
    Ok(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_waiting_forever_behind_an_outage_give_up_with_it() {
    let outage_timeout = Duration::from_secs(2);
    let client = Redlock::with_config(Config {
        outage_timeout: Some(outage_timeout),
        ..Config::new([common::nobody_listening()])
    })
    .unwrap();
    let started = Instant::now();
    let tasks = (0..5).map(|_| {
        let client = client.clone();
        tokio::spawn(async move { client.lock("outage").timeout(0).await })
    });
    for result in join_all(tasks).await {
        let err = result.unwrap().unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    }
    // The tasks behind the first count the outage from its start, not each from its turn
    // (which would take 5 outage timeouts).
    let waited = started.elapsed();
    assert!(
        waited < outage_timeout * 2 + common::SLACK,
        "all gave up within one outage timeout: {waited:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_master_costs_a_split_skip_its_timeout_once_not_every_round() {
    let masters = Masters::start(3);
    // A long per-master timeout (1 s; the default is 200 ms), to tell one wait from four.
    let client = common::redlock_with_master_timeout(&masters, Duration::from_secs(1));
    common::warm_up(&client).await;
    // Two other clients' values split the two masters that answer; the third is paused, so
    // each round needs its vote (either value may stand there: the answer is "held", after
    // the retries of a round that could not decide).
    for (index, value) in [(0, "other-a"), (1, "other-b")] {
        let _: () = redis::cmd("SET")
            .arg(lock_key("split"))
            .arg(value)
            .query(&mut masters[index].connection())
            .unwrap();
    }
    masters[2].pause();
    let started = Instant::now();
    let outcome = client.lock("split").timeout(-1).await;
    let took = started.elapsed();
    masters[2].resume();
    assert!(
        matches!(outcome, Err(LockError::Timeout { .. })),
        "{outcome:?}"
    );
    // The first round waits the whole 1 s; the 3 retries give the master that did not answer a
    // tenth of it each, after pauses of about 20, 40 and 80 ms (without this, 4 s and more).
    assert!(
        took < Duration::from_millis(1_500) + common::SLACK,
        "{took:?}"
    );
}
