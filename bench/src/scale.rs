//! Many locks in one process: 1,000 tasks on distinct names, 10,000 guards held by the
//! watchdog, and the memory of 100,000 names.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use configurable_redlock::Redlock;
use futures_util::future::join_all;
use redis::Script;
use redlock_runtime::test_util::Masters;

use crate::{
    Plan,
    peers::{Client, Implementation},
    probes::{RELEASE, api_cycle, floor_cycle, process_cpu, raw_connections, rss_kib, server_stat},
    report::Report,
};

/// The distinct-names and held-guards sections, and between them (with `memory`) the memory
/// section: before the held guards, whose 10,000 locks would stay in the allocator's figures.
pub(crate) async fn sections(report: &mut Report, plan: &Plan, memory: bool) {
    report.section(
        "1,000 tasks on distinct names, each looping acquire + release",
        vec![
            "masters",
            "implementation",
            "cycles/s",
            "/ floor",
            "client CPU/cycle",
            "/ floor CPU",
        ],
    );
    scale(report, plan).await;
    if memory {
        report.section(
            "memory: RSS over cycles on distinct names",
            vec!["cycles", "after 10%", "after 50%", "after 100%"],
        );
        self::memory(report, plan).await;
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
    held_guards(report, plan).await;
}

/// `--profile-distinct`: 8 s of the API's row of "1,000 tasks on distinct names" on 1 master,
/// and nothing else, for A/B runs and `perf record`.
pub(crate) async fn profile_distinct() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let (rate, cpu) = distinct_names_cpu(Duration::from_secs(8), move |name| {
        let redlock = redlock.clone();
        async move { api_cycle(&redlock, &name).await }
    })
    .await;
    println!("PROFILE {rate:.0}/s {:.1} us", cpu.as_secs_f64() * 1e6);
}

async fn scale(report: &mut Report, plan: &Plan) {
    for count in [1, 3] {
        let masters = Masters::start(count);
        let connections = Arc::new(raw_connections(&masters).await);
        let script = Arc::new(Script::new(RELEASE));
        let floor = distinct_names_cpu(plan.scale, move |name| {
            let (connections, script) = (Arc::clone(&connections), Arc::clone(&script));
            async move { floor_cycle(&connections, &script, &name).await }
        })
        .await;
        let mut row = |name: &str, (rate, cpu): (f64, Duration)| {
            report.row(vec![
                count.to_string(),
                name.to_owned(),
                format!("{rate:.0}/s"),
                format!("{:.3}", rate / floor.0),
                format!("{:.1} µs", cpu.as_secs_f64() * 1e6),
                format!("{:.2}", cpu.as_secs_f64() / floor.1.as_secs_f64()),
            ]);
        };
        row("floor", floor);
        for implementation in Implementation::ALL {
            if !implementation.runs_on(count) {
                continue;
            }
            let client = Arc::new(Client::new(implementation, &masters.urls()).await);
            let measured = distinct_names_cpu(plan.scale, move |name| {
                let client = Arc::clone(&client);
                async move { client.cycle(&name).await }
            })
            .await;
            row(implementation.name(), measured);
        }
    }
}

/// Acquisitions per second of `tasks` concurrent tasks, each looping on its own name.
pub(crate) async fn distinct_names<F, Fut>(tasks: usize, run_for: Duration, cycle: F) -> f64
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

/// Acquisitions per second and client CPU per cycle of 1,000 tasks on distinct names.
pub(crate) async fn distinct_names_cpu<F, Fut>(run_for: Duration, cycle: F) -> (f64, Duration)
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let cpu = process_cpu();
    let rate = distinct_names(1_000, run_for, cycle).await;
    let cycles = rate * run_for.as_secs_f64();
    (rate, (process_cpu() - cpu).div_f64(cycles.max(1.0)))
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
