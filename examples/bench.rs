//! Side-by-side latency of one uncontended acquire + release: the raw Redis floor against this
//! crate, interleaved in each repetition, on private `redis-server`s.
//!
//! `cargo run --release --example bench [-- --cycles N --reps R]`
//!
//! The floor is what any Redlock must send: `SET NX PX` then an `EVALSHA` compare-and-delete,
//! on one multiplexed connection per master, masters in parallel.

use std::time::{Duration, Instant};

use configurable_redlock::{Redlock, Timeout};
use futures_util::future::join_all;
use redis::{Script, aio::MultiplexedConnection};
use redlock_runtime::test_util::Masters;

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn floor_cycle(connections: &mut [MultiplexedConnection], script: &Script, value: &str) {
    join_all(connections.iter_mut().map(|c| async move {
        let _: Option<String> = redis::cmd("SET")
            .arg("bench:floor")
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(30_000)
            .query_async(c)
            .await
            .unwrap();
    }))
    .await;
    join_all(connections.iter_mut().map(|c| async move {
        let _: i64 = script
            .key("bench:floor")
            .arg(value)
            .invoke_async(c)
            .await
            .unwrap();
    }))
    .await;
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let cycles = arg("--cycles", 2_000);
    let reps = arg("--reps", 5);
    println!(
        "uncontended acquire+release, {cycles} cycles x {reps} repetitions, medians of per-repetition p50\n"
    );
    println!("| masters | floor p50 | crate p50 | crate/floor | floor p99 | crate p99 |");
    println!("|---|---|---|---|---|---|");
    for count in [1, 3] {
        let masters = Masters::start(count);
        let redlock = Redlock::new(masters.urls()).unwrap();
        let script = Script::new(RELEASE);
        let mut connections = Vec::new();
        for url in masters.urls() {
            let client = redis::Client::open(url).unwrap();
            connections.push(client.get_multiplexed_async_connection().await.unwrap());
        }
        // Warm up both: connections, script caches.
        for _ in 0..200 {
            floor_cycle(&mut connections, &script, "warm").await;
            redlock
                .lock("bench")
                .timeout(Timeout::Skip)
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        }
        let (mut floor_p50, mut crate_p50, mut floor_p99, mut crate_p99) =
            (vec![], vec![], vec![], vec![]);
        for _ in 0..reps {
            let mut floor = Vec::with_capacity(cycles);
            let mut ours = Vec::with_capacity(cycles);
            for _ in 0..cycles {
                // Interleave per cycle so that machine noise hits both alike.
                let value = uuid::Uuid::new_v4().to_string();
                let started = Instant::now();
                floor_cycle(&mut connections, &script, &value).await;
                floor.push(started.elapsed());
                let started = Instant::now();
                let guard = redlock.lock("bench").timeout(Timeout::Skip).await.unwrap();
                guard.release().await.unwrap();
                ours.push(started.elapsed());
            }
            floor_p50.push(percentile(&mut floor, 0.5).as_secs_f64() * 1e6);
            crate_p50.push(percentile(&mut ours, 0.5).as_secs_f64() * 1e6);
            floor_p99.push(percentile(&mut floor, 0.99).as_secs_f64() * 1e6);
            crate_p99.push(percentile(&mut ours, 0.99).as_secs_f64() * 1e6);
        }
        let ratios: Vec<f64> = crate_p50
            .iter()
            .zip(&floor_p50)
            .map(|(c, f)| c / f)
            .collect();
        println!(
            "| {count} | {:.1} µs | {:.1} µs | {:.3} | {:.1} µs | {:.1} µs |",
            median(floor_p50),
            median(crate_p50),
            median(ratios),
            median(floor_p99),
            median(crate_p99)
        );
    }
}
