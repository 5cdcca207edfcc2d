//! One apalis worker process, for `tests/apalis.rs`: `apalis_worker REDIS_URL JOBS`.
//!
//! It pushes jobs `0..JOBS` to its own in-memory queue (the test starts two such processes:
//! every job is enqueued twice) and works them four at a time behind `RedlockLayer`
//! (`timeout(-1)`, `silent`): a job that the other process runs now is acknowledged as
//! skipped, not retried. Each job body counts itself in `apalis:inside:<id>` on Redis while it
//! runs; finding another body of the same job inside counts an overlap in `apalis:overlaps`.
//! The two processes start working together (each counts itself in `apalis:ready` and waits
//! for the other), so that they meet on the same jobs. Once every job is answered it prints
//! `<ran> <skipped>` and exits.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use apalis::prelude::*;
use locks::{Redlock, layer::RedlockLayer};
use redis::AsyncCommands;

#[derive(Default)]
struct Answered {
    ran: AtomicU32,
    skipped: AtomicU32,
}

impl Answered {
    fn total(&self) -> u32 {
        self.ran.load(Ordering::SeqCst) + self.skipped.load(Ordering::SeqCst)
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxDynError> {
    let args: Vec<String> = std::env::args().collect();
    let (url, jobs) = (args[1].clone(), args[2].parse::<u32>()?);
    let redlock = Redlock::new([&url])?;
    let redis = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut storage = MemoryStorage::new();
    for id in 0..jobs {
        storage.push(id).await?;
    }
    // Both processes ready: each counts itself, then waits for the other.
    let mut ready = redis.clone();
    let _: u32 = ready.incr("apalis:ready", 1).await?;
    while ready.get::<_, u32>("apalis:ready").await? < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let answered = Arc::new(Answered::default());
    let skipped = Arc::clone(&answered);
    let ran = Arc::clone(&answered);
    let worker = WorkerBuilder::new("redlock-worker")
        .backend(storage)
        .concurrency(4)
        .layer(
            RedlockLayer::new(redlock, |task: &Task<u32>| {
                format!("apalis:job:{}", task.args)
            })
            .timeout(-1)
            .silent(move |_task: Task<u32>| {
                skipped.skipped.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .build(move |id: u32| {
            let (mut redis, ran) = (redis.clone(), Arc::clone(&ran));
            async move {
                let inside_key = format!("apalis:inside:{id}");
                let inside: u32 = redis.incr(&inside_key, 1).await?;
                if inside > 1 {
                    let _: u32 = redis.incr("apalis:overlaps", 1).await?;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _: i64 = redis.decr(&inside_key, 1).await?;
                ran.ran.fetch_add(1, Ordering::SeqCst);
                Ok::<(), BoxDynError>(())
            }
        });
    let all_answered = {
        let answered = Arc::clone(&answered);
        async move {
            while answered.total() < jobs {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok::<(), std::io::Error>(())
        }
    };
    worker.run_until(all_answered).await?;
    println!(
        "{} {}",
        answered.ran.load(Ordering::SeqCst),
        answered.skipped.load(Ordering::SeqCst)
    );
    Ok(())
}
