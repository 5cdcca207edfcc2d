//! Semaphores: an uncontended acquire + release against the lock's and the floor's, and 12
//! tasks of 3 clients looping on a semaphore of 3 permits with 4 ms holds (how many permits are
//! held on average, fairness, waits), beside distributed-lock-redis's semaphore (1 master: it
//! has no Redlock semaphore).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use configurable_redlock::{Redlock, Timeout};
use distributed_lock_core::{DistributedSemaphore, LockHandle, SemaphoreProvider};
use distributed_lock_redis::RedisLockProvider;
use redis::Script;
use redlock_runtime::test_util::Masters;

use crate::{
    Plan,
    probes::{RELEASE, TTL, floor_cycle, raw_connections, timed},
    report::{Report, median, ms, percentile, us},
};

const PERMITS: usize = 3;
const HOLD: Duration = Duration::from_millis(4);
const CLIENTS: usize = 3;
const TASKS_PER_CLIENT: usize = 4;

pub(crate) async fn sections(report: &mut Report, plan: &Plan) {
    report.section(
        format!(
            "semaphore of {PERMITS}: uncontended acquire + release ({} cycles x {} repetitions, medians)",
            plan.cycles, plan.reps
        ),
        vec!["masters", "implementation", "p50", "p50 / floor", "p50 / lock"],
    );
    for count in [1, 3] {
        uncontended(report, plan, count).await;
    }
    report.section(
        format!(
            "semaphore of {PERMITS}: {CLIENTS} clients x {TASKS_PER_CLIENT} tasks looping, {} ms holds, {} s",
            HOLD.as_millis(),
            plan.contention.as_secs()
        ),
        vec![
            "masters",
            "implementation",
            "acquisitions/s",
            "permits held on average (of 3; acquired to released)",
            "Jain (tasks)",
            "wait p50 / p99 / max",
            "most holders seen",
        ],
    );
    for count in [1, 3] {
        contended(report, plan, count, Implementation::Api).await;
    }
    contended(report, plan, 1, Implementation::DistributedLockRedis).await;
}

#[derive(Clone, Copy, PartialEq)]
enum Implementation {
    Api,
    DistributedLockRedis,
}

/// One client of an implementation; cheap to clone.
#[derive(Clone)]
enum Client {
    Api(Redlock),
    DistributedLockRedis(Arc<RedisLockProvider>),
}

/// What releases a held permit.
type Release = Box<dyn FnOnce() -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

impl Client {
    async fn new(implementation: Implementation, urls: &[String]) -> Self {
        match implementation {
            Implementation::Api => Self::Api(Redlock::new(urls).unwrap()),
            Implementation::DistributedLockRedis => Self::DistributedLockRedis(Arc::new(
                RedisLockProvider::builder()
                    .urls(urls)
                    .expiry(TTL)
                    .min_validity(TTL * 9 / 10)
                    .build()
                    .await
                    .unwrap(),
            )),
        }
    }

    /// A permit of `name`, waiting while all are held (`skip`: trying once).
    async fn acquire(&self, name: &str, skip: bool) -> Release {
        match self {
            Self::Api(redlock) => {
                let timeout = if skip {
                    Timeout::Skip
                } else {
                    Timeout::Forever
                };
                let guard = redlock
                    .semaphore(name, PERMITS)
                    .timeout(timeout)
                    .await
                    .unwrap();
                Box::new(move || Box::pin(async move { guard.release().await.unwrap() }))
            }
            Self::DistributedLockRedis(provider) => {
                let semaphore = provider.create_semaphore(name, PERMITS as u32);
                let handle = if skip {
                    semaphore
                        .try_acquire()
                        .await
                        .unwrap()
                        .expect("a free permit")
                } else {
                    semaphore.acquire(None).await.unwrap()
                };
                Box::new(move || Box::pin(async move { handle.release().await.unwrap() }))
            }
        }
    }

    fn label(&self) -> &'static str {
        match self {
            Self::Api(_) => "this crate",
            Self::DistributedLockRedis(_) => "distributed-lock-redis",
        }
    }
}

