//! This crate against the raw Redis floor, on private `redis-server`s:
//! - uncontended acquire + release, interleaved with the floor in each repetition;
//! - handoff (holder releases -> the next waiter holds it) against a raw `PING`;
//! - 4 workers on one lock: throughput, fairness (Jain), waits, Redis commands per acquisition.
//!
//! `cargo run --release --example bench [-- --cycles N --reps R --seconds S]`
//!
//! The floor is what any Redlock must send: `SET NX PX` then an `EVALSHA` compare-and-delete,
//! on one multiplexed connection per master, masters in parallel.

use std::time::{Duration, Instant};

use configurable_redlock::{Redlock, Timeout};
use futures_util::future::join_all;
use redis::{Script, aio::MultiplexedConnection};
use redlock_runtime::test_util::{Masters, RedisServer};

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

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// p50 of `samples` raw `PING`s on one connection.
async fn ping_p50(connection: &mut MultiplexedConnection, samples: usize) -> Duration {
    let mut rtts = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let _: String = redis::cmd("PING").query_async(connection).await.unwrap();
        rtts.push(started.elapsed());
    }
    percentile(&mut rtts, 0.5)
}

/// Holder releases -> a queued waiter holds the lock, `samples` times.
async fn handoffs(redlock: &Redlock, samples: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let held = redlock.lock("bench:handoff").await.unwrap();
        let waiter = tokio::spawn({
            let redlock = redlock.clone();
            async move {
                let guard = redlock.lock("bench:handoff").timeout(10).await.unwrap();
                let at = Instant::now();
                guard.release().await.unwrap();
                at
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await; // the waiter queues and subscribes
        let released = Instant::now();
        held.release().await.unwrap();
        latencies.push(waiter.await.unwrap() - released);
    }
    latencies
}

/// Calls per command name from `INFO commandstats`.
fn command_calls(server: &RedisServer) -> Vec<(String, u64)> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.connection())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest
                .strip_prefix("calls=")?
                .split(',')
                .next()?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// Commands a client sends itself (the rest of `commandstats` runs inside our scripts).
fn sent_by_client(name: &str) -> bool {
    matches!(
        name,
        "evalsha"
            | "eval"
            | "decrby"
            | "incrby"
            | "subscribe"
            | "unsubscribe"
            | "ping"
            | "hello"
            | "select"
    ) || name.starts_with("script|")
        || name.starts_with("client|")
}

async fn contention(masters: &Masters, hold: Duration, run_for: Duration) {
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut masters[0].connection())
        .unwrap();
    let stop_at = Instant::now() + run_for;
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let redlock = Redlock::new(masters.urls()).unwrap();
            tokio::spawn(async move {
                let (mut waits, mut held) = (Vec::new(), Duration::ZERO);
                while Instant::now() < stop_at {
                    let asked = Instant::now();
                    let guard = redlock.lock("bench:fair").timeout(30).await.unwrap();
                    waits.push(asked.elapsed());
                    let holding = Instant::now();
                    if !hold.is_zero() {
                        tokio::time::sleep(hold).await;
                    }
                    held += holding.elapsed();
                    guard.release().await.unwrap();
                }
                (waits, held)
            })
        })
        .collect();
    let (mut counts, mut waits, mut held) = (Vec::new(), Vec::new(), Duration::ZERO);
    for worker in workers {
        let (worker_waits, worker_held) = worker.await.unwrap();
        counts.push(worker_waits.len() as f64);
        waits.extend(worker_waits);
        held += worker_held;
    }
    let total: f64 = counts.iter().sum();
    let jain = total * total / (counts.len() as f64 * counts.iter().map(|c| c * c).sum::<f64>());
    let throughput = total / run_for.as_secs_f64();
    // tokio's timer rounds a 5 ms sleep up to its next millisecond tick: use the real hold.
    let mean_hold = held.as_secs_f64() / total;
    let versus_hold = if hold.is_zero() {
        "-".to_owned()
    } else {
        format!(
            "{:.2} (real hold {:.2} ms)",
            throughput * mean_hold,
            mean_hold * 1e3
        )
    };
    let calls = command_calls(&masters[0]);
    let (sent, internal): (Vec<_>, Vec<_>) =
        calls.iter().partition(|(name, _)| sent_by_client(name));
    let per_acquisition =
        |list: &[&(String, u64)]| list.iter().map(|(_, calls)| *calls).sum::<u64>() as f64 / total;
    let max = waits.iter().max().copied().unwrap_or_default();
    println!(
        "| {} | {} ms | {throughput:.0}/s | {versus_hold} | {jain:.3} | {counts:?} | {:.1} / {:.1} / {:.1} ms | {:.2} | {:.2} |",
        masters.servers().len(),
        hold.as_millis(),
        percentile(&mut waits, 0.5).as_secs_f64() * 1e3,
        percentile(&mut waits, 0.99).as_secs_f64() * 1e3,
        max.as_secs_f64() * 1e3,
        per_acquisition(&sent),
        per_acquisition(&sent) + per_acquisition(&internal),
    );
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

    let samples = arg("--handoffs", 200);
    println!("\nhandoff: holder releases -> the queued waiter holds the lock, {samples} samples\n");
    println!("| masters | PING p50 | handoff p50 | handoff p99 | p50 / PING | p99 / PING |");
    println!("|---|---|---|---|---|---|");
    for count in [1, 3] {
        let masters = Masters::start(count);
        let redlock = Redlock::new(masters.urls()).unwrap();
        let client = redis::Client::open(masters.urls()[0].as_str()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let _ = handoffs(&redlock, 20).await; // warm-up
        let mut latencies = handoffs(&redlock, samples).await;
        let ping = ping_p50(&mut connection, 1_000).await;
        let (p50, p99) = (
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
        );
        println!(
            "| {count} | {:.1} µs | {:.1} µs | {:.1} µs | {:.2} | {:.2} |",
            micros(ping),
            micros(p50),
            micros(p99),
            p50.as_secs_f64() / ping.as_secs_f64(),
            p99.as_secs_f64() / ping.as_secs_f64()
        );
    }

    let seconds = arg("--seconds", 10);
    println!(
        "\n4 workers (separate clients) on one lock for {seconds} s; commands per acquisition counted on master 0\n"
    );
    println!(
        "| masters | hold | throughput | x hold | Jain | per worker | wait p50 / p99 / max | client cmds/acq | server cmds/acq |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for count in [1, 3] {
        let masters = Masters::start(count);
        for hold in [5, 0] {
            contention(
                &masters,
                Duration::from_millis(hold),
                Duration::from_secs(seconds as u64),
            )
            .await;
        }
    }
}
