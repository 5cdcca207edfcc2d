//! Several worker processes pull jobs from a shared Redis list and handle each one under
//! `#[redlock(name = "job:{id}", timeout = -1, silent)]`. The queue delivers every job three
//! times (at-least-once delivery, as real queues do), so workers often receive a job that
//! another worker is running: the attribute skips it silently.
//!
//! `cargo run --example job_workers` starts its own `redis-server` unless `REDLOCK_URLS` or
//! `REDIS_URL` is set (it uses the first master),
//! runs 4 worker processes, and prints a summary that shows no job ran twice.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use configurable_redlock::redlock;
use redis::AsyncCommands;
use redlock_runtime::test_util::env_or_private_server;

const QUEUE: &str = "example:jobs:queue";
const DONE: &str = "example:jobs:done";
const JOBS: u64 = 40;
const DELIVERIES: u64 = 3;
const WORKERS: usize = 4;

/// What a worker did with one delivery.
#[derive(Debug, Default, PartialEq)]
enum Outcome {
    /// Another worker held the job's lock: `silent` returned the default.
    #[default]
    SkippedHeld,
    /// The job was already done by an earlier delivery.
    AlreadyDone,
    /// This worker ran the job.
    Ran,
}

/// Runs job `id` at most once: the lock keeps two workers out at the same time, and the
/// "done" set, checked under the lock, keeps a later redelivery from running it again.
#[redlock(name = "job:{id}", timeout = -1, silent)]
async fn handle(id: u64, data: &mut redis::aio::MultiplexedConnection) -> Outcome {
    let done: bool = data.sismember(DONE, id).await.unwrap_or(false);
    if done {
        return Outcome::AlreadyDone;
    }
    tokio::time::sleep(Duration::from_millis(20 + id % 30)).await; // the work
    let _: i64 = data
        .incr(format!("example:jobs:runs:{id}"), 1)
        .await
        .unwrap_or(0);
    let _: i64 = data.sadd(DONE, id).await.unwrap_or(0);
    Outcome::Ran
}

async fn worker(url: &str) -> [u64; 3] {
    let client = redis::Client::open(url).expect("REDIS_URL");
    let mut data = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let mut counts = [0; 3];
    while let Some(id) = data
        .lpop::<_, Option<u64>>(QUEUE, None)
        .await
        .expect("LPOP")
    {
        let slot = match handle(id, &mut data).await {
            Outcome::Ran => 0,
            Outcome::SkippedHeld => 1,
            Outcome::AlreadyDone => 2,
        };
        counts[slot] += 1;
    }
    counts
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|arg| arg == "--worker") {
        let url = std::env::var("REDIS_URL").expect("REDIS_URL");
        let [ran, held, done] = worker(&url).await;
        println!("{ran} {held} {done}");
        return;
    }

    let Ok((urls, _private_server)) = env_or_private_server().map_err(|error| eprintln!("{error}"))
    else {
        std::process::exit(1);
    };
    let url = urls[0].clone();
    let client = redis::Client::open(url.as_str()).expect("a Redis URL");
    let mut data = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect to Redis");
    let _: () = redis::pipe()
        .del(QUEUE)
        .del(DONE)
        .query_async(&mut data)
        .await
        .unwrap();
    for id in 1..=JOBS {
        let _: () = data.del(format!("example:jobs:runs:{id}")).await.unwrap();
        for _ in 0..DELIVERIES {
            let _: i64 = data.rpush(QUEUE, id).await.unwrap();
        }
    }
    println!("{JOBS} jobs, each delivered {DELIVERIES} times, {WORKERS} worker processes\n");

    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .arg("--worker")
                .env("REDIS_URL", &url)
                .env_remove("REDLOCK_URLS")
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .collect();
    let mut totals = [0; 3];
    println!("| worker | ran | skipped (held by another worker) | already done |");
    println!("|---|---|---|---|");
    for (index, worker) in workers.into_iter().enumerate() {
        let output = worker.wait_with_output().expect("worker output");
        assert!(output.status.success(), "worker {index} failed");
        let counts: Vec<u64> = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .map(|n| n.parse().expect("a count"))
            .collect();
        println!(
            "| {index} | {} | {} | {} |",
            counts[0], counts[1], counts[2]
        );
        for (total, count) in totals.iter_mut().zip(counts) {
            *total += count;
        }
    }

    let mut ran_twice = Vec::new();
    for id in 1..=JOBS {
        let runs: u64 = data
            .get(format!("example:jobs:runs:{id}"))
            .await
            .unwrap_or(0);
        if runs != 1 {
            ran_twice.push((id, runs));
        }
    }
    println!(
        "| all | {} | {} | {} |\n\ndeliveries: {}, jobs run: {} of {JOBS}, jobs not run exactly once: {:?}",
        totals[0],
        totals[1],
        totals[2],
        totals.iter().sum::<u64>(),
        totals[0],
        ran_twice
    );
    assert!(ran_twice.is_empty(), "a job ran twice or never");
    println!("OK: every job ran exactly once");
}
