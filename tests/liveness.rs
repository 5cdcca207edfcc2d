//! Waiting that never collapses or stalls: a cold start of many waiters in several processes,
//! and a head of the queue that dies (or stops) before its turn.
//!
//! The tests re-run their own executable as the other processes (with `CHILD_ENV` set).

mod common;

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use common::{SLACK, until_queued};
use configurable_redlock::{LockError, Redlock};
use futures_util::future::join_all;
use redlock_runtime::test_util::Masters;

const CHILD_ENV: &str = "REDLOCK_LIVENESS_CHILD";

/// In a child process (started with `CHILD_ENV` = `<role>|<urls>|<name>|<tasks>`), plays its
/// role and returns true: the test that re-ran its own executable then ends there.
async fn ran_as_child() -> bool {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return false;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let redlock = Redlock::new(parts[1].split(',')).unwrap();
    match parts[0] {
        "crowd" => crowd(&redlock, parts[2], parts[3].parse().unwrap()).await,
        "waiter" => {
            let guard = redlock.lock(parts[2]).timeout(60).await.unwrap();
            guard.release().await.unwrap();
        }
        // Waits for one of 2 permits, or holds one (TTL 2 s) until killed.
        "permit-waiter" => drop(redlock.semaphore(parts[2], 2).timeout(60).await.unwrap()),
        "permit-holder" => {
            let guard = redlock
                .semaphore(parts[2], 2)
                .auto_release_time(Duration::from_secs(2))
                .await
                .unwrap();
            println!("holding");
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(guard);
        }
        role => panic!("unknown role {role}"),
    }
    true
}

fn child(test: &str, role: &str, masters: &Masters, name: &str, tasks: usize) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture"])
        .env(
            CHILD_ENV,
            format!("{role}|{}|{name}|{tasks}", masters.urls().join(",")),
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a child process")
}

/// `tasks` tasks on 4 names (`<name>:0..3`), each acquiring once and holding 5 ms; prints
/// each failure, then "crowd <acquired> <failed>".
async fn crowd(redlock: &Redlock, name: &str, tasks: usize) {
    let outcomes = join_all((0..tasks).map(|task| {
        let (redlock, name) = (redlock.clone(), format!("{name}:{}", task % 4));
        tokio::spawn(async move {
            let guard = redlock.lock(name).timeout(60).await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            guard.release().await
        })
    }))
    .await;
    let failures: Vec<LockError> = outcomes
        .into_iter()
        .filter_map(|outcome| outcome.unwrap().err())
        .collect();
    for failure in &failures {
        println!("failure: {failure}");
    }
    println!("crowd {} {}", tasks - failures.len(), failures.len());
}

fn commands_processed(masters: &Masters) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut masters[0].connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap()
}

/// Two processes of 900 tasks each on 4 names, all starting at once: every task acquires, and
/// the masters' work per acquisition does not grow with the waiting tasks (each process has
/// one waiter per lock on the masters; the others wait in memory). Before the local lines,
/// this collapsed in a debug build: releases queued behind the waiters' scripts and failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_of_many_waiters_acquires_all_without_collapse() {
    if ran_as_child().await {
        return;
    }
    let test = "a_cold_start_of_many_waiters_acquires_all_without_collapse";
    let (processes, tasks) = (2, 900);
    let masters = Masters::start(1);
    let before = commands_processed(&masters);
    let children: Vec<_> = (0..processes)
        .map(|_| child(test, "crowd", &masters, "cold", tasks))
        .collect();
    let mut acquired = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let text = String::from_utf8(output.stdout).unwrap();
        let counts: Vec<usize> = text
            .lines()
            .find_map(|line| line.strip_prefix("crowd "))
            .unwrap_or_else(|| panic!("a crowd process ended early:\n{text}"))
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        assert_eq!(counts[1], 0, "tasks failed:\n{text}");
        acquired += counts[0];
    }
    assert_eq!(acquired, processes * tasks);
    // About 50 commands per acquisition (counting those inside scripts): the plain `SET`,
    // the queued attempts and the release of each, one writer of the waiting counts per
    // process. Waiters that each polled the masters made it hundreds.
    let per_acquisition = (commands_processed(&masters) - before) as f64 / acquired as f64;
    assert!(
        per_acquisition < 100.0,
        "{per_acquisition:.1} commands per acquisition"
    );
}

