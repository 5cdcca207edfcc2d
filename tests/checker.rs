//! The mutual-exclusion checker under faults: worker tasks in 3 OS processes take one lock
//! over several masters, and record every hold as an interval on the system-wide monotonic
//! clock, with its fencing token, around a deliberately non-atomic counter (kept on a separate
//! Redis server that no fault touches). The checker asserts zero overlapping intervals,
//! counter == acquisitions, and tokens increasing in hold order, while masters are killed and
//! restarted or paused, and while a majority restarts empty under careless holders. In its
//! semaphore mode (6 processes x 2 tasks on 3 permits), it asserts that no more holds than
//! permits overlap, under the same faults.
//!
//! The test re-runs its own executable as the worker processes (with `WORKER_ENV` set).

mod common;

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use configurable_redlock::{Config, LockError, Redlock, Vote};
use redis::AsyncCommands;
use redlock_runtime::test_util::{Masters, RedisServer};
use rustix::time::{ClockId, clock_gettime};

const WORKER_ENV: &str = "REDLOCK_CHECKER_WORKER";
const PROCESSES: usize = 3;
const TASKS: usize = 3;
/// Tasks per process of careless holders: the scenario of issue 18 (3 processes x 4 tasks).
const CARELESS_TASKS: usize = 4;
/// The semaphore mode: 6 processes x 2 tasks on a semaphore of 3 permits.
const PERMITS: usize = 3;
const SEMAPHORE_PROCESSES: usize = 6;
const SEMAPHORE_TASKS: usize = 2;
const COUNTER: &str = "checker:counter";

/// Nanoseconds on CLOCK_MONOTONIC: one clock for every process of this machine.
fn monotonic_ns() -> u128 {
    let now = clock_gettime(ClockId::Monotonic);
    now.tv_sec as u128 * 1_000_000_000 + now.tv_nsec as u128
}

/// One hold, as a worker reports it.
#[derive(Debug, Clone, Copy)]
struct Hold {
    start: u128,
    end: u128,
    token: u64,
}

/// What each worker task does.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// Takes the lock this many times, working only with a fencing token.
    Rounds(usize),
    /// Takes the lock until this many seconds have passed, and each time holds it 1.5 s
    /// without a token and without looking at `is_lost()`, as careless code does.
    Careless(u64),
    /// Until this many seconds have passed, tries the lock (TTL 2 s) with `timeout = -1` every
    /// 50 ms, as a busy scheduler does, and holds it 2 ms when it gets it.
    Skip(u64),
}

impl Plan {
    fn parse(text: &str) -> Self {
        match text.split_once(':') {
            Some(("careless", seconds)) => Self::Careless(seconds.parse().unwrap()),
            Some(("skip", seconds)) => Self::Skip(seconds.parse().unwrap()),
            _ => Self::Rounds(text.parse().unwrap()),
        }
    }

    fn spec(self) -> String {
        match self {
            Self::Rounds(rounds) => rounds.to_string(),
            Self::Careless(seconds) => format!("careless:{seconds}"),
            Self::Skip(seconds) => format!("skip:{seconds}"),
        }
    }
}

