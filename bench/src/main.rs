//! This crate against the raw Redis floor and against `rslock`, side by side in one run, on
//! private `redis-server`s started here:
//! - uncontended acquire + release, 1 and 3 masters: floor, API, `#[redlock]`, rslock,
//!   interleaved cycle by cycle;
//! - skip when held (`timeout = -1`) against one raw `SET NX` per master, 1 and 3 masters;
//!   split votes: 3 clients trying one fresh name at once, with a master down or paused;
//! - handoff (holder releases -> the next waiter holds it) against a raw `PING`;
//! - 4 worker processes on one lock: throughput, fairness (Jain, and acquisitions in a row by
//!   one process: how much a releaser barges ahead of the waiters), waits, the commands each
//!   acquisition costs, counted with `MONITOR` (sent by clients / run inside scripts), and
//!   master 0's CPU per acquisition against an uncontended acquire + release; the full run
//!   draws the waits as `bench/waits-hold-5ms.svg` and `bench/waits-no-hold.svg`;
//! - liveness: a cold start of thousands of waiters on a busy machine, a mixed fleet with the
//!   Python library, a dead head of the queue (`--liveness` runs only these);
//! - 1,000 tasks on distinct names in one process, against the floor at the same concurrency,
//!   1 and 3 masters, with the client's CPU per cycle;
//! - 10,000 guards held at once, renewed by the watchdog: renewals per second, how many one
//!   server read carries (batching), the client's CPU per renewal, losses (`--scale` runs
//!   only these and the row above);
//! - memory: RSS over 100,000 cycles on 100,000 distinct names.
//!
//! `cargo run --release -p redlock-bench [-- --quick] [-- --uncontended] [-- --waiting] [-- --liveness] [-- --paused] [-- --replicas] [-- --scale]
//! [-- --json PATH]`; `-- --profile-distinct` runs only the API's distinct-names loop (1 master,
//! 8 s) and prints its rate and CPU per cycle, for A/B runs and `perf record`.
//!
//! The floor is what any Redlock must send: `SET NX PX`, then an `EVALSHA` compare-and-delete,
//! on one multiplexed connection per master, masters in parallel. rslock runs with its
//! defaults (3 retries, retry delay up to 200 ms) except where a row says otherwise.

use std::{
    future::Future,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    pin::Pin,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use configurable_redlock::{LockError, Redlock, Timeout, redlock};
use futures_util::future::join_all;
use redis::{Script, aio::MultiplexedConnection};
use redlock_runtime::test_util::Masters;
use rslock::LockManager;

mod chart;
mod liveness;

const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
const TTL: Duration = Duration::from_secs(30);

/// How much to measure: the full run, or a smoke run under a minute (`--quick`).
struct Plan {
    cycles: usize,
    reps: usize,
    handoffs: usize,
    peer_handoffs: usize,
    contention: Duration,
    scale: Duration,
    held: Duration,
    memory_cycles: usize,
    cold_start_tasks: usize,
    mixed_fleet: Duration,
}

impl Plan {
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--quick") {
            Self {
                cycles: 200,
                reps: 2,
                handoffs: 20,
                peer_handoffs: 5,
                contention: Duration::from_secs(1),
                scale: Duration::from_secs(1),
                held: Duration::from_secs(6),
                memory_cycles: 10_000,
                cold_start_tasks: 200,
                mixed_fleet: Duration::from_secs(3),
            }
        } else {
            Self {
                cycles: 2_000,
                reps: 5,
                handoffs: 200,
                peer_handoffs: 30,
                contention: Duration::from_secs(10),
                scale: Duration::from_secs(5),
                held: Duration::from_secs(60),
                memory_cycles: 100_000,
                cold_start_tasks: 2_000,
                mixed_fleet: Duration::from_secs(20),
            }
        }
    }
}

/// The tables printed to stdout and, with `--json PATH`, written as JSON.
#[derive(Default)]
struct Report {
    sections: Vec<Section>,
}

