//! Interoperability with the real Python library (configurable-redlock 1.0.0, on pottery),
//! against the same redis-server: each side sees the other's lock, each side's waiter gets the
//! lock the other releases, a mixed stress run has no overlap, waiting statistics written
//! by either side are read by the other, and a Python waiter gets turns among busy workers of
//! ours.
//!
//! The Python side runs in a virtual environment: `$REDLOCK_PYTHON` if set, else
//! `target/interop-venv` (created here on first use with `python3 -m venv` and
//! `pip install configurable-redlock==1.0.0`; `.ci/run` creates it beforehand). Without
//! `python3` the tests fail with a message that says so: they are never skipped.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use common::{eventually, get};
use configurable_redlock::{LockError, Redlock, waiting_key};
use redis::AsyncCommands;
use redlock_runtime::test_util::Masters;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/interop.py");

/// The interpreter of the virtual environment, created once per test run if needed.
fn python() -> &'static PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(python) = std::env::var_os("REDLOCK_PYTHON") {
            return python.into();
        }
        let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop-venv");
        let python = venv.join("bin/python");
        if !python.exists() {
            let created = Command::new("python3").arg("-m").arg("venv").arg(&venv).status();
            assert!(
                created.is_ok_and(|status| status.success()),
                "the Python interop tests need `python3` with `venv` (Debian: apt-get install python3-venv)"
            );
            let installed = Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "configurable-redlock==1.0.0"])
                .status()
                .expect("run pip");
            assert!(installed.success(), "pip install configurable-redlock==1.0.0 failed");
        }
        python
    })
}

fn python_command(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(python());
    command.arg(SCRIPT).arg(url).args(args);
    command
}

fn run_python(url: &str, args: &[&str]) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = python_command(url, args).output().expect("run python");
    let stdout = String::from_utf8_lossy(&stdout).into_owned();
    assert!(
        status.success(),
        "python {args:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&stderr)
    );
    stdout
}

/// Starts `interop.py` with `args` and returns once it printed its first line, with that line.
fn python_started(
    url: &str,
    args: &[&str],
) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = python_command(url, args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    (child, lines, line)
}

/// Starts a Python holder and returns once it holds the lock.
fn python_holder(
    url: &str,
    name: &str,
    seconds: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let (child, lines, line) = python_started(url, &["hold", name, seconds]);
    assert_eq!(line.trim(), "holding");
    (child, lines)
}