/// The worker process: `TASKS` tasks (`CARELESS_TASKS` of careless holders, `SEMAPHORE_TASKS`
/// on a semaphore), each following `plan` on `name` with `permits` (1: the lock).
async fn worker(masters: Vec<String>, data_url: String, name: String, plan: Plan, permits: usize) {
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_millis(100),
        ..Config::new(masters)
    })
    .unwrap();
    let data = redis::Client::open(data_url).unwrap();
    let tasks = match plan {
        _ if permits > 1 => SEMAPHORE_TASKS,
        Plan::Rounds(_) | Plan::Skip(_) => TASKS,
        Plan::Careless(_) => CARELESS_TASKS,
    };
    let tasks: Vec<_> = (0..tasks)
        .map(|_| {
            let (redlock, data, name) = (redlock.clone(), data.clone(), name.clone());
            tokio::spawn(async move {
                let mut data = data.get_multiplexed_async_connection().await.unwrap();
                let mut holds = Vec::new();
                if let Plan::Careless(seconds) = plan {
                    let until = std::time::Instant::now() + Duration::from_secs(seconds);
                    while std::time::Instant::now() < until {
                        let Ok(guard) = redlock
                            .semaphore(&name, permits)
                            .timeout(5)
                            .auto_release_time(Duration::from_secs(2))
                            .await
                        else {
                            continue; // masters down or inside their grace: try again
                        };
                        let start = monotonic_ns();
                        let seen: Option<u64> = data.get(COUNTER).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(1_500)).await;
                        let _: () = data.set(COUNTER, seen.unwrap_or(0) + 1).await.unwrap();
                        let end = monotonic_ns();
                        guard.release().await.ok();
                        holds.push(Hold {
                            start,
                            end,
                            token: 0,
                        });
                    }
                    return holds;
                }
                if let Plan::Skip(seconds) = plan {
                    let until = std::time::Instant::now() + Duration::from_secs(seconds);
                    let mut skips = Skips::default();
                    while std::time::Instant::now() < until {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        skips.attempts += 1;
                        let request = redlock
                            .semaphore(&name, permits)
                            .timeout(-1)
                            .auto_release_time(Duration::from_secs(2));
                        let guard = match request.await {
                            Ok(guard) => guard,
                            Err(error) => {
                                skips.count(&error);
                                continue;
                            }
                        };
                        let start = monotonic_ns();
                        let seen: Option<u64> = data.get(COUNTER).await.unwrap();
                        tokio::time::sleep(Duration::from_millis(2)).await;
                        let _: () = data.set(COUNTER, seen.unwrap_or(0) + 1).await.unwrap();
                        let end = monotonic_ns();
                        guard.release().await.ok();
                        holds.push(Hold {
                            start,
                            end,
                            token: 0,
                        });
                    }
                    println!("{}", skips.line());
                    return holds;
                }
                let Plan::Rounds(rounds) = plan else {
                    unreachable!()
                };
                while holds.len() < rounds {
                    let guard = redlock
                        .semaphore(&name, permits)
                        .timeout(30)
                        .auto_release_time(Duration::from_secs(2))
                        .await
                        .unwrap();
                    // No token, no work: with masters down the lock may no longer stand on a
                    // quorum (its holders killed); the token round is what says so.
                    let Ok(token) = guard.fencing_token().await else {
                        guard.release().await.ok();
                        continue;
                    };
                    let start = monotonic_ns();
                    let seen: Option<u64> = data.get(COUNTER).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let _: () = data.set(COUNTER, seen.unwrap_or(0) + 1).await.unwrap();
                    let end = monotonic_ns();
                    guard.release().await.ok(); // a lost lock still ends its interval here
                    holds.push(Hold { start, end, token });
                }
                holds
            })
        })
        .collect();
    for task in tasks {
        for hold in task.await.unwrap() {
            println!("HOLD {} {} {}", hold.start, hold.end, hold.token);
        }
    }
}

/// What a skip-mode task's attempts that did not get the lock met.
#[derive(Debug, Default)]
struct Skips {
    attempts: u64,
    /// `Timeout` with another client's value on a quorum.
    held: u64,
    /// `Timeout` with another client's value on too few masters for a quorum, but enough
    /// with the masters that failed or did not answer: perhaps free.
    maybe_held: u64,
    /// `SplitVote`: free, but no attempt reached a quorum.
    split: u64,
    /// `Unavailable`: too many masters down.
    unavailable: u64,
}

impl Skips {
    fn count(&mut self, error: &LockError) {
        match error {
            LockError::Timeout { votes, .. } => {
                let held = votes.iter().filter(|vote| vote.vote == Vote::Held).count();
                if held > votes.len() / 2 {
                    self.held += 1;
                } else {
                    self.maybe_held += 1;
                }
            }
            LockError::SplitVote { .. } => self.split += 1,
            LockError::Unavailable { .. } => self.unavailable += 1,
            other => panic!("{other}"),
        }
    }

    fn line(&self) -> String {
        let Self {
            attempts,
            held,
            maybe_held,
            split,
            unavailable,
        } = self;
        format!("SKIPS {attempts} {held} {maybe_held} {split} {unavailable}")
    }

    fn add(&mut self, line: &str) {
        let numbers: Vec<u64> = line.split(' ').map(|n| n.parse().unwrap()).collect();
        self.attempts += numbers[0];
        self.held += numbers[1];
        self.maybe_held += numbers[2];
        self.split += numbers[3];
        self.unavailable += numbers[4];
    }
}

