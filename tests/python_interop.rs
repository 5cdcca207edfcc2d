//! Interoperability with the real Python library (configurable-redlock 1.0.0, on pottery),
//! against the same redis-server: each side sees the other's lock, each side's waiter gets the
//! lock the other releases, a mixed stress run has no overlap, and waiting statistics written
//! by either side are read by the other.
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

/// Starts a Python holder and returns once it holds the lock.
fn python_holder(
    url: &str,
    name: &str,
    seconds: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = python_command(url, &["hold", name, seconds])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start python");
    let mut lines = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    lines.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "holding");
    (child, lines)
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
    // for Python's start-up, against a wait for the holder's 30 s TTL.
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
