//! The three situations in which waiting used to collapse, stall or starve, as rows:
//! - a cold start of many waiters (2 processes x 2,000 tasks on 4 names, each acquiring once
//!   with a 10 s timeout and holding 5 ms), on a quiet machine and with 2 busy loops;
//! - a mixed fleet: 1 worker of the Python library (`timeout=0`) and 2 of ours on one lock,
//!   5 ms holds;
//! - the head of the queue killed (or paused) while the holder holds: how long after the
//!   release the next waiter holds the lock;
//! - a crashed holder: how long after its key expires the waiter holds the lock.

use std::{
    io::{BufRead, BufReader, Read},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use configurable_redlock::{LockError, Redlock};
use futures_util::future::join_all;
use redis::Commands;
use redlock_runtime::test_util::Masters;

use crate::{
    Plan,
    contention::{Workers, worker_processes},
    peers::Implementation,
    report::{Report, ms, percentile},
};

const HOLD: Duration = Duration::from_millis(5);

fn epoch_us(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap().as_micros()
}

fn from_epoch_us(arg: &str) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(arg.parse().unwrap())
}

async fn sleep_until(at: SystemTime) {
    tokio::time::sleep(at.duration_since(SystemTime::now()).unwrap_or_default()).await;
}

/// `sh` processes that keep cores busy until dropped.
struct BusyLoops(Vec<Child>);

impl BusyLoops {
    fn start(count: usize) -> Self {
        Self(
            (0..count)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .spawn()
                        .expect("start a busy loop")
                })
                .collect(),
        )
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn commands_processed(masters: &Masters) -> u64 {
    let mut connection = masters[0].connection();
    let info: String = redis::cmd("INFO")
        .arg("stats")
        .query(&mut connection)
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_commands_processed:"))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or(0)
}

/// One cold-start process: `tasks` tasks on `names` names, each acquiring once from the shared
/// start; prints `<acquired> <timed out> <failed> <wall ms>`.
pub(crate) async fn cold_start_worker(args: &[String]) {
    let tasks: usize = args[0].parse().unwrap();
    let names: usize = args[1].parse().unwrap();
    let start_at = from_epoch_us(&args[2]);
    let redlock = Redlock::new(args[3].split(',')).unwrap();
    sleep_until(start_at).await;
    let started = Instant::now();
    let outcomes = join_all((0..tasks).map(|task| {
        let redlock = redlock.clone();
        tokio::spawn(async move {
            match redlock
                .lock(format!("bench:cold:{}", task % names))
                .timeout(10)
                .await
            {
                Ok(guard) => {
                    tokio::time::sleep(HOLD).await;
                    usize::from(guard.release().await.is_err()) * 2
                }
                Err(LockError::Timeout { .. }) => 1,
                Err(error) => {
                    eprintln!("{error}");
                    2
                }
            }
        })
    }))
    .await;
    let mut counts = [0; 3];
    for outcome in outcomes {
        counts[outcome.unwrap()] += 1;
    }
    let wall = started.elapsed().as_millis();
    println!("{} {} {} {wall}", counts[0], counts[1], counts[2]);
}

pub(crate) async fn cold_start(report: &mut Report, plan: &Plan, busy_loops: usize) {
    let (processes, tasks, names) = (2, plan.cold_start_tasks, 4);
    let masters = Masters::start(1);
    let _busy = BusyLoops::start(busy_loops);
    let commands_before = commands_processed(&masters);
    let start_at = SystemTime::now() + Duration::from_secs(1);
    let children: Vec<_> = (0..processes)
        .map(|_| {
            let child = Command::new(std::env::current_exe().unwrap())
                .arg("--cold-start-worker")
                .arg(tasks.to_string())
                .arg(names.to_string())
                .arg(epoch_us(start_at).to_string())
                .arg(masters.urls().join(","))
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a cold-start process");
            tokio::task::spawn_blocking(move || child.wait_with_output())
        })
        .collect();
    let (mut counts, mut wall) = ([0u64; 3], 0u64);
    for child in children {
        let output = child.await.unwrap().expect("cold-start output");
        let text = String::from_utf8(output.stdout).unwrap();
        let numbers: Vec<u64> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        for (count, number) in counts.iter_mut().zip(&numbers) {
            *count += number;
        }
        wall = wall.max(numbers[3]);
    }
    let commands = commands_processed(&masters) - commands_before;
    // Each name's acquisitions one after another, at 6 ms each (5 ms hold + round trips).
    let ideal_ms = (processes * tasks) as f64 * 6.0 / names as f64;
    report.row(vec![
        format!("{processes} x {tasks} on {names} names"),
        busy_loops.to_string(),
        format!("{} / {}", counts[0], processes * tasks),
        counts[1].to_string(),
        counts[2].to_string(),
        format!("{wall} ms"),
        format!("{:.2}", wall as f64 / ideal_ms),
        format!("{:.1}", commands as f64 / counts[0].max(1) as f64),
    ]);
}