/// In a worker process (started by `check` with `WORKER_ENV`), runs the worker and returns
/// true: the test that re-ran its own executable then ends there.
async fn ran_as_worker() -> bool {
    let Ok(spec) = std::env::var(WORKER_ENV) else {
        return false;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let masters = parts[0].split(',').map(str::to_owned).collect();
    worker(
        masters,
        parts[1].to_owned(),
        parts[2].to_owned(),
        Plan::parse(parts[3]),
        parts[4].parse().unwrap(),
    )
    .await;
    true
}

/// Runs the checker on the lock (this test's executable re-run as `PROCESSES` workers, `test`
/// naming the test) while `faults` runs on a thread until told to stop; returns the holds
/// checked (and, for skip-mode workers, what their other attempts met).
async fn check(
    test: &str,
    masters: Masters,
    plan: Plan,
    faults: impl FnOnce(&Masters, &AtomicBool) + Send + 'static,
) -> (usize, Skips) {
    let (holds, skips) = run_workers(test, masters, plan, 1, faults).await;
    if let Plan::Rounds(rounds) = plan {
        assert_eq!(
            holds.len(),
            PROCESSES * TASKS * rounds,
            "every round reported its hold"
        );
    }
    for pair in holds.windows(2) {
        assert!(
            pair[0].end <= pair[1].start,
            "overlapping holds: {:?} and {:?}",
            pair[0],
            pair[1]
        );
        // Careless holders take no token (0).
        assert!(
            pair[0].token < pair[1].token || pair[1].token == 0,
            "fencing tokens out of hold order: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    (holds.len(), skips)
}

/// Runs the checker on a semaphore of `PERMITS` (`SEMAPHORE_PROCESSES` workers): asserts that
/// no more holds than permits overlap; returns the holds checked and the most that overlapped.
async fn check_semaphore(
    test: &str,
    masters: Masters,
    plan: Plan,
    faults: impl FnOnce(&Masters, &AtomicBool) + Send + 'static,
) -> (usize, usize) {
    let (holds, _) = run_workers(test, masters, plan, PERMITS, faults).await;
    // Starts and ends on one clock; at equal times an end comes first.
    let mut events: Vec<(u128, i32)> = holds
        .iter()
        .flat_map(|hold| [(hold.start, 1), (hold.end, -1)])
        .collect();
    events.sort();
    let (mut holding, mut most) = (0i32, 0i32);
    for (at, change) in events {
        holding += change;
        most = most.max(holding);
        assert!(
            holding <= PERMITS as i32,
            "{holding} holds of a {PERMITS}-permit semaphore overlapped at {at}"
        );
    }
    (holds.len(), most as usize)
}

/// Runs `plan` in worker processes on one fresh name with `permits` while `faults` runs on a
/// thread until they are done; returns every hold reported, by start (and what skip-mode
/// workers' other attempts met). Asserts that no increment of the shared counter was lost
/// when holds are exclusive.
async fn run_workers(
    test: &str,
    masters: Masters,
    plan: Plan,
    permits: usize,
    faults: impl FnOnce(&Masters, &AtomicBool) + Send + 'static,
) -> (Vec<Hold>, Skips) {
    let data = RedisServer::start();
    let masters = Arc::new(masters);
    let name = format!("checked-{}", uuid::Uuid::new_v4());
    let processes = if permits > 1 {
        SEMAPHORE_PROCESSES
    } else {
        PROCESSES
    };
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", test, "--nocapture"])
                .env(
                    WORKER_ENV,
                    format!(
                        "{}|{}|{name}|{}|{permits}",
                        masters.urls().join(","),
                        data.url(),
                        plan.spec()
                    ),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let injector = std::thread::spawn({
        let (masters, done) = (Arc::clone(&masters), Arc::clone(&done));
        move || faults(&masters, &done)
    });
    let mut holds = Vec::new();
    let mut skips = Skips::default();
    for child in children {
        let output = tokio::task::spawn_blocking(move || child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a worker failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout
            .lines()
            .filter_map(|line| line.strip_prefix("SKIPS "))
        {
            skips.add(line);
        }
        for line in stdout.lines().filter_map(|line| line.strip_prefix("HOLD ")) {
            let numbers: Vec<u128> = line.split(' ').map(|n| n.parse().unwrap()).collect();
            holds.push(Hold {
                start: numbers[0],
                end: numbers[1],
                token: numbers[2] as u64,
            });
        }
    }
    done.store(true, Ordering::Relaxed);
    injector.join().unwrap();
    holds.sort_by_key(|hold| hold.start);
    if permits == 1 {
        let counter: u64 = redis::cmd("GET")
            .arg(COUNTER)
            .query(&mut data.connection())
            .unwrap();
        assert_eq!(counter as usize, holds.len(), "increments lost");
    }
    (holds, skips)
}

/// Sleeps `duration` in small steps; false once `done` is set.
fn pause_unless_done(done: &AtomicBool, duration: Duration) -> bool {
    let deadline = std::time::Instant::now() + duration;
    while std::time::Instant::now() < deadline {
        if done.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    !done.load(Ordering::Relaxed)
}

/// Kills two of five masters (which two: by `round`) for 300 ms, restarts them, and lets them
/// be for 200 ms; false once `done`.
fn kill_two_for_a_while(masters: &Masters, done: &AtomicBool, round: usize) -> bool {
    let (first, second) = (round % 5, (round + 2) % 5);
    masters[first].kill();
    masters[second].kill();
    let go_on = pause_unless_done(done, Duration::from_millis(300));
    masters[first].restart();
    masters[second].restart();
    go_on && pause_unless_done(done, Duration::from_millis(200))
}

/// Stops `server` (SIGSTOP) for `duration`, resumes it, and lets it be for 200 ms; false once
/// `done`.
fn stop_for_a_while(server: &RedisServer, done: &AtomicBool, duration: Duration) -> bool {
    server.pause();
    let go_on = pause_unless_done(done, duration);
    server.resume();
    go_on && pause_unless_done(done, Duration::from_millis(200))
}

/// Kills two of five masters for 300 ms, then pauses one for 300 ms, in turn, until `done`.
fn kill_two_then_pause_one(masters: &Masters, done: &AtomicBool) {
    for round in 0.. {
        let paused = &masters[(round + 1) % 5];
        if !kill_two_for_a_while(masters, done, round)
            || !stop_for_a_while(paused, done, Duration::from_millis(300))
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_on_healthy_masters() {
    if ran_as_worker().await {
        return;
    }
    let (checked, _) = check(
        "no_overlap_on_healthy_masters",
        Masters::start(3),
        Plan::Rounds(40),
        |_, _| {},
    )
    .await;
    assert_eq!(checked, PROCESSES * TASKS * 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_while_a_minority_is_killed_and_restarted() {
    if ran_as_worker().await {
        return;
    }
    // Durable masters (`appendfsync always`, the harness's default): a restarted master votes
    // at once.
    let masters = Masters::start(5);
    let (checked, _) = check(
        "no_overlap_while_a_minority_is_killed_and_restarted",
        masters,
        Plan::Rounds(60),
        |masters, done| {
            // Two of five masters down at a time, each restarted after 300 ms.
            for round in 0.. {
                if !kill_two_for_a_while(masters, done, round) {
                    return;
                }
            }
        },
    )
    .await;
    assert_eq!(checked, PROCESSES * TASKS * 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_while_a_master_is_paused_and_resumed() {
    if ran_as_worker().await {
        return;
    }
    let (checked, _) = check(
        "no_overlap_while_a_master_is_paused_and_resumed",
        Masters::start(3),
        Plan::Rounds(60),
        |masters, done| {
            for round in 0.. {
                if !stop_for_a_while(&masters[round % 3], done, Duration::from_millis(400)) {
                    return;
                }
            }
        },
    )
    .await;
    assert_eq!(checked, PROCESSES * TASKS * 60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_while_a_majority_restarts_empty_under_careless_holders() {
    if ran_as_worker().await {
        return;
    }
    // 3 processes x 4 tasks, five masters without persistence; every 5 s, three of them are
    // killed and restarted at once, empty, while a holder (1.5 s holds, TTL 2 s) goes on without looking at
    // `is_lost()`. Restarted masters sit out new acquisitions for their grace (the lock's
    // TTL), so nobody else takes the lock while that holder may still be inside it.
    let started = std::time::Instant::now();
    let (checked, _) = check(
        "no_overlap_while_a_majority_restarts_empty_under_careless_holders",
        Masters::start_volatile(5),
        Plan::Careless(40),
        |masters, done| {
            for round in 0.. {
                if !pause_unless_done(done, Duration::from_secs(5)) {
                    return;
                }
                let majority = [round % 5, (round + 1) % 5, (round + 3) % 5];
                for index in majority {
                    masters[index].kill();
                }
                for index in majority {
                    masters[index].restart();
                }
            }
        },
    )
    .await;
    println!(
        "careless holders, majority restarted empty every 5 s: {checked} holds in {:?}, no overlap",
        started.elapsed()
    );
    assert!(checked >= 10, "only {checked} holds in 40 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_overlap_and_no_lost_turn_for_skipping_holders_under_faults() {
    if ran_as_worker().await {
        return;
    }
    // 3 processes x 3 tasks, each trying the lock with `timeout = -1` every 50 ms for 15 s,
    // over five durable masters: two killed for 300 ms, then one paused for 300 ms, in turn.
    let (checked, skips) = check(
        "no_overlap_and_no_lost_turn_for_skipping_holders_under_faults",
        Masters::start(5),
        Plan::Skip(15),
        kill_two_then_pause_one,
    )
    .await;
    // Skips that no quorum of another holder's votes backed: the lock may have been free.
    let unsure = skips.maybe_held + skips.split;
    let share = unsure as f64 / skips.attempts.max(1) as f64;
    println!(
        "skip-mode holders under faults: {checked} holds, {skips:?}; unsure skips {unsure} ({:.2} %)",
        share * 100.0
    );
    assert!(checked > 0, "{skips:?}");
    assert_eq!(
        skips.attempts,
        checked as u64 + skips.held + skips.maybe_held + skips.split + skips.unavailable,
        "every attempt accounted for"
    );
    // Not zero: an undo lost to a master killed before it answered leaves that attempt's
    // value there for its TTL (2 s here), which splits the votes of later rounds. How many
    // undos the kills catch is chance: 1.7-13.0 % in 8 runs of this binary on a 2-core
    // machine, so the bound is a fifth (a minority of skips, with every one accounted for).
    assert!(share < 0.20, "unsure skips: {skips:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_semaphore_holders_while_masters_are_killed_and_paused() {
    if ran_as_worker().await {
        return;
    }
    // 6 processes x 2 tasks on 3 permits over five durable masters: two killed for 300 ms,
    // then one paused for 300 ms, in turn.
    let (checked, most) = check_semaphore(
        "at_most_n_semaphore_holders_while_masters_are_killed_and_paused",
        Masters::start(5),
        Plan::Rounds(30),
        kill_two_then_pause_one,
    )
    .await;
    println!(
        "semaphore of {PERMITS} under kills and pauses: {checked} holds, at most {most} at once"
    );
    assert_eq!(checked, SEMAPHORE_PROCESSES * SEMAPHORE_TASKS * 30);
    assert!(most > 1, "the holders never overlapped: not a semaphore");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_n_semaphore_holders_while_a_majority_restarts_empty_under_careless_holders() {
    if ran_as_worker().await {
        return;
    }
    // As for the lock: five masters without persistence, three restarted empty every 5 s,
    // holders that hold 1.5 s (TTL 2 s) without looking at `is_lost()`.
    let (checked, most) = check_semaphore(
        "at_most_n_semaphore_holders_while_a_majority_restarts_empty_under_careless_holders",
        Masters::start_volatile(5),
        Plan::Careless(25),
        |masters, done| {
            for round in 0.. {
                if !pause_unless_done(done, Duration::from_secs(5)) {
                    return;
                }
                let majority = [round % 5, (round + 1) % 5, (round + 3) % 5];
                for index in majority {
                    masters[index].kill();
                }
                for index in majority {
                    masters[index].restart();
                }
            }
        },
    )
    .await;
    println!(
        "semaphore of {PERMITS}, careless holders, majority restarted empty every 5 s: {checked} holds, at most {most} at once"
    );
    assert!(checked >= 10, "only {checked} holds in 25 s");
}