struct Section {
    title: String,
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Report {
    fn section(&mut self, title: impl Into<String>, headers: Vec<&'static str>) {
        let title = title.into();
        println!(
            "\n{title}\n\n| {} |\n|{}",
            headers.join(" | "),
            "---|".repeat(headers.len())
        );
        self.sections.push(Section {
            title,
            headers,
            rows: Vec::new(),
        });
    }

    fn row(&mut self, cells: Vec<String>) {
        println!("| {} |", cells.join(" | "));
        self.sections
            .last_mut()
            .expect("a section")
            .rows
            .push(cells);
    }

    fn json(&self) -> String {
        let quote = |text: &str| format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""));
        let list = |items: Vec<String>| format!("[{}]", items.join(","));
        let sections = self.sections.iter().map(
            |Section {
                 title,
                 headers,
                 rows,
             }| {
                let headers = list(headers.iter().map(|header| quote(header)).collect());
                let rows = rows
                    .iter()
                    .map(|row| list(row.iter().map(|cell| quote(cell)).collect()))
                    .collect();
                format!(
                    "{{\"title\":{},\"headers\":{headers},\"rows\":{}}}",
                    quote(title),
                    list(rows)
                )
            },
        );
        format!("{{\"sections\":{}}}\n", list(sections.collect()))
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    samples[((samples.len() - 1) as f64 * p) as usize]
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn us(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// Raw connections, one per master, for the floor.
async fn raw_connections(masters: &Masters) -> Vec<MultiplexedConnection> {
    let mut connections = Vec::new();
    for url in masters.urls() {
        let client = redis::Client::open(url).unwrap();
        connections.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    connections
}

async fn floor_cycle(connections: &[MultiplexedConnection], script: &Script, key: &str) {
    let value = uuid::Uuid::new_v4().to_string();
    let value = &value;
    join_all(connections.iter().map(|connection| async move {
        let _: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .arg("NX")
            .arg("PX")
            .arg(TTL.as_millis() as u64)
            .query_async(&mut connection.clone())
            .await
            .unwrap();
    }))
    .await;
    join_all(connections.iter().map(|connection| async move {
        let _: i64 = script
            .key(key)
            .arg(value)
            .invoke_async(&mut connection.clone())
            .await
            .unwrap();
    }))
    .await;
}

#[redlock(name = "bench:macro", timeout = -1, silent, client = redlock)]
async fn with_macro(redlock: &Redlock) -> bool {
    true
}

/// One acquire + release. A round that a busy machine pushed past the per-master timeout
/// (1,000 tasks on 3 masters, on 2 cores) is tried again: the rows measure cycles done.
async fn api_cycle(redlock: &Redlock, name: &str) {
    loop {
        match redlock.lock(name).timeout(Timeout::Skip).await {
            Ok(guard) => {
                if guard.release().await.is_ok() {
                    return;
                }
            }
            Err(LockError::Unavailable { .. }) => {}
            Err(other) => panic!("{other}"),
        }
    }
}

async fn rslock_cycle(manager: &LockManager) {
    let lock = manager.lock("bench:rslock", TTL).await.unwrap();
    manager.unlock(&lock).await;
}

async fn timed(samples: &mut Vec<Duration>, cycle: impl Future<Output = ()>) {
    let started = Instant::now();
    cycle.await;
    samples.push(started.elapsed());
}

async fn uncontended(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let manager = LockManager::new(masters.urls());
    let connections = raw_connections(&masters).await;
    let script = Script::new(RELEASE);
    let names = ["floor", "API", "#[redlock]", "rslock"];
    let mut per_rep: Vec<Vec<(Duration, Duration, f64)>> = vec![Vec::new(); names.len()];
    for rep in 0..=plan.reps {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(plan.cycles); names.len()];
        for cycle in 0..plan.cycles {
            // Rotate the order each cycle, so that no implementation always follows another.
            for turn in 0..names.len() {
                let which = (cycle + turn) % names.len();
                let into = &mut samples[which];
                match which {
                    0 => timed(into, floor_cycle(&connections, &script, "bench:floor")).await,
                    1 => timed(into, api_cycle(&redlock, "bench:api")).await,
                    2 => timed(into, async { assert!(with_macro(&redlock).await) }).await,
                    _ => timed(into, rslock_cycle(&manager)).await,
                }
            }
        }
        if rep == 0 {
            continue; // warm-up: connections, script caches
        }
        for (which, mut latencies) in samples.into_iter().enumerate() {
            let mean = latencies.iter().sum::<Duration>().as_secs_f64() / latencies.len() as f64;
            let (p50, p99) = (
                percentile(&mut latencies, 0.5),
                percentile(&mut latencies, 0.99),
            );
            per_rep[which].push((p50, p99, 1.0 / mean));
        }
    }
    let floor_p50: Vec<f64> = per_rep[0]
        .iter()
        .map(|(p50, _, _)| p50.as_secs_f64())
        .collect();
    for (name, reps) in names.iter().zip(&per_rep) {
        let p50 = median(reps.iter().map(|(p50, _, _)| p50.as_secs_f64()).collect());
        let p99 = median(reps.iter().map(|(_, p99, _)| p99.as_secs_f64()).collect());
        let rate = median(reps.iter().map(|(_, _, rate)| *rate).collect());
        let ratio = median(
            reps.iter()
                .zip(&floor_p50)
                .map(|((p50, _, _), floor)| p50.as_secs_f64() / floor)
                .collect(),
        );
        report.row(vec![
            count.to_string(),
            (*name).to_owned(),
            us(Duration::from_secs_f64(p50)),
            us(Duration::from_secs_f64(p99)),
            format!("{rate:.0}/s"),
            format!("{ratio:.3}"),
        ]);
    }
}

async fn skip_when_held(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut manager = LockManager::new(masters.urls());
    manager.set_retry(1, Duration::from_millis(1));
    let connections = raw_connections(&masters).await;
    for server in masters.servers() {
        for key in [
            "redlock:ConfigurableLock.bench:held",
            "bench:held",
            "bench:rslock-held",
        ] {
            let _: () = redis::cmd("SET")
                .arg(key)
                .arg("someone-else")
                .query(&mut server.connection())
                .unwrap();
        }
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); 3];
    for _ in 0..plan.cycles * plan.reps {
        // The floor: one `SET NX` to every master in parallel.
        timed(&mut samples[0], async {
            join_all(connections.iter().map(|connection| async move {
                let _: Option<String> = redis::cmd("SET")
                    .arg("bench:held")
                    .arg("x")
                    .arg("NX")
                    .arg("PX")
                    .arg(30_000)
                    .query_async(&mut connection.clone())
                    .await
                    .unwrap();
            }))
            .await;
        })
        .await;
        timed(&mut samples[1], async {
            let skipped = redlock.lock("bench:held").timeout(Timeout::Skip).await;
            assert!(skipped.is_err());
        })
        .await;
        timed(&mut samples[2], async {
            assert!(manager.lock("bench:rslock-held", TTL).await.is_err());
        })
        .await;
    }
    let floor = percentile(&mut samples[0], 0.5);
    let names = ["raw SET NX", "API timeout -1", "rslock (1 try)"];
    for (name, latencies) in names.iter().zip(&mut samples) {
        let p50 = percentile(latencies, 0.5);
        report.row(vec![
            count.to_string(),
            (*name).to_owned(),
            us(p50),
            us(percentile(latencies, 0.99)),
            format!("{:.3}", p50.as_secs_f64() / floor.as_secs_f64()),
        ]);
    }
}

/// Three clients try a fresh name with `timeout = -1` at once, `rounds` times, over 3 masters
/// (all up, one refusing connections, one paused): rounds won by nobody, by several, and how
/// long the slowest client of a round took to its answer (p50, p99 over rounds).
async fn split_votes(report: &mut Report, rounds: usize) {
    for fault in ["all up", "one refusing connections", "one paused"] {
        let masters = Masters::start(3);
        let config = configurable_redlock::Config {
            master_timeout: Duration::from_millis(100),
            ..configurable_redlock::Config::new(masters.urls())
        };
        let clients: Vec<Redlock> = (0..3)
            .map(|_| Redlock::with_config(config.clone()).unwrap())
            .collect();
        for client in &clients {
            client
                .lock("bench:warm-up")
                .await
                .unwrap()
                .release()
                .await
                .unwrap();
        }
        match fault {
            "one refusing connections" => masters[2].kill(),
            "one paused" => masters[2].pause(),
            _ => {}
        }
        let (mut lost, mut doubled) = (0, 0);
        let mut slowest = Vec::with_capacity(rounds);
        for round in 0..rounds {
            let name = format!("bench:split:{round}");
            let start = Arc::new(tokio::sync::Barrier::new(3));
            let results = join_all(clients.iter().map(|client| {
                let (client, start, name) = (client.clone(), Arc::clone(&start), name.clone());
                tokio::spawn(async move {
                    start.wait().await;
                    let began = Instant::now();
                    (
                        client.lock(&name).timeout(Timeout::Skip).await,
                        began.elapsed(),
                    )
                })
            }))
            .await;
            let mut winners = Vec::new();
            let mut round_took = Duration::ZERO;
            for joined in results {
                let (result, took) = joined.unwrap();
                round_took = round_took.max(took);
                if let Ok(guard) = result {
                    winners.push(guard);
                }
            }
            slowest.push(round_took);
            lost += usize::from(winners.is_empty());
            doubled += usize::from(winners.len() > 1);
            for guard in winners {
                guard.release().await.unwrap();
            }
        }
        if fault == "one paused" {
            masters[2].resume();
        }
        report.row(vec![
            fault.to_owned(),
            rounds.to_string(),
            lost.to_string(),
            doubled.to_string(),
            ms(percentile(&mut slowest, 0.5)),
            ms(percentile(&mut slowest, 0.99)),
        ]);
    }
}

/// Holder releases -> a waiting task holds the lock, `samples` times, for either library.
async fn handoffs(masters: &Masters, rslock: bool, samples: usize) -> Vec<Duration> {
    let redlock = Redlock::new(masters.urls()).unwrap();
    let manager = LockManager::new(masters.urls());
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let latency = if rslock {
            let lock = manager.lock("bench:handoff", TTL).await.unwrap();
            let waiter = tokio::spawn({
                let manager = manager.clone();
                async move {
                    let guard = manager.acquire("bench:handoff", TTL).await.unwrap();
                    let at = Instant::now();
                    guard.release().await;
                    at
                }
            });
            tokio::time::sleep(Duration::from_millis(5)).await; // the waiter is waiting
            let released = Instant::now();
            manager.unlock(&lock).await;
            waiter.await.unwrap().saturating_duration_since(released)
        } else {
            let guard = redlock.lock("bench:handoff").await.unwrap();
            let waiter = tokio::spawn({
                let redlock = redlock.clone();
                async move {
                    let guard = redlock.lock("bench:handoff").timeout(10).await.unwrap();
                    let at = Instant::now();
                    guard.release().await.unwrap();
                    at
                }
            });
            tokio::time::sleep(Duration::from_millis(5)).await; // queued and subscribed
            let released = Instant::now();
            guard.release().await.unwrap();
            waiter.await.unwrap().saturating_duration_since(released)
        };
        latencies.push(latency);
    }
    latencies
}

