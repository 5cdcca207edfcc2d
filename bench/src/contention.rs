//! Waiters on one lock: the handoff from a holder to the next, and 4 worker processes looping
//! on one lock (throughput, fairness, waits, the commands and Redis CPU per acquisition).

use std::{
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use redlock_runtime::test_util::Masters;

use crate::{
    Plan, chart,
    peers::{Client, Implementation},
    probes::{monitor, ping_p50, raw_connections, redis_cpu_us, uncontended_redis_cpu},
    report::{Report, ms, percentile, us},
};

/// The handoff and contention sections, and their charts (left alone by a `quick` run).
pub(crate) async fn sections(report: &mut Report, plan: &Plan, quick: bool) {
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

pub(crate) async fn handoff(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let mut connection = raw_connections(&masters).await.remove(0);
    let ping = ping_p50(&mut connection, 1_000, Duration::ZERO).await;
    // The handoff starts after 5 ms of idling (the waiter queues meanwhile), when the threads
    // and the server sleep: the same round trip after the same idling is the fair reference.
    let idle_ping = ping_p50(&mut connection, 200, Duration::from_millis(5)).await;
    for implementation in Implementation::ALL {
        if !implementation.runs_on(count) {
            continue;
        }
        let samples = if implementation == Implementation::Api {
            plan.handoffs
        } else {
            plan.peer_handoffs
        };
        let _ = handoffs(&masters, implementation, 3).await; // warm-up
        let mut latencies = handoffs(&masters, implementation, samples).await;
        let (p50, p99) = (
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
        );
        report.row(vec![
            count.to_string(),
            implementation.name().to_owned(),
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

/// Holder releases -> a waiting task holds the lock, `samples` times.
pub(crate) async fn handoffs(
    masters: &Masters,
    implementation: Implementation,
    samples: usize,
) -> Vec<Duration> {
    let client = Client::new(implementation, &masters.urls()).await;
    let mut latencies = Vec::with_capacity(samples);
    for _ in 0..samples {
        let release = client.acquire("bench:handoff").await;
        let waiter = tokio::spawn({
            let client = client.clone();
            async move {
                let release = client.acquire("bench:handoff").await;
                let at = Instant::now();
                release().await;
                at
            }
        });
        tokio::time::sleep(Duration::from_millis(5)).await; // queued and subscribed
        let released = Instant::now();
        release().await;
        latencies.push(waiter.await.unwrap().saturating_duration_since(released));
    }
    latencies
}

/// The contention rows of `count` masters; returns each implementation's and hold's waits,
/// for the chart.
pub(crate) async fn contention(
    report: &mut Report,
    plan: &Plan,
    count: usize,
) -> Vec<(String, Duration, Vec<Duration>)> {
    let mut charted = Vec::new();
    for implementation in Implementation::ALL {
        if !implementation.runs_on(count) {
            continue;
        }
        let name = implementation.name();
        for hold in [Duration::from_millis(5), Duration::ZERO] {
            let masters = Masters::start(count);
            let reference = uncontended_redis_cpu(&masters, plan.cycles).await;
            let cpu_before = redis_cpu_us(&masters);
            let Workers {
                counts,
                mut waits,
                held,
                streak,
            } = four_workers(&masters, implementation, hold, plan.contention).await;
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
            let counted = four_workers(&masters, implementation, hold, Duration::from_secs(1))
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

/// Runs 4 worker processes on one lock for `run_for`: acquisitions per worker, waits, total
/// hold. Each is this executable with `--contention-worker` (see `worker_main`).
pub(crate) async fn four_workers(
    masters: &Masters,
    implementation: Implementation,
    hold: Duration,
    run_for: Duration,
) -> Workers {
    // One start on the wall clock, shared by the processes (late enough for all to be ready).
    let start_at = SystemTime::now() + Duration::from_millis(500);
    worker_processes(masters, 4, implementation, hold, start_at, run_for).await
}

/// What the worker processes on one lock did.
pub(crate) struct Workers {
    /// Acquisitions per process.
    pub(crate) counts: Vec<f64>,
    /// Every wait, of every process.
    pub(crate) waits: Vec<Duration>,
    /// The time all of them held the lock.
    pub(crate) held: Duration,
    /// Acquisitions in a row by one process, on average: 1 when the lock always passes to
    /// another process (strict FIFO among busy processes), high when a process that releases
    /// takes the lock again ahead of those waiting (barging).
    pub(crate) streak: f64,
}

/// Runs `count` worker processes on one lock from `start_at` for `run_for` (see `four_workers`).
pub(crate) async fn worker_processes(
    masters: &Masters,
    count: usize,
    implementation: Implementation,
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
                .arg(implementation.name())
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
pub(crate) async fn worker_main(args: &[String]) {
    let implementation = Implementation::named(&args[0]);
    let hold = Duration::from_micros(args[1].parse().unwrap());
    let from_now = |arg: &String| {
        let at = UNIX_EPOCH + Duration::from_millis(arg.parse().unwrap());
        Instant::now() + at.duration_since(SystemTime::now()).unwrap_or_default()
    };
    let (start_at, stop_at) = (from_now(&args[2]), from_now(&args[3]));
    let urls: Vec<String> = args[4].split(',').map(str::to_owned).collect();
    tokio::time::sleep_until(start_at.into()).await;
    let (waits, held) = worker(&urls, implementation, hold, stop_at).await;
    let mut line = held.as_micros().to_string();
    for (wait, at) in waits {
        line.push_str(&format!(" {},{at}", wait.as_micros()));
    }
    println!("{line}");
}

/// One worker's loop on the shared lock: its waits with when each ended (µs since the epoch),
/// and its total hold time.
pub(crate) async fn worker(
    masters: &[String],
    implementation: Implementation,
    hold: Duration,
    stop_at: Instant,
) -> (Vec<(Duration, u128)>, Duration) {
    let client = Client::new(implementation, masters).await;
    let (mut waits, mut held) = (Vec::new(), Duration::ZERO);
    while Instant::now() < stop_at {
        let asked = Instant::now();
        let release = client.acquire("bench:fair").await;
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
