//! One client alone on a lock: uncontended acquire + release, skip when held, split votes, and
//! the price of `wait_for_replicas`.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use configurable_redlock::{Redlock, Timeout};
use futures_util::future::join_all;
use redis::Script;
use redlock_runtime::test_util::Masters;
use rslock::LockManager;

use crate::{
    Plan,
    peers::{Client, Implementation},
    probes::{RELEASE, TTL, api_cycle, floor_cycle, raw_connections, timed, with_macro},
    report::{Report, median, ms, percentile, us},
};

/// The uncontended, skip-when-held, split-vote and replica-wait sections.
pub(crate) async fn sections(report: &mut Report, plan: &Plan) {
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

pub(crate) async fn uncontended(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut peers = Vec::new();
    for peer in Implementation::ALL {
        if peer != Implementation::Api && peer.runs_on(count) {
            peers.push((peer.name(), Client::new(peer, &masters.urls()).await));
        }
    }
    let connections = raw_connections(&masters).await;
    let script = Script::new(RELEASE);
    let names: Vec<&str> = ["floor", "API", "#[redlock]"]
        .into_iter()
        .chain(peers.iter().map(|(name, _)| *name))
        .collect();
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
                    peer => timed(into, peers[peer - 3].1.cycle("bench:peer")).await,
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

pub(crate) async fn skip_when_held(report: &mut Report, plan: &Plan, count: usize) {
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
pub(crate) async fn split_votes(report: &mut Report, rounds: usize) {
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

pub(crate) async fn replica_wait_section(report: &mut Report, plan: &Plan) {
    report.section(
        "Config::wait_for_replicas: uncontended acquire + release, 1 master with 1 replica",
        vec!["wait_for_replicas", "p50", "p99", "p50 / without"],
    );
    replica_wait(report, plan).await;
}

/// The price of `wait_for_replicas = 1` on one master with one replica: uncontended acquire +
/// release, interleaved repetitions, medians of the repetitions' percentiles.
pub(crate) async fn replica_wait(report: &mut Report, plan: &Plan) {
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