/// The median of `count` `PING` round trips, each after `idle` of sleep.
async fn ping_p50(
    connection: &mut MultiplexedConnection,
    count: usize,
    idle: Duration,
) -> Duration {
    let mut pings = Vec::with_capacity(count);
    for _ in 0..count {
        if !idle.is_zero() {
            tokio::time::sleep(idle).await;
        }
        timed(&mut pings, async {
            let _: String = redis::cmd("PING").query_async(connection).await.unwrap();
        })
        .await;
    }
    percentile(&mut pings, 0.5)
}

async fn handoff(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let mut connection = raw_connections(&masters).await.remove(0);
    let ping = ping_p50(&mut connection, 1_000, Duration::ZERO).await;
    // The handoff starts after 5 ms of idling (the waiter queues meanwhile), when the threads
    // and the server sleep: the same round trip after the same idling is the fair reference.
    let idle_ping = ping_p50(&mut connection, 200, Duration::from_millis(5)).await;
    for (name, rslock, samples) in [
        ("API", false, plan.handoffs),
        ("rslock", true, plan.peer_handoffs),
    ] {
        let _ = handoffs(&masters, rslock, 3).await; // warm-up
        let mut latencies = handoffs(&masters, rslock, samples).await;
        let (p50, p99) = (
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
        );
        report.row(vec![
            count.to_string(),
            name.to_owned(),
            format!("{} / {}", us(ping), us(idle_ping)),
            us(p50),
            us(p99),
            format!("{:.2}", p50.as_secs_f64() / ping.as_secs_f64()),
            format!("{:.2}", p99.as_secs_f64() / ping.as_secs_f64()),
            format!(
                "{:.2} / {:.2}",
                p50.as_secs_f64() / idle_ping.as_secs_f64(),
                p99.as_secs_f64() / idle_ping.as_secs_f64()
            ),
        ]);
    }
}