/// The holder releases while the head of the queue (another process) is dead or stopped: the
/// next waiter holds the lock within a grant's lifetime (250 ms) plus a round trip, not
/// after the dead head's place in the queue expired (3 s).
async fn a_dead_head_costs_one_grant(test: &str, masters: usize, signal: &str) {
    let masters = Masters::start(masters);
    let name = "head";
    let holder = common::redlock(&masters);
    let guard = holder.lock(name).await.unwrap();
    let mut head = child(test, "waiter", &masters, name, 1);
    until_queued(&masters, name, 1).await;
    // The next waiter, in a client of its own: another process, as the queue sees it.
    let next = common::redlock(&masters);
    let next = tokio::spawn(async move {
        let guard = next.lock(name).timeout(60).await.unwrap();
        let held = Instant::now();
        guard.release().await.unwrap();
        held
    });
    until_queued(&masters, name, 2).await;
    let pid = head.id().to_string();
    assert!(
        Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap()
            .success()
    );
    let released = Instant::now();
    guard.release().await.unwrap();
    let handoff = next.await.unwrap() - released;
    if signal == "-STOP" {
        Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    }
    head.wait().unwrap();
    // The promise: 500 ms (a 250 ms grant, then the next waiter's attempt), plus the
    // slack of a loaded machine; the dead head's place would have lasted 3 s.
    assert!(
        handoff < Duration::from_millis(500) + SLACK,
        "the next waiter held the lock {handoff:?} after the release"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_head_of_the_queue_stalls_the_lock_only_for_a_grant() {
    let test = "a_killed_head_of_the_queue_stalls_the_lock_only_for_a_grant";
    if ran_as_child().await {
        return;
    }
    a_dead_head_costs_one_grant(test, 1, "-KILL").await;
    a_dead_head_costs_one_grant(test, 3, "-KILL").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_head_of_the_queue_loses_its_turn_not_the_lock_for_everyone() {
    let test = "a_stopped_head_of_the_queue_loses_its_turn_not_the_lock_for_everyone";
    if ran_as_child().await {
        return;
    }
    a_dead_head_costs_one_grant(test, 1, "-STOP").await;
    a_dead_head_costs_one_grant(test, 3, "-STOP").await;
}

/// A head of the queue whose wait is cancelled (its task aborted, as a request's timeout in the
/// caller's code would) leaves the queue at once: the next waiter holds the lock a round trip
/// after the release, on 1 and 3 masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_head_of_the_queue_hands_the_lock_on_at_once() {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let name = "cancelled-head";
        let holder = common::redlock(&masters);
        let guard = holder.lock(name).await.unwrap();
        // Each waiter in a client of its own: other processes, as the queue sees them.
        let head = common::redlock(&masters);
        let head = tokio::spawn(async move { head.lock(name).await.map(drop) });
        until_queued(&masters, name, 1).await;
        let next = common::redlock(&masters);
        let next = tokio::spawn(async move {
            let guard = next.lock(name).timeout(60).await.unwrap();
            let held = Instant::now();
            guard.release().await.unwrap();
            held
        });
        until_queued(&masters, name, 2).await;
        head.abort();
        let released = Instant::now();
        guard.release().await.unwrap();
        let handoff = next.await.unwrap() - released;
        // The promise: at most a grant (250 ms) if the release came before the head's
        // leaving, plus the slack of a loaded machine.
        assert!(
            handoff < Duration::from_millis(250) + SLACK,
            "{count} masters: the next waiter held the lock {handoff:?} after the release"
        );
    }
}

/// How many waiters stand in the queues of both permits of the 2-permit semaphore `name` on
/// server 0.
fn queued_for_both_permits(masters: &Masters, name: &str) -> [usize; 2] {
    [0, 1].map(|index| {
        redis::cmd("ZCARD")
            .arg(common::permit_queue_key(name, index))
            .query(&mut masters[0].connection())
            .unwrap()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_semaphore_waiter_or_holder_blocks_nobody_for_long() {
    let test = "a_killed_semaphore_waiter_or_holder_blocks_nobody_for_long";
    if ran_as_child().await {
        return;
    }
    let masters = Masters::start(1);
    let name = "permits";
    let holder = common::redlock(&masters);
    let held = [
        holder.semaphore(name, 2).await.unwrap(),
        holder.semaphore(name, 2).await.unwrap(),
    ];
    // A waiter in another process, queued for both permits, is killed; the next waiter (a
    // process of its own, as the queues see it) takes the first permit released.
    let mut dead = child(test, "permit-waiter", &masters, name, 1);
    let queued = common::eventually(common::READY, || {
        queued_for_both_permits(&masters, name) == [1, 1]
    })
    .await;
    assert!(queued, "{:?}", queued_for_both_permits(&masters, name));
    let next = common::redlock(&masters);
    let next = tokio::spawn(async move {
        let guard = next.semaphore(name, 2).timeout(60).await.unwrap();
        (guard, Instant::now())
    });
    let queued = common::eventually(common::READY, || {
        queued_for_both_permits(&masters, name) == [2, 2]
    })
    .await;
    assert!(queued, "{:?}", queued_for_both_permits(&masters, name));
    dead.kill().unwrap();
    dead.wait().unwrap();
    let [first, second] = held;
    let released = Instant::now();
    first.release().await.unwrap();
    let (guard, acquired) = next.await.unwrap();
    // As for a lock: the dead waiter's grant lapses (250 ms), then the next waiter attempts.
    let handoff = acquired - released;
    assert!(handoff < Duration::from_millis(500) + SLACK, "{handoff:?}");
    guard.release().await.unwrap();
    second.release().await.unwrap();

    // A holder killed: its permit is back after its 2 s TTL, not before.
    let mut dead = child(test, "permit-holder", &masters, name, 1);
    // Its test harness prints first; then the child says it holds.
    let holding = std::io::BufRead::lines(std::io::BufReader::new(dead.stdout.as_mut().unwrap()))
        .any(|line| line.unwrap() == "holding");
    assert!(holding, "the child never held a permit");
    let other = holder.semaphore(name, 2).await.unwrap();
    dead.kill().unwrap();
    dead.wait().unwrap();
    let killed = Instant::now();
    let guard = holder.semaphore(name, 2).timeout(10).await.unwrap();
    let waited = killed.elapsed();
    assert!(waited < Duration::from_secs(2) + SLACK, "{waited:?}");
    guard.release().await.unwrap();
    other.release().await.unwrap();
}
