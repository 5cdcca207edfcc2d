//! 3 replicas of a service each run the same 2 s schedule, with timers that fire up to 0.7 s
//! apart, and a 50 ms job under
//! `#[redlock(name = "example:report", timeout = -1, silent, min_hold = 1.5)]`: each tick runs
//! once, on whichever replica fires first. Without `min_hold` the job would be released long
//! before the other replicas fire, and each tick would run 3 times.
//!
//! `cargo run --example scheduled_jobs` starts its own `redis-server` unless `REDLOCK_URLS` or
//! `REDIS_URL` is set (it uses the first master), runs 3 replica processes for 6 ticks, and
//! prints which replica ran each tick.

use std::{
    process::{Command, Stdio},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use configurable_redlock::{LockError, redlock};
use redis::AsyncCommands;
use redlock_runtime::test_util::env_or_private_server;

const RUNS: &str = "example:schedule:runs";
const TICKS: u64 = 6;
const PERIOD_MS: u64 = 2_000;
/// When each replica's timer fires within a tick: as far apart as timers of real replicas.
const OFFSETS_MS: [u64; 3] = [0, 400, 700];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// The scheduled job: `Ok(())` when this replica ran it or another one holds the tick (a
/// skip), `Err` for an outage, which a scheduler should log.
#[redlock(name = "example:report", timeout = -1, silent, min_hold = 1.5)]
async fn report(
    replica: usize,
    data: &mut redis::aio::MultiplexedConnection,
) -> Result<(), LockError> {
    let _: i64 = data
        .rpush(RUNS, format!("{replica}:{}", now_ms()))
        .await
        .unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(50)).await; // the work
    Ok(())
}

/// One replica: its own interval, from `start_ms` plus its offset.
async fn replica(index: usize, url: &str, start_ms: u64) {
    let client = redis::Client::open(url).expect("REDIS_URL");
    let mut data = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let first = start_ms + OFFSETS_MS[index];
    tokio::time::sleep(Duration::from_millis(first.saturating_sub(now_ms()))).await;
    let mut interval = tokio::time::interval(Duration::from_millis(PERIOD_MS));
    for _ in 0..TICKS {
        interval.tick().await;
        if let Err(error) = report(index, &mut data).await {
            eprintln!("replica {index}: {error}");
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--replica") {
        let index = args[at + 1].parse().expect("a replica index");
        let start_ms = args[at + 2].parse().expect("a start time");
        let url = std::env::var("REDIS_URL").expect("REDIS_URL");
        return replica(index, &url, start_ms).await;
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
    let _: () = data.del(RUNS).await.unwrap();
    // The replicas start their schedules together, a second from now.
    let start_ms = now_ms() + 1_000;
    println!(
        "3 replicas, a 2 s schedule each (timers {OFFSETS_MS:?} ms apart), {TICKS} ticks, a 50 ms job, min_hold = 1.5 s\n"
    );
    let replicas: Vec<_> = (0..OFFSETS_MS.len())
        .map(|index| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--replica", &index.to_string(), &start_ms.to_string()])
                .env("REDIS_URL", &url)
                .env_remove("REDLOCK_URLS")
                .stdout(Stdio::inherit())
                .spawn()
                .expect("start a replica process")
        })
        .collect();
    for mut replica in replicas {
        assert!(
            replica.wait().expect("replica").success(),
            "a replica failed"
        );
    }

    let runs: Vec<String> = data.lrange(RUNS, 0, -1).await.unwrap();
    let mut per_tick: Vec<Vec<usize>> = vec![Vec::new(); TICKS as usize];
    for run in &runs {
        let (replica, at) = run.split_once(':').expect("replica:ms");
        let tick = (at.parse::<u64>().unwrap().saturating_sub(start_ms) / PERIOD_MS) as usize;
        per_tick[tick.min(TICKS as usize - 1)].push(replica.parse().unwrap());
    }
    println!("| tick | ran on replica(s) |");
    println!("|---|---|");
    for (tick, ran_on) in per_tick.iter().enumerate() {
        println!("| {tick} | {ran_on:?} |");
    }
    let once = per_tick.iter().all(|ran_on| ran_on.len() == 1);
    println!(
        "\n{} runs for {TICKS} ticks: {}",
        runs.len(),
        if once {
            "each tick ran exactly once"
        } else {
            "SOME TICK RAN TWICE OR NOWHERE"
        }
    );
    if !once {
        std::process::exit(1);
    }
}