/// Counts the commands one server runs while `stop` is unset, with `MONITOR`: those sent by
/// clients, and those run inside scripts (`[0 lua]`).
fn monitor(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect MONITOR");
    stream.write_all(b"MONITOR\r\n").expect("send MONITOR");
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    std::thread::spawn(move || {
        let (mut sent, mut in_scripts) = (0, 0);
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        while !stop.load(Ordering::Relaxed) {
            line.clear();
            if lines.read_line(&mut line).is_err() || !line.starts_with('+') || line == "+OK\r\n" {
                continue;
            }
            if line.contains(" lua] ") {
                in_scripts += 1;
            } else {
                sent += 1;
            }
        }
        (sent, in_scripts)
    })
}

type Release = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// One worker's loop on the shared lock: its waits with when each ended (µs since the epoch),
/// and its total hold time.
async fn worker(
    masters: Vec<String>,
    rslock: bool,
    hold: Duration,
    stop_at: Instant,
) -> (Vec<(Duration, u128)>, Duration) {
    let redlock = Redlock::new(&masters).unwrap();
    let manager = LockManager::new(masters);
    let (mut waits, mut held) = (Vec::new(), Duration::ZERO);
    while Instant::now() < stop_at {
        let asked = Instant::now();
        let release: Release = if rslock {
            let guard = manager.acquire("bench:fair", TTL).await.unwrap();
            Box::new(move || Box::pin(guard.release()))
        } else {
            let guard = redlock.lock("bench:fair").timeout(60).await.unwrap();
            Box::new(move || Box::pin(async move { guard.release().await.unwrap() }))
        };
        let acquired_at = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        waits.push((asked.elapsed(), acquired_at.as_micros()));
        let holding = Instant::now();
        if !hold.is_zero() {
            tokio::time::sleep(hold).await;
        }
        held += holding.elapsed();
        release().await;
    }
    (waits, held)
}

/// Runs 4 worker processes on one lock for `run_for`: acquisitions per worker, waits, total
/// hold. Each is this executable with `--contention-worker` (see `contention_worker`).
async fn four_workers(
    masters: &Masters,
    rslock: bool,
    hold: Duration,
    run_for: Duration,
) -> Workers {
    // One start on the wall clock, shared by the processes (late enough for all to be ready).
    let start_at = SystemTime::now() + Duration::from_millis(500);
    worker_processes(masters, 4, rslock, hold, start_at, run_for).await
}

/// What the worker processes on one lock did.
struct Workers {
    /// Acquisitions per process.
    counts: Vec<f64>,
    /// Every wait, of every process.
    waits: Vec<Duration>,
    /// The time all of them held the lock.
    held: Duration,
    /// Acquisitions in a row by one process, on average: 1 when the lock always passes to
    /// another process (strict FIFO among busy processes), high when a process that releases
    /// takes the lock again ahead of those waiting (barging).
    streak: f64,
}

/// Runs `count` worker processes on one lock from `start_at` for `run_for` (see `four_workers`).
async fn worker_processes(
    masters: &Masters,
    count: usize,
    rslock: bool,
    hold: Duration,
    start_at: SystemTime,
    run_for: Duration,
) -> Workers {
    let epoch_ms = |at: SystemTime| at.duration_since(UNIX_EPOCH).unwrap().as_millis();
    let (start_ms, stop_ms) = (epoch_ms(start_at), epoch_ms(start_at + run_for));
    let children: Vec<_> = (0..count)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .arg("--contention-worker")
                .arg(if rslock { "rslock" } else { "api" })
                .arg(hold.as_micros().to_string())
                .arg(start_ms.to_string())
                .arg(stop_ms.to_string())
                .arg(masters.urls().join(","))
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a worker process")
        })
        .map(|child| tokio::task::spawn_blocking(move || child.wait_with_output()))
        .collect();
    let (mut counts, mut waits, mut held) = (Vec::new(), Vec::new(), Duration::ZERO);
    // (acquired at, process) of every acquisition, for the streaks.
    let mut acquisitions = Vec::new();
    for (process, child) in children.into_iter().enumerate() {
        let output = child.await.unwrap().expect("worker output");
        assert!(output.status.success(), "a worker process failed");
        let text = String::from_utf8(output.stdout).unwrap();
        let mut fields = text.split_whitespace();
        held += Duration::from_micros(fields.next().unwrap().parse().unwrap());
        let before = waits.len();
        for field in fields {
            let (wait, at) = field.split_once(',').unwrap();
            waits.push(Duration::from_micros(wait.parse().unwrap()));
            acquisitions.push((at.parse::<u128>().unwrap(), process));
        }
        counts.push((waits.len() - before) as f64);
    }
    acquisitions.sort_unstable();
    let runs = 1 + acquisitions.windows(2).filter(|w| w[0].1 != w[1].1).count();
    let streak = acquisitions.len() as f64 / runs as f64;
    Workers {
        counts,
        waits,
        held,
        streak,
    }
}