/// Starts a Python worker that loops on `name` for `seconds` (`interop.py loop`) and returns
/// once it is ready, with the start it announced (Unix time, s).
fn python_looper(
    url: &str,
    name: &str,
    seconds: f64,
    hold: Duration,
) -> (Child, BufReader<std::process::ChildStdout>, f64) {
    let (seconds, hold) = (seconds.to_string(), hold.as_millis().to_string());
    let (child, lines, line) = python_started(url, &["loop", name, &seconds, &hold]);
    let start = line
        .strip_prefix("start ")
        .and_then(|start| start.trim().parse().ok())
        .unwrap_or_else(|| panic!("the Python worker did not start: {line:?}"));
    (child, lines, start)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_sees_the_others_lock_as_held() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let redlock = common::redlock(&masters);

    let (mut holder, _output) = python_holder(&url, "shared", "1");
    let refused = redlock.lock("shared").timeout(-1).await;
    assert!(
        matches!(refused, Err(LockError::Timeout { .. })),
        "Python's lock is held for Rust: {refused:?}"
    );
    holder.wait().unwrap();

    let guard = redlock.lock("shared").await.unwrap();
    assert_eq!(
        run_python(&url, &["try", "shared"]).trim(),
        "held",
        "Rust's lock is held for Python"
    );
    guard.release().await.unwrap();
    assert_eq!(run_python(&url, &["try", "shared"]).trim(), "acquired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sides_waiter_gets_the_lock_the_other_releases() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let redlock = common::redlock(&masters);

    // A Rust waiter behind a Python holder (which never announces its release).
    let (mut holder, mut lines) = python_holder(&url, "handover", "0.5");
    let started = Instant::now();
    let guard = redlock.lock("handover").timeout(10).await.unwrap();
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(
        line.trim(),
        "released",
        "acquired only after Python released"
    );
    // Python deletes its key without announcing it: the waiter takes it at its next 1 s
    // heartbeat. The 0.5 s hold, that heartbeat and the load margin make 2 s; 3 s leaves room
    // for Python's start-up, against a wait for the holder's 30 s TTL (Python's default).
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "promptly: {:?}",
        started.elapsed()
    );
    holder.wait().unwrap();

    // A Python waiter behind a Rust holder.
    let waiter = std::thread::spawn({
        let url = url.clone();
        move || run_python(&url, &["wait", "handover", "10"])
    });
    let counted = eventually(common::READY, || {
        get(&masters, 0, &waiting_key("handover")).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the Python waiter waits");
    guard.release().await.unwrap();
    assert_eq!(waiter.join().unwrap().trim(), "acquired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_statistics_are_read_across_languages() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let redlock = common::redlock(&masters);

    // Python waits behind Rust: the Rust reader sees the Python waiter.
    let guard = redlock.lock("stats").await.unwrap();
    let waiter = std::thread::spawn({
        let url = url.clone();
        move || run_python(&url, &["wait", "stats", "10"])
    });
    // The Python library counts the waiter first and registers its stats name right after
    // (two commands apart); the reader lists registered names, so wait for both.
    let counted = eventually(common::READY, || {
        get(&masters, 0, &waiting_key("stats")).as_deref() == Some("1")
            && common::registry(&masters, 0) == [r#""Waiting.ConfigurableLock.stats""#]
    })
    .await;
    assert!(counted, "the Python waiter is counted and registered");
    let contended = redlock.waiting().await.unwrap();
    assert_eq!(contended.len(), 1);
    assert_eq!(
        (contended[0].stats_name.as_str(), contended[0].waiters),
        ("stats", 1)
    );
    guard.release().await.unwrap();
    assert_eq!(waiter.join().unwrap().trim(), "acquired");

    // Rust waits behind Python: the Python library's keys show the Rust waiter.
    let (mut holder, _output) = python_holder(&url, "stats", "1");
    let rust_waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("stats").timeout(10).await.map(drop) }
    });
    let counted = eventually(common::READY, || {
        get(&masters, 0, &waiting_key("stats")).as_deref() == Some("1")
    })
    .await;
    assert!(counted, "the Rust waiter is counted where Python counts");
    let registry = common::registry(&masters, 0);
    assert_eq!(
        registry,
        [r#""Waiting.ConfigurableLock.stats""#],
        "one registry entry for both languages"
    );
    holder.wait().unwrap();
    rust_waiter.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_fleet_never_overlaps() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let (python_processes, python_rounds, rust_tasks, rust_rounds) = (2, 30, 4, 30);

    let pythons: Vec<_> = (0..python_processes)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                run_python(&url, &["stress", "mixed", &python_rounds.to_string()])
            })
        })
        .collect();
    let redlock = Redlock::new([&url]).unwrap();
    let data = redis::Client::open(url.as_str()).unwrap();
    let rust: Vec<_> = (0..rust_tasks)
        .map(|_| {
            let (redlock, data) = (redlock.clone(), data.clone());
            tokio::spawn(async move {
                let mut data = data.get_multiplexed_async_connection().await.unwrap();
                for _ in 0..rust_rounds {
                    let guard = redlock.lock("mixed").timeout(30).await.unwrap();
                    let inside: i64 = data.incr("interop:inside", 1).await.unwrap();
                    assert_eq!(inside, 1, "two holders inside the critical section");
                    let seen: Option<i64> = data.get("interop:counter").await.unwrap();
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    let _: () = data
                        .set("interop:counter", seen.unwrap_or(0) + 1)
                        .await
                        .unwrap();
                    let _: i64 = data.decr("interop:inside", 1).await.unwrap();
                    guard.release().await.unwrap();
                }
            })
        })
        .collect();
    for task in rust {
        task.await.unwrap();
    }
    for python in pythons {
        assert_eq!(
            python.join().unwrap().trim(),
            format!("done {python_rounds}")
        );
    }

    let counter: i64 = redis::cmd("GET")
        .arg("interop:counter")
        .query(&mut masters[0].connection())
        .unwrap();
    assert_eq!(
        counter,
        python_processes * python_rounds + rust_tasks * rust_rounds,
        "no increment lost to an overlap"
    );
}

/// A Python worker (which polls and never joins our queue) among two clients of ours that take
/// the lock back to back: it gets turns, as one more process of the queue would (before the
/// turns for foreign waiters, it got about 1% of the acquisitions and waited the whole run).
/// Our workers' shares beside it are measured by the bench (`--mixed-fleet`), not asserted:
/// about 20% each on an idle machine, a few % with one core busy (see the CHANGELOG).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_waiter_gets_turns_among_busy_workers_of_ours() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let hold = Duration::from_millis(5);
    let run_for = 6.0;
    // Ours start when the Python worker, ready, says it starts.
    let (mut python, mut lines, start) = python_looper(&url, "turns", run_for, hold);
    let unix_now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
    };
    let ours: Vec<_> = (0..2)
        .map(|_| {
            // A client of its own: another process, as the queue sees it.
            let redlock = Redlock::new([&url]).unwrap();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs_f64((start - unix_now()).max(0.0))).await;
                let mut acquisitions = 0u32;
                while unix_now() < start + run_for {
                    let guard = redlock.lock("turns").timeout(30).await.unwrap();
                    tokio::time::sleep(hold).await;
                    guard.release().await.unwrap();
                    acquisitions += 1;
                }
                acquisitions
            })
        })
        .collect();
    let mut total = 0;
    for worker in ours {
        total += worker.await.unwrap();
    }
    let mut output = String::new();
    lines.read_line(&mut output).unwrap();
    assert!(python.wait().unwrap().success(), "the Python worker failed");
    let numbers: Vec<f64> = output
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let (python_acquisitions, longest_wait) =
        (numbers[0], Duration::from_millis(numbers[1] as u64));
    let share = python_acquisitions / (python_acquisitions + f64::from(total));
    assert!(
        share >= 0.10,
        "the Python worker got {python_acquisitions} of {} acquisitions",
        python_acquisitions + f64::from(total)
    );
    // The promise: 2.5 s at most, plus the slack of a loaded machine.
    assert!(
        longest_wait < Duration::from_millis(2500) + common::SLACK,
        "the Python worker waited {longest_wait:?}"
    );
}