async fn uncontended(report: &mut Report, plan: &Plan, count: usize) {
    let masters = Masters::start(count);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut semaphores = vec![Client::Api(redlock.clone())];
    if count == 1 {
        let peer = Client::new(Implementation::DistributedLockRedis, &masters.urls()).await;
        semaphores.push(peer);
    }
    let connections = raw_connections(&masters).await;
    let script = Script::new(RELEASE);
    // Interleaved cycle by cycle: floor, lock, then each semaphore.
    let rows = 2 + semaphores.len();
    let mut medians: Vec<Vec<f64>> = vec![Vec::new(); rows];
    for _ in 0..plan.reps {
        let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); rows];
        for _ in 0..plan.cycles {
            timed(
                &mut samples[0],
                floor_cycle(&connections, &script, "bench:sem-floor"),
            )
            .await;
            timed(&mut samples[1], async {
                let guard = redlock.lock("bench:sem-lock").timeout(-1).await.unwrap();
                guard.release().await.unwrap();
            })
            .await;
            for (index, client) in semaphores.iter().enumerate() {
                let name = format!("bench:sem-uncontended:{index}");
                timed(&mut samples[2 + index], async {
                    (client.acquire(&name, true).await)().await;
                })
                .await;
            }
        }
        for (row, mut samples) in samples.into_iter().enumerate() {
            medians[row].push(percentile(&mut samples, 0.5).as_secs_f64());
        }
    }
    let p50: Vec<f64> = medians.into_iter().map(median).collect();
    let mut labels = vec!["floor".to_owned(), "this crate: lock".to_owned()];
    labels.extend(
        semaphores
            .iter()
            .map(|client| format!("{}: semaphore", client.label())),
    );
    for (label, p50_of) in labels.into_iter().zip(&p50) {
        report.row(vec![
            count.to_string(),
            label,
            us(Duration::from_secs_f64(*p50_of)),
            format!("{:.2}", p50_of / p50[0]),
            format!("{:.2}", p50_of / p50[1]),
        ]);
    }
}

async fn contended(report: &mut Report, plan: &Plan, count: usize, implementation: Implementation) {
    let masters = Masters::start(count);
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        clients.push(Client::new(implementation, &masters.urls()).await);
    }
    let name = "bench:sem-contended";
    let stop = Arc::new(AtomicBool::new(false));
    let holding = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS * TASKS_PER_CLIENT)
        .map(|task| {
            let client = clients[task % CLIENTS].clone();
            let (stop, holding, most) =
                (Arc::clone(&stop), Arc::clone(&holding), Arc::clone(&most));
            tokio::spawn(async move {
                let (mut held, mut waits) = (Duration::ZERO, Vec::new());
                while !stop.load(Ordering::Relaxed) {
                    let asked = Instant::now();
                    let release = client.acquire(name, false).await;
                    waits.push(asked.elapsed());
                    let now = holding.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    let took = Instant::now();
                    tokio::time::sleep(HOLD).await;
                    holding.fetch_sub(1, Ordering::SeqCst);
                    // Held until its release is done: the permit is not free before.
                    release().await;
                    held += took.elapsed();
                }
                (held, waits)
            })
        })
        .collect();
    tokio::time::sleep(plan.contention).await;
    stop.store(true, Ordering::Relaxed);
    let (mut held, mut waits, mut counts) = (Duration::ZERO, Vec::new(), Vec::new());
    for task in tasks {
        let (task_held, task_waits) = task.await.unwrap();
        held += task_held;
        counts.push(task_waits.len() as f64);
        waits.extend(task_waits);
    }
    let elapsed = started.elapsed();
    let total: f64 = counts.iter().sum();
    let jain = total * total / (counts.len() as f64 * counts.iter().map(|c| c * c).sum::<f64>());
    let max = *waits.iter().max().unwrap();
    report.row(vec![
        count.to_string(),
        clients[0].label().to_owned(),
        format!("{:.0}", total / elapsed.as_secs_f64()),
        format!("{:.2}", held.as_secs_f64() / elapsed.as_secs_f64()),
        format!("{jain:.2}"),
        format!(
            "{} / {} / {}",
            ms(percentile(&mut waits, 0.5)),
            ms(percentile(&mut waits, 0.99)),
            ms(max)
        ),
        most.load(Ordering::SeqCst).to_string(),
    ]);
}