/// The worker process: loops on the lock from the shared start to the shared deadline, then
/// prints its total hold and, per acquisition, `wait,acquired at`, in microseconds.
async fn contention_worker(args: &[String]) {
    let rslock = args[0] == "rslock";
    let hold = Duration::from_micros(args[1].parse().unwrap());
    let from_now = |arg: &String| {
        let at = UNIX_EPOCH + Duration::from_millis(arg.parse().unwrap());
        Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
    };
    let (start_at, stop_at) = (from_now(&args[2]), from_now(&args[3]));
    let urls: Vec<String> = args[4].split(',').map(str::to_owned).collect();
    tokio::time::sleep_until(start_at.into()).await;
    let (waits, held) = worker(urls, rslock, hold, stop_at).await;
    let mut line = held.as_micros().to_string();
    for (wait, at) in waits {
        line.push_str(&format!(" {},{at}", wait.as_micros()));
    }
    println!("{line}");
}

/// Redis CPU time (user + system) of one server so far, in µs, from `INFO cpu`.
fn redis_cpu_us(masters: &Masters) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query(&mut masters[0].connection())
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let value = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))?;
            value.trim().parse::<f64>().ok()
        })
        .sum::<f64>()
        * 1e6
}

/// Master 0's CPU per uncontended acquire + release of the API, in µs: the reference of the
/// contended rows' Redis CPU.
async fn uncontended_redis_cpu(masters: &Masters, cycles: usize) -> f64 {
    let redlock = Redlock::new(masters.urls()).unwrap();
    api_cycle(&redlock, "bench:cpu").await; // warm-up: connections, script caches
    let before = redis_cpu_us(masters);
    for _ in 0..cycles {
        api_cycle(&redlock, "bench:cpu").await;
    }
    (redis_cpu_us(masters) - before) / cycles as f64
}

/// The contention rows of `count` masters; returns each implementation's and hold's waits,
/// for the chart.
async fn contention(
    report: &mut Report,
    plan: &Plan,
    count: usize,
) -> Vec<(String, Duration, Vec<Duration>)> {
    let mut charted = Vec::new();
    for (name, rslock) in [("API", false), ("rslock", true)] {
        for hold in [Duration::from_millis(5), Duration::ZERO] {
            let masters = Masters::start(count);
            let reference = uncontended_redis_cpu(&masters, plan.cycles).await;
            let cpu_before = redis_cpu_us(&masters);
            let Workers {
                counts,
                mut waits,
                held,
                streak,
            } = four_workers(&masters, rslock, hold, plan.contention).await;
            let total: f64 = counts.iter().sum();
            let redis_cpu = (redis_cpu_us(&masters) - cpu_before) / total.max(1.0);
            let jain =
                total * total / (counts.len() as f64 * counts.iter().map(|c| c * c).sum::<f64>());
            let throughput = total / plan.contention.as_secs_f64();
            // tokio's timer rounds a 5 ms sleep up to its next millisecond tick: use the real hold.
            let mean_hold = held.as_secs_f64() / total.max(1.0);
            let versus_hold = if hold.is_zero() {
                "-".to_owned()
            } else {
                format!(
                    "{:.2} (real hold {:.2} ms)",
                    throughput * mean_hold,
                    mean_hold * 1e3
                )
            };
            // Commands per acquisition, in a separate second with MONITOR on master 0 (it slows
            // the server, so it stays out of the figures above).
            let stop = Arc::new(AtomicBool::new(false));
            let counting = monitor(masters[0].port(), Arc::clone(&stop));
            let counted = four_workers(&masters, rslock, hold, Duration::from_secs(1))
                .await
                .counts;
            stop.store(true, Ordering::Relaxed);
            let (sent, in_scripts) = counting.join().unwrap();
            let acquisitions = counted.iter().sum::<f64>().max(1.0);
            let max = waits.iter().max().copied().unwrap_or_default();
            report.row(vec![
                count.to_string(),
                name.to_owned(),
                ms(hold),
                format!("{throughput:.0}/s"),
                versus_hold,
                format!("{jain:.3}"),
                format!("{streak:.2}"),
                format!("{counts:?}"),
                format!(
                    "{} / {} / {}",
                    ms(percentile(&mut waits, 0.5)),
                    ms(percentile(&mut waits, 0.99)),
                    ms(max)
                ),
                format!("{:.2}", sent as f64 / acquisitions),
                format!("{:.2}", in_scripts as f64 / acquisitions),
                format!("{redis_cpu:.1} µs ({:.2}x)", redis_cpu / reference),
            ]);
            charted.push((
                format!(
                    "{name}, {count} master{}",
                    if count == 1 { "" } else { "s" }
                ),
                hold,
                waits,
            ));
        }
    }
    charted
}