/// The Python interpreter with configurable-redlock installed (`.ci/run` makes it).
fn python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = root.join("target/interop-venv/bin/python");
    python.exists().then_some(python)
}

/// The mixed-fleet section (`--mixed-fleet` alone).
pub(crate) async fn mixed_fleet_section(report: &mut Report, plan: &Plan) {
    report.section(
        "mixed fleet: 1 Python worker (timeout=0) + 2 worker processes of ours, one lock, 5 ms holds, 1 master",
        vec![
            "run",
            "throughput",
            "Python acquisitions (share)",
            "Python longest wait",
            "ours per worker (shares)",
            "our wait p99 / max",
        ],
    );
    mixed_fleet(report, plan).await;
}

async fn mixed_fleet(report: &mut Report, plan: &Plan) {
    let Some(python) = python() else {
        println!("(mixed fleet: no target/interop-venv; `.ci/run` creates it)");
        return;
    };
    let masters = Masters::start(1);
    let run_for = plan.mixed_fleet;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/interop.py");
    let mut python_worker = Command::new(python)
        .arg(script)
        .arg(&masters.urls()[0])
        .args(["loop", "bench:fair"])
        .arg(run_for.as_secs_f64().to_string())
        .arg(HOLD.as_millis().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the Python worker");
    // Ours start when the Python worker, ready, says it starts.
    let mut lines = BufReader::new(python_worker.stdout.take().unwrap());
    let mut line = String::new();
    lines
        .read_line(&mut line)
        .expect("the Python worker's start");
    let start: f64 = line
        .strip_prefix("start ")
        .and_then(|start| start.trim().parse().ok())
        .expect("the Python worker's start");
    let start_at = UNIX_EPOCH + Duration::from_secs_f64(start);
    let python_output = tokio::task::spawn_blocking(move || {
        let mut text = String::new();
        lines.read_to_string(&mut text).expect("Python output");
        assert!(
            python_worker.wait().unwrap().success(),
            "the Python worker failed"
        );
        text
    });
    let Workers {
        counts, mut waits, ..
    } = worker_processes(&masters, 2, Implementation::Api, HOLD, start_at, run_for).await;
    let text = python_output.await.unwrap();
    let mut numbers = text.split_whitespace().map(|n| n.parse::<f64>().unwrap());
    let (python_count, python_longest) = (numbers.next().unwrap(), numbers.next().unwrap());
    let total = python_count + counts.iter().sum::<f64>();
    report.row(vec![
        format!("{} s", run_for.as_secs()),
        format!("{:.0}/s", total / run_for.as_secs_f64()),
        format!("{python_count:.0} ({:.1}%)", python_count * 100.0 / total),
        format!("{python_longest:.0} ms"),
        format!(
            "{counts:?} ({})",
            counts
                .iter()
                .map(|count| format!("{:.1}%", count * 100.0 / total))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "{} / {}",
            ms(percentile(&mut waits, 0.99)),
            ms(waits.iter().max().copied().unwrap_or_default())
        ),
    ]);
}

/// A waiter in a process of its own: prints when it holds the lock (µs since the epoch).
pub(crate) async fn head_worker(args: &[String]) {
    let redlock = Redlock::new(args[0].split(',')).unwrap();
    let guard = redlock.lock(args[1].as_str()).timeout(60).await.unwrap();
    println!("{}", epoch_us(SystemTime::now()));
    guard.release().await.unwrap();
}

fn head_process(masters: &Masters, name: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--head-worker")
        .arg(masters.urls().join(","))
        .arg(name)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start a waiter process")
}

async fn until_queued(masters: &Masters, name: &str, count: usize) {
    let queue = format!("{{{}}}:queue", redlock_runtime::lock_key(name));
    let mut connection = masters[0].connection();
    while connection.zcard::<_, usize>(&queue).unwrap() < count {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// How long after the release the next waiter holds the lock, when the head of the queue was
/// killed (`pause`: stopped with SIGSTOP) before it.
pub(crate) async fn dead_head(report: &mut Report, plan: &Plan, count: usize, pause: bool) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut handoffs = Vec::new();
    for round in 0..plan.reps {
        let name = format!("bench:head:{round}");
        let guard = redlock.lock(name.as_str()).await.unwrap();
        let mut head = head_process(&masters, &name);
        until_queued(&masters, &name, 1).await;
        let next = head_process(&masters, &name);
        until_queued(&masters, &name, 2).await;
        let signal = if pause { "-STOP" } else { "-KILL" };
        let pid = head.id().to_string();
        assert!(
            Command::new("kill")
                .args([signal, &pid])
                .status()
                .unwrap()
                .success()
        );
        let released = SystemTime::now();
        guard.release().await.unwrap();
        let output = tokio::task::spawn_blocking(move || next.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        let held = from_epoch_us(String::from_utf8(output.stdout).unwrap().trim());
        handoffs.push(held.duration_since(released).unwrap_or_default());
        if pause {
            Command::new("kill").args(["-CONT", &pid]).status().unwrap();
        }
        let _ = head.wait();
    }
    let max = handoffs.iter().max().copied().unwrap_or_default();
    report.row(vec![
        count.to_string(),
        if pause {
            "paused (SIGSTOP)"
        } else {
            "killed (SIGKILL)"
        }
        .into(),
        ms(percentile(&mut handoffs, 0.5)),
        ms(max),
    ]);
}

/// How long after a crashed holder's key expires the waiter holds the lock: nobody announces
/// an expiry, so it is the waiter's timer (the key's `PTTL`) or the key tracker that wakes it.
/// The expiry is taken after the last master's `SET`: the latest one.
pub(crate) async fn expired_holder(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut connections: Vec<_> = (0..count)
        .map(|index| masters[index].connection())
        .collect();
    let ttl = Duration::from_millis(300);
    let mut after_expiry = Vec::new();
    for round in 0..plan.reps * 2 {
        let name = format!("bench:expired:{round}");
        for connection in &mut connections {
            let _: () = redis::cmd("SET")
                .arg(redlock_runtime::lock_key(&name))
                .arg("a-crashed-holder")
                .arg("NX")
                .arg("PX")
                .arg(ttl.as_millis() as u64)
                .query(connection)
                .unwrap();
        }
        let expires = Instant::now() + ttl;
        let guard = redlock.lock(name.as_str()).timeout(10).await.unwrap();
        after_expiry.push(Instant::now().saturating_duration_since(expires));
        guard.release().await.unwrap();
    }
    let max = after_expiry.iter().max().copied().unwrap_or_default();
    report.row(vec![
        count.to_string(),
        ms(percentile(&mut after_expiry, 0.5)),
        ms(max),
    ]);
}

/// 3 clients x 4 tasks loop on one lock (5 ms holds, timeout 5 s, the default per-master
/// timeout of 200 ms) over 3 masters, for `span` with all up, then for `span` with one master
/// paused (SIGSTOP): holds per second, failed requests, and the paused phase against the
/// other. The deployment table promises that a paused minority costs little.
pub(crate) async fn paused_master(report: &mut Report, span: Duration) {
    let masters = Masters::start(3);
    let clients: Vec<Redlock> = (0..3)
        .map(|_| Redlock::new(masters.urls()).unwrap())
        .collect();
    let mut all_up = 0.0;
    for phase in ["all up", "one paused"] {
        if phase == "one paused" {
            masters[2].pause();
        }
        let holds = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(AtomicUsize::new(0));
        let until = Instant::now() + span;
        let tasks = clients.iter().flat_map(|client| {
            (0..4).map(|_| {
                let (client, holds, failures) =
                    (client.clone(), Arc::clone(&holds), Arc::clone(&failures));
                tokio::spawn(async move {
                    while Instant::now() < until {
                        match client.lock("bench:paused").timeout(5).await {
                            Ok(guard) => {
                                tokio::time::sleep(Duration::from_millis(5)).await;
                                let _ = guard.release().await;
                                holds.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
        });
        join_all(tasks.collect::<Vec<_>>()).await;
        let rate = holds.load(Ordering::Relaxed) as f64 / span.as_secs_f64();
        if phase == "all up" {
            all_up = rate;
        }
        report.row(vec![
            phase.to_owned(),
            format!("{rate:.1}/s"),
            failures.load(Ordering::Relaxed).to_string(),
            format!("{:.2}", rate / all_up),
        ]);
    }
    masters[2].resume();
}

/// The cold start, mixed fleet, dead head and paused master sections.
pub(crate) async fn sections(report: &mut Report, plan: &Plan) {
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
        cold_start(report, plan, busy_loops).await;
    }
    mixed_fleet_section(report, plan).await;
    report.section(
        "a dead head of the queue: release -> the next waiter (another process) holds the lock",
        vec!["masters", "head", "p50", "max"],
    );
    for count in [1, 3] {
        for pause in [false, true] {
            dead_head(report, plan, count, pause).await;
        }
    }
    report.section(
        "a crashed holder: its key (PX 300, never released) expires -> the waiting task holds the lock",
        vec!["masters", "after the expiry p50", "max"],
    );
    for count in [1, 3] {
        expired_holder(report, plan, count).await;
    }
    paused_master_section(report, plan).await;
}

pub(crate) async fn paused_master_section(report: &mut Report, plan: &Plan) {
    report.section(
        "one master of three paused: 3 clients x 4 tasks on one lock, 5 ms holds, timeout 5 s",
        vec!["masters", "holds", "failed requests", "/ all up"],
    );
    paused_master(report, plan.contention).await;
}
