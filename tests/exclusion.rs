//! Mutual exclusion: tasks in three OS processes increment a shared counter non-atomically
//! (GET, pause, SET) under one lock over 3 masters. Any overlap loses increments, and an
//! atomic "inside" gauge catches it directly.
//!
//! The test re-runs its own executable as the worker processes (with `WORKER_ENV` set).

mod common;

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use configurable_redlock::Redlock;
use redis::AsyncCommands;
use redlock_runtime::test_util::Masters;

const WORKER_ENV: &str = "REDLOCK_EXCLUSION_WORKER_URLS";
const TASKS: usize = 4;
const ROUNDS: usize = 25;
const COUNTER: &str = "exclusion:counter";
const INSIDE: &str = "exclusion:inside";

/// Runs `TASKS` tasks of `ROUNDS` locked increments; returns how many it made.
async fn work(urls: Vec<String>) -> usize {
    let redlock = Redlock::new(&urls).unwrap();
    let data = redis::Client::open(urls[0].as_str()).unwrap();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let (redlock, data) = (redlock.clone(), data.clone());
            tokio::spawn(async move {
                let mut data = data.get_multiplexed_async_connection().await.unwrap();
                for _ in 0..ROUNDS {
                    let guard = redlock.lock("exclusion").timeout(0).await.unwrap();
                    let inside: i64 = data.incr(INSIDE, 1).await.unwrap();
                    assert_eq!(inside, 1, "two holders inside the critical section");
                    let seen: i64 = data.get(COUNTER).await.unwrap();
                    tokio::time::sleep(Duration::from_micros(fastrand_micros())).await;
                    let _: () = data.set(COUNTER, seen + 1).await.unwrap();
                    let _: i64 = data.decr(INSIDE, 1).await.unwrap();
                    guard.release().await.unwrap();
                }
                ROUNDS
            })
        })
        .collect();
    let mut done = 0;
    for task in tasks {
        done += task.await.unwrap();
    }
    done
}

fn fastrand_micros() -> u64 {
    u64::from(uuid::Uuid::new_v4().as_bytes()[0]) * 8 // 0..2 ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_in_three_processes_never_overlap() {
    if let Ok(urls) = std::env::var(WORKER_ENV) {
        let done = work(urls.split(',').map(str::to_owned).collect()).await;
        assert_eq!(done, TASKS * ROUNDS);
        println!("WORKER_DONE={done}");
        return;
    }
    let masters = Masters::start(3);
    let mut raw = masters[0].connection();
    let _: () = redis::cmd("SET")
        .arg(COUNTER)
        .arg(0)
        .query(&mut raw)
        .unwrap();

    let children: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "tasks_in_three_processes_never_overlap",
                    "--nocapture",
                ])
                .env(WORKER_ENV, masters.urls().join(","))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .map(|child| tokio::task::spawn_blocking(move || child.wait_with_output()))
        .collect();
    // This process is the third worker.
    let mut done = work(masters.urls()).await;
    for child in children {
        let output = child.await.unwrap().expect("wait for a worker process");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "worker failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let reported = stdout
            .lines()
            .find_map(|line| line.strip_prefix("WORKER_DONE="))
            .unwrap_or_else(|| panic!("worker reported nothing:\n{stdout}"));
        done += reported.parse::<usize>().unwrap();
    }

    let counter: i64 = redis::cmd("GET").arg(COUNTER).query(&mut raw).unwrap();
    assert_eq!(done, 3 * TASKS * ROUNDS);
    assert_eq!(
        counter,
        i64::try_from(done).unwrap(),
        "increments lost to an overlap"
    );
}
