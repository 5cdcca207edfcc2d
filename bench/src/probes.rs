//! The cycles every row is made of (the raw floor, the API, the attribute, rslock) and what
//! the rows read from the servers and from this process (commands, CPU, memory).

use std::{
    future::Future,
    io::{BufRead, BufReader, Write},
    net::TcpStream,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use configurable_redlock::{LockError, Redlock, Timeout, redlock};
use futures_util::future::join_all;
use redis::{Script, aio::MultiplexedConnection};
use redlock_runtime::test_util::Masters;

use crate::report::percentile;

/// The floor's release: compare and delete, as any Redlock must.
pub(crate) const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// The TTL of the floor's and rslock's keys.
pub(crate) const TTL: Duration = Duration::from_secs(30);

/// Raw connections, one per master, for the floor.
pub(crate) async fn raw_connections(masters: &Masters) -> Vec<MultiplexedConnection> {
    let mut connections = Vec::new();
    for url in masters.urls() {
        let client = redis::Client::open(url).unwrap();
        connections.push(client.get_multiplexed_async_connection().await.unwrap());
    }
    connections
}

pub(crate) async fn floor_cycle(connections: &[MultiplexedConnection], script: &Script, key: &str) {
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
pub(crate) async fn with_macro(redlock: &Redlock) -> bool {
    true
}

/// One acquire + release. A round that a busy machine pushed past the per-master timeout
/// (1,000 tasks on 3 masters, on 2 cores) is tried again: the rows measure cycles done.
pub(crate) async fn api_cycle(redlock: &Redlock, name: &str) {
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

pub(crate) async fn timed(samples: &mut Vec<Duration>, cycle: impl Future<Output = ()>) {
    let started = Instant::now();
    cycle.await;
    samples.push(started.elapsed());
}

/// The median of `count` `PING` round trips, each after `idle` of sleep.
pub(crate) async fn ping_p50(
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

/// Counts the commands one server runs while `stop` is unset, with `MONITOR`: those sent by
/// clients, and those run inside scripts (`[0 lua]`).
pub(crate) fn monitor(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
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

/// Redis CPU time (user + system) of one server so far, in µs, from `INFO cpu`.
pub(crate) fn redis_cpu_us(masters: &Masters) -> f64 {
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
pub(crate) async fn uncontended_redis_cpu(masters: &Masters, cycles: usize) -> f64 {
    let redlock = Redlock::new(masters.urls()).unwrap();
    api_cycle(&redlock, "bench:cpu").await; // warm-up: connections, script caches
    let before = redis_cpu_us(masters);
    for _ in 0..cycles {
        api_cycle(&redlock, "bench:cpu").await;
    }
    (redis_cpu_us(masters) - before) / cycles as f64
}

/// This process's CPU time so far (user + system), from `/proc/self/stat` (10 ms ticks).
pub(crate) fn process_cpu() -> Duration {
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

/// A counter of one server's `INFO stats` (or `INFO commandstats` field), so far.
pub(crate) fn server_stat(masters: &Masters, section: &str, line_prefix: &str, field: &str) -> f64 {
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

pub(crate) fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