/// Acquisitions per second of `tasks` concurrent tasks, each looping on its own name.
async fn distinct_names<F, Fut>(tasks: usize, run_for: Duration, cycle: F) -> f64
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let cycle = Arc::new(cycle);
    let stop_at = Instant::now() + run_for;
    let workers: Vec<_> = (0..tasks)
        .map(|task| {
            let cycle = Arc::clone(&cycle);
            tokio::spawn(async move {
                let mut done = 0u64;
                while Instant::now() < stop_at {
                    cycle(format!("bench:scale:{task}")).await;
                    done += 1;
                }
                done
            })
        })
        .collect();
    let mut total = 0;
    for worker in workers {
        total += worker.await.unwrap();
    }
    total as f64 / run_for.as_secs_f64()
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (10 ms ticks).
fn process_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses: utime and stime are the
    // 12th and 13th of them.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field =
        |index: usize| -> u64 { fields.get(index).and_then(|f| f.parse().ok()).unwrap_or(0) };
    let ticks = field(11) + field(12);
    Duration::from_millis(ticks * 10)
}

/// Acquisitions per second and client CPU per cycle of 1,000 tasks on distinct names.
async fn distinct_names_cpu<F, Fut>(run_for: Duration, cycle: F) -> (f64, Duration)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let cpu = process_cpu();
    let rate = distinct_names(1_000, run_for, cycle).await;
    let cycles = rate * run_for.as_secs_f64();
    (rate, (process_cpu() - cpu).div_f64(cycles.max(1.0)))
}

async fn scale(report: &mut Report, plan: &Plan) {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let redlock = Redlock::new(masters.urls()).unwrap();
        let connections = Arc::new(raw_connections(&masters).await);
        let script = Arc::new(Script::new(RELEASE));
        let (floor, floor_cpu) = distinct_names_cpu(plan.scale, move |name| {
            let (connections, script) = (Arc::clone(&connections), Arc::clone(&script));
            async move { floor_cycle(&connections, &script, &name).await }
        })
        .await;
        let (ours, ours_cpu) = distinct_names_cpu(plan.scale, move |name| {
            let redlock = redlock.clone();
            async move { api_cycle(&redlock, &name).await }
        })
        .await;
        report.row(vec![
            count.to_string(),
            format!("{floor:.0}/s"),
            format!("{ours:.0}/s"),
            format!("{:.3}", ours / floor),
            format!("{:.1} µs", floor_cpu.as_secs_f64() * 1e6),
            format!("{:.1} µs", ours_cpu.as_secs_f64() * 1e6),
            format!("{:.2}", ours_cpu.as_secs_f64() / floor_cpu.as_secs_f64()),
        ]);
    }
}

