//! Every supported function shape compiles (nothing here runs against Redis).
#![deny(warnings)]

use std::future::Future;

use configurable_redlock::{LockError, Redlock, blocking, redlock};

static LOCKS: std::sync::LazyLock<Redlock> =
    std::sync::LazyLock::new(|| Redlock::new(["redis://127.0.0.1:1"]).unwrap());

/// Docs and `#[must_use]` are kept.
#[must_use]
#[redlock(name = "job:{id}", timeout = -1, silent)]
pub async fn skip_if_held(id: u64) -> u64 {
    id * 2
}

#[redlock(name = "wait", timeout = 2.5, auto_release_time = 10, stats_name = "waiters")]
async fn bounded(input: &str) -> Result<usize, LockError> {
    let parsed: usize = input.len();
    if parsed == 0 {
        return Err(LockError::Lost { name: "x".into() });
    }
    Ok(parsed)
}

#[redlock(name = "io", timeout = -1)]
fn io_result() -> std::io::Result<Vec<u8>> {
    Ok(vec![1])
}

#[redlock(name = "forever", client = LOCKS, auto_extend = false)]
fn forever_sync(x: u8) -> u8 {
    x
}

#[redlock(name = "tick:{n}", timeout = -1, silent, min_hold = 1.5)]
async fn scheduled(n: u64) -> u64 {
    n
}

#[redlock(name = "encoder", permits = 3, timeout = -1, silent)]
async fn pooled() {}

// One permit is the lock, which may be re-entrant.
#[redlock(name = "tree", permits = 1, reentrant, timeout = -1, silent)]
async fn nested() {}

#[redlock(name = "unit", timeout = -1, silent, guard = lock)]
fn with_guard() {
    assert!(!lock.is_lost());
}

#[redlock(name = "anyhow-like", timeout = 1, silent)]
async fn silent_result() -> Result<Vec<String>, Box<dyn std::error::Error + Send + Sync>> {
    Ok(Vec::new())
}

struct Worker {
    locks: Redlock,
    sync_locks: blocking::Redlock,
    done: u32,
}

impl Worker {
    #[redlock(name = "worker:{n}", client = &self.locks, timeout = -1, silent)]
    async fn by_ref(&self, n: u32) -> u32 {
        n + self.done
    }

    #[redlock(name = "worker-mut", client = self.locks, guard = g)]
    async fn by_mut(&mut self) -> Result<(), LockError> {
        g.extend().await?;
        self.done += 1;
        Ok(())
    }

    #[redlock(name = "worker-sync", client = &self.sync_locks, timeout = -1, silent)]
    fn sync_method(&mut self) -> u32 {
        self.done += 1;
        self.done
    }

    #[redlock(name = "worker-owned", client = self.locks.clone(), timeout = 0)]
    async fn by_value(self) -> u32 {
        self.done
    }
}

#[redlock(name = "generic", timeout = -1, silent)]
async fn generic<T>(items: Vec<T>) -> Vec<T>
where
    T: Clone + Send,
{
    items.to_vec()
}

#[redlock(name = "impl-trait", timeout = -1, silent)]
fn impl_trait_return() -> impl Iterator<Item = u8> + Default {
    std::iter::Empty::default()
}

#[redlock(name = "tail-async")]
fn tail_async(n: u8) -> impl Future<Output = Result<u8, LockError>> {
    async move { Ok(n) }
}

#[async_trait::async_trait]
trait Job {
    async fn run(&self, id: u64) -> Result<u64, LockError>;
}

#[async_trait::async_trait]
impl Job for Worker {
    #[redlock(name = "job:{id}", client = &self.locks, timeout = -1)]
    async fn run(&self, id: u64) -> Result<u64, LockError> {
        Ok(id)
    }
}

#[redlock(name = "runtime-path", crate = "::redlock_runtime", timeout = -1, silent)]
async fn via_runtime_crate() {}

/// Names from expressions: a field, a method, a constant.
struct Task {
    id: u64,
    tenant: &'static str,
}

impl Task {
    fn lock_key(&self) -> String {
        format!("job:{}:{}", self.tenant, self.id)
    }
}

const REPORT: &str = "nightly-report";

#[redlock(name = format!("job:{}", job.id), stats_name = job.tenant, timeout = -1, silent)]
async fn by_field(job: &Task) -> u64 {
    job.id
}

#[redlock(name = job.lock_key(), timeout = -1, silent)]
fn by_method(job: Task) -> u64 {
    job.id
}

#[redlock(name = REPORT, timeout = -1, silent)]
async fn by_constant() {}

fn main() {
    // Referenced, not called: pass cases must not need Redis.
    let _ = (skip_if_held, bounded, io_result, forever_sync, with_guard, silent_result);
    let _ = (generic::<u8>, impl_trait_return, tail_async, via_runtime_crate);
    let _ = (by_field, by_method, by_constant);
    let _ = (Worker::by_ref, Worker::by_mut, Worker::sync_method, Worker::by_value, <Worker as Job>::run);
}