/// A counter of one server's `INFO stats` (or `INFO commandstats` field), so far.
fn server_stat(masters: &Masters, section: &str, line_prefix: &str, field: &str) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg(section)
        .query(&mut masters[0].connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix(line_prefix))
        .and_then(|rest| {
            rest.split(',')
                .find_map(|pair| pair.strip_prefix(field))
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// 10,000 guards held at once (TTL 1.5 s, renewed every 0.5 s by the watchdog) for
/// `plan.held`: renewals per second and the server reads that carried them on master 0, the
/// client's CPU per renewal, and the guards lost.
async fn held_guards(report: &mut Report, plan: &Plan) {
    const GUARDS: usize = 10_000;
    const TTL: Duration = Duration::from_millis(1500);
    for count in [1, 3] {
        let masters = Masters::start(count);
        let redlock = Redlock::new(masters.urls()).unwrap();
        let mut guards = Vec::with_capacity(GUARDS);
        for chunk in (0..GUARDS).collect::<Vec<_>>().chunks(500) {
            let taken = join_all(chunk.iter().map(|n| {
                let redlock = &redlock;
                async move {
                    redlock
                        .lock(format!("bench:held:{n}"))
                        .auto_release_time(TTL)
                        .timeout(30)
                        .await
                        .unwrap()
                }
            }))
            .await;
            guards.extend(taken);
        }
        let renewals = || server_stat(&masters, "commandstats", "cmdstat_evalsha:", "calls=");
        let reads = || server_stat(&masters, "stats", "total_reads_processed:", "");
        let (renewals_before, reads_before, cpu_before) = (renewals(), reads(), process_cpu());
        tokio::time::sleep(plan.held).await;
        let renewed = renewals() - renewals_before;
        let read = reads() - reads_before;
        let cpu = process_cpu() - cpu_before;
        let lost = guards.iter().filter(|guard| guard.is_lost()).count();
        report.row(vec![
            count.to_string(),
            GUARDS.to_string(),
            format!("{} s", plan.held.as_secs()),
            format!("{:.0}/s", renewed / plan.held.as_secs_f64()),
            format!("{:.1}", renewed / read.max(1.0)),
            format!("{:.1} µs", cpu.as_secs_f64() * 1e6 / renewed.max(1.0)),
            lost.to_string(),
        ]);
        join_all(guards.into_iter().map(|guard| guard.release())).await;
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn memory(report: &mut Report, plan: &Plan) {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut checkpoints = Vec::new();
    let per_task = plan.memory_cycles / 10 / 100;
    for batch in 0..10 {
        join_all((0..100).map(|task| {
            let redlock = redlock.clone();
            async move {
                for cycle in 0..per_task {
                    let name = format!("bench:memory:{batch}:{task}:{cycle}");
                    api_cycle(&redlock, &name).await;
                }
            }
        }))
        .await;
        checkpoints.push(rss_kib());
    }
    let mut row = vec![plan.memory_cycles.to_string()];
    for kib in [checkpoints[0], checkpoints[4], checkpoints[9]] {
        row.push(format!("{:.1} MiB", kib as f64 / 1024.0));
    }
    report.row(row);
}

fn machine() -> String {
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines().find_map(|line| {
                let model = line.strip_prefix("model name")?;
                Some(model.trim_start_matches([' ', '\t', ':']).to_owned())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} cores")
}

async fn liveness_sections(report: &mut Report, plan: &Plan) {
    report.section(
        "cold start: many tasks acquire once (timeout 10 s, 5 ms holds), 1 master",
        vec![
            "processes x tasks",
            "busy loops",
            "acquired",
            "timed out",
            "failed",
            "wall",
            "wall / serial ideal",
            "commands / acquisition",
        ],
    );
    for busy_loops in [0, 2] {
        liveness::cold_start(report, plan, busy_loops).await;
    }
    report.section(
        "mixed fleet: 1 Python worker (timeout=0) + 2 worker processes of ours, one lock, 5 ms holds, 1 master",
        vec![
            "run",
            "throughput",
            "Python acquisitions (share)",
            "Python longest wait",
            "ours per worker",
            "our wait p99 / max",
        ],
    );
    liveness::mixed_fleet(report, plan).await;
    report.section(
        "a dead head of the queue: release -> the next waiter (another process) holds the lock",
        vec!["masters", "head", "p50", "max"],
    );
    for count in [1, 3] {
        for pause in [false, true] {
            liveness::dead_head(report, plan, count, pause).await;
        }
    }
    paused_master_section(report, plan).await;
}

async fn paused_master_section(report: &mut Report, plan: &Plan) {
    report.section(
        "one master of three paused: 3 clients x 4 tasks on one lock, 5 ms holds, timeout 5 s",
        vec!["masters", "holds", "failed requests", "/ all up"],
    );
    liveness::paused_master(report, plan.contention).await;
}

/// The uncontended and skip-when-held sections.
async fn uncontended_sections(report: &mut Report, plan: &Plan) {
    report.section(
        format!(
            "uncontended acquire + release ({} cycles x {} repetitions, medians of repetitions)",
            plan.cycles, plan.reps
        ),
        vec![
            "masters",
            "implementation",
            "p50",
            "p99",
            "cycles/s",
            "p50 / floor",
        ],
    );
    for count in [1, 3] {
        uncontended(report, plan, count).await;
    }
    report.section(
        "skip when held (timeout -1)",
        vec![
            "masters",
            "implementation",
            "p50",
            "p99",
            "p50 / raw SET NX",
        ],
    );
    for count in [1, 3] {
        skip_when_held(report, plan, count).await;
    }
    report.section(
        "split votes: 3 clients, timeout -1, one fresh name at once, 3 masters (100 ms per-master timeout)",
        vec![
            "masters",
            "rounds",
            "won by nobody",
            "won by several",
            "slowest answer p50",
            "slowest answer p99",
        ],
    );
    split_votes(report, plan.handoffs / 2).await;
    replica_wait_section(report, plan).await;
}

async fn replica_wait_section(report: &mut Report, plan: &Plan) {
    report.section(
        "Config::wait_for_replicas: uncontended acquire + release, 1 master with 1 replica",
        vec!["wait_for_replicas", "p50", "p99", "p50 / without"],
    );
    replica_wait(report, plan).await;
}

/// The price of `wait_for_replicas = 1` on one master with one replica: uncontended acquire +
/// release, interleaved repetitions, medians of the repetitions' percentiles.
async fn replica_wait(report: &mut Report, plan: &Plan) {
    let master = redlock_runtime::test_util::RedisServer::start();
    let replica = redlock_runtime::test_util::RedisServer::start_with_args(&[
        "--replicaof",
        "127.0.0.1",
        &master.port().to_string(),
    ]);
    replica.wait_until_synced();
    let clients: Vec<Redlock> = [0, 1]
        .map(|replicas| {
            Redlock::with_config(configurable_redlock::Config {
                wait_for_replicas: replicas,
                ..configurable_redlock::Config::new([master.url()])
            })
            .unwrap()
        })
        .into();
    // Until the fresh replica acknowledges writes (within a second of its sync).
    while clients[1]
        .lock("bench:replica-warm-up")
        .timeout(-1)
        .await
        .is_err()
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (mut p50s, mut p99s) = ([Vec::new(), Vec::new()], [Vec::new(), Vec::new()]);
    for _ in 0..plan.reps {
        for (index, client) in clients.iter().enumerate() {
            let mut latencies = Vec::with_capacity(plan.cycles);
            for _ in 0..plan.cycles {
                let began = Instant::now();
                api_cycle(client, "bench:replicated").await;
                latencies.push(began.elapsed());
            }
            p50s[index].push(percentile(&mut latencies, 0.5));
            p99s[index].push(percentile(&mut latencies, 0.99));
        }
    }
    let without = percentile(&mut p50s[0], 0.5);
    for index in 0..2 {
        let p50 = percentile(&mut p50s[index], 0.5);
        report.row(vec![
            index.to_string(),
            us(p50),
            us(percentile(&mut p99s[index], 0.5)),
            format!("{:.2}", p50.as_secs_f64() / without.as_secs_f64()),
        ]);
    }
}

/// The handoff and contention sections, and their charts (left alone by a `quick` run).
async fn waiting_sections(report: &mut Report, plan: &Plan, quick: bool) {
    report.section(
        "handoff: holder releases -> the waiting task holds the lock",
        vec![
            "masters",
            "implementation",
            "PING p50 (back to back / after 5 ms idle)",
            "handoff p50",
            "handoff p99",
            "p50 / PING",
            "p99 / PING",
            "p50 / p99 per idle PING",
        ],
    );
    for count in [1, 3] {
        handoff(report, plan, count).await;
    }
    report.section(
        format!(
            "4 worker processes on one lock for {} s; commands per acquisition on master 0",
            plan.contention.as_secs()
        ),
        vec![
            "masters",
            "implementation",
            "hold",
            "throughput",
            "x 1/hold",
            "Jain",
            "in a row",
            "per worker",
            "wait p50 / p99 / max",
            "cmds sent/acq",
            "in scripts/acq",
            "Redis CPU/acq (x uncontended cycle)",
        ],
    );
    let mut charted = Vec::new();
    for count in [1, 3] {
        charted.extend(contention(report, plan, count).await);
    }
    if !quick {
        for (hold, file) in [
            (Duration::from_millis(5), "waits-hold-5ms.svg"),
            (Duration::ZERO, "waits-no-hold.svg"),
        ] {
            let series: Vec<chart::Series> = charted
                .iter()
                .filter(|(_, of, _)| *of == hold)
                .map(|(label, _, waits)| chart::Series {
                    label: label.clone(),
                    waits: waits.clone(),
                })
                .collect();
            let title = format!(
                "4 worker processes on one lock, {} holds: wait times",
                if hold.is_zero() {
                    "no".to_owned()
                } else {
                    ms(hold)
                }
            );
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
            std::fs::write(&path, chart::cumulative(&title, &series)).expect("write the chart");
            println!("\nchart written to {}", path.display());
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|arg| arg == "--contention-worker") {
        return contention_worker(&args[at + 1..]).await;
    }
    if let Some(at) = args.iter().position(|arg| arg == "--cold-start-worker") {
        return liveness::cold_start_worker(&args[at + 1..]).await;
    }
    if let Some(at) = args.iter().position(|arg| arg == "--head-worker") {
        return liveness::head_worker(&args[at + 1..]).await;
    }
    if args.iter().any(|arg| arg == "--profile-distinct") {
        // 8 s of the API's row of "1,000 tasks on distinct names", and nothing else.
        let masters = Masters::start(1);
        let redlock = Redlock::new(masters.urls()).unwrap();
        let (rate, cpu) = distinct_names_cpu(Duration::from_secs(8), move |name| {
            let redlock = redlock.clone();
            async move { api_cycle(&redlock, &name).await }
        })
        .await;
        println!("PROFILE {rate:.0}/s {:.1} us", cpu.as_secs_f64() * 1e6);
        return;
    }
    if args.iter().any(|arg| arg == "--replicas") {
        return replica_wait_section(&mut Report::default(), &Plan::from_args()).await;
    }
    if args.iter().any(|arg| arg == "--paused") {
        return paused_master_section(&mut Report::default(), &Plan::from_args()).await;
    }
    if args.iter().any(|arg| arg == "--liveness") {
        return liveness_sections(&mut Report::default(), &Plan::from_args()).await;
    }
    let plan = Plan::from_args();
    // A smoke run leaves the committed charts alone.
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut report = Report::default();
    println!("machine: {}", machine());
    // `--waiting`: only the handoff and contention sections (the ones a change of the wait moves).
    let waiting_only = args.iter().any(|arg| arg == "--waiting");
    // `--scale`: only the rows of many locks in one process (distinct names, held guards).
    let scale_only = args.iter().any(|arg| arg == "--scale");
    if !waiting_only && !scale_only {
        uncontended_sections(&mut report, &plan).await;
        // `--uncontended`: only the uncontended, skip and split-vote sections.
        if args.iter().any(|arg| arg == "--uncontended") {
            return;
        }
    }
    if !scale_only {
        waiting_sections(&mut report, &plan, quick).await;
        if waiting_only {
            return;
        }
        liveness_sections(&mut report, &plan).await;
    }
    report.section(
        "1,000 tasks on distinct names, each looping acquire + release",
        vec![
            "masters",
            "floor",
            "API",
            "API / floor",
            "floor CPU/cycle",
            "API CPU/cycle",
            "API / floor CPU",
        ],
    );
    scale(&mut report, &plan).await;
    // Before the held guards, whose 10,000 locks would stay in the allocator's figures.
    if !scale_only {
        report.section(
            "memory: RSS over cycles on distinct names",
            vec!["cycles", "after 10%", "after 50%", "after 100%"],
        );
        memory(&mut report, &plan).await;
    }
    report.section(
        "held guards, renewed by the watchdog (TTL 1.5 s); master 0",
        vec![
            "masters",
            "guards",
            "held for",
            "renewals",
            "renewals per server read",
            "client CPU/renewal",
            "lost",
        ],
    );
    held_guards(&mut report, &plan).await;

    if let Some(path) = args
        .iter()
        .position(|arg| arg == "--json")
        .and_then(|at| args.get(at + 1))
    {
        std::fs::write(path, report.json()).expect("write the JSON report");
        println!("\nJSON written to {path}");
    }
}
