//! `#[redlock]` against real Redis: each mode of the return-type table and each function shape.

mod common;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use common::{get, redlock};
use configurable_redlock::{LockError, Redlock, blocking, lock_key, redlock};
use redlock_runtime::test_util::Masters;

#[redlock(name = "report:{day}", timeout = -1, silent, client = client)]
async fn silent_report(client: &Redlock, day: u32, runs: &AtomicU32) -> u32 {
    runs.fetch_add(1, Ordering::SeqCst);
    day
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_skips_the_body_and_returns_default_when_held() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let runs = AtomicU32::new(0);

    assert_eq!(silent_report(&client, 7, &runs).await, 7);
    // Another process holds it (a client of its own: the same task asking again would be re-entry).
    let held = redlock(&masters).lock("report:7").await.unwrap();
    assert_eq!(
        silent_report(&client, 7, &runs).await,
        0,
        "skipped: u32::default()"
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the body did not run the second time"
    );
    // Another argument is another lock: not held.
    assert_eq!(silent_report(&client, 8, &runs).await, 8);
    held.release().await.unwrap();
}

#[redlock(name = "invoice:{id}", timeout = 0.2, client = client)]
async fn bill(client: &Redlock, id: u64) -> Result<u64, LockError> {
    Ok(id * 100)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_function_returns_the_timeout_error() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let held = redlock(&masters).lock("invoice:1").await.unwrap();

    let started = Instant::now();
    let err = bill(&client, 1).await.unwrap_err();
    assert!(
        matches!(err, LockError::Timeout { ref name, .. } if name == "invoice:1"),
        "{err}"
    );
    assert!(started.elapsed() >= Duration::from_millis(200));

    held.release().await.unwrap();
    assert_eq!(bill(&client, 1).await.unwrap(), 100);
    assert_eq!(
        get(&masters, 0, &lock_key("invoice:1")),
        None,
        "released after the body"
    );
}

#[derive(Debug)]
struct AppError(String);

impl From<LockError> for AppError {
    fn from(error: LockError) -> Self {
        AppError(error.to_string())
    }
}

#[redlock(name = "silent-result", timeout = -1, silent, client = client)]
async fn silent_result(client: &Redlock) -> Result<Vec<u8>, AppError> {
    Ok(vec![1])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_never_hides_an_outage() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let held = redlock(&masters).lock("silent-result").await.unwrap();
    assert_eq!(
        silent_result(&client).await.unwrap(),
        Vec::<u8>::new(),
        "held: Ok(default)"
    );
    held.release().await.unwrap();

    masters[0].kill();
    let err = silent_result(&client).await.unwrap_err();
    assert!(
        err.0
            .contains("no quorum of 1 of 1 Redis masters can answer"),
        "an outage is an error: {}",
        err.0
    );
}

#[redlock(name = "forever", client = client)]
async fn wait_forever(client: &Redlock, order: Arc<std::sync::Mutex<Vec<&'static str>>>) {
    order.lock().unwrap().push("body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_timeout_waits_for_the_lock() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let held = client.lock("forever").await.unwrap();

    let waiter = tokio::spawn({
        let (client, order) = (client.clone(), Arc::clone(&order));
        async move { wait_forever(&client, order).await }
    });
    common::until_queued(&masters, "forever", 1).await;
    order.lock().unwrap().push("released");
    held.release().await.unwrap();
    waiter.await.unwrap();

    assert_eq!(*order.lock().unwrap(), ["released", "body"]);
}

#[redlock(name = "sync:{n}", timeout = -1, silent, client = client)]
fn sync_job(client: &blocking::Redlock, n: u32) -> Option<u32> {
    Some(n)
}

#[test]
fn a_plain_fn_locks_through_the_blocking_api() {
    let masters = Masters::start(1);
    let client = blocking::Redlock::new(masters.urls()).unwrap();

    assert_eq!(sync_job(&client, 3), Some(3));
    let other_process = blocking::Redlock::new(masters.urls()).unwrap();
    let held = other_process.lock("sync:3").acquire().unwrap();
    assert_eq!(sync_job(&client, 3), None, "held: skipped");
    held.release().unwrap();
    assert_eq!(sync_job(&client, 3), Some(3));
}

struct Worker {
    locks: Redlock,
    handled: u32,
}

impl Worker {
    #[redlock(name = "worker", client = &self.locks, timeout = -1, silent, guard = lock)]
    async fn handle(&mut self) -> Option<String> {
        assert!(!lock.is_lost());
        lock.extend().await.ok()?;
        self.handled += 1;
        Some(lock.value().to_owned())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_with_a_client_field_binds_the_guard() {
    let masters = Masters::start(1);
    let mut worker = Worker {
        locks: redlock(&masters),
        handled: 0,
    };

    let value = worker.handle().await.expect("acquired");
    assert_eq!(value.len(), 36, "the guard's UUID value");
    assert_eq!(worker.handled, 1);
    let held = redlock(&masters).lock("worker").await.unwrap();
    assert_eq!(worker.handle().await, None);
    assert_eq!(worker.handled, 1);
    held.release().await.unwrap();
}

#[redlock(name = "panics", client = client, timeout = -1, silent)]
async fn panics_inside(client: &Redlock) {
    panic!("boom in the body");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_body_releases_the_lock_and_propagates() {
    let masters = Masters::start(1);
    let client = redlock(&masters);

    let task = tokio::spawn({
        let client = client.clone();
        async move { panics_inside(&client).await }
    });
    assert!(task.await.unwrap_err().is_panic());

    let next = client.lock("panics").timeout(1).await;
    assert!(next.is_ok(), "released after the panic: {next:?}");
}

#[redlock(name = "early", client = client, timeout = -1)]
async fn early_exit(client: &Redlock, fail: bool) -> Result<&'static str, LockError> {
    if fail {
        Err(LockError::Lost {
            name: "simulated".into(),
        })?;
    }
    Ok("done")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_mark_in_the_body_returns_and_releases() {
    let masters = Masters::start(1);
    let client = redlock(&masters);

    assert!(early_exit(&client, true).await.is_err());
    assert_eq!(
        early_exit(&client, false).await.unwrap(),
        "done",
        "released by the early return"
    );
}

#[async_trait::async_trait]
trait Job {
    async fn run(&self, id: u64) -> Result<u64, LockError>;
}

#[async_trait::async_trait]
impl Job for Worker {
    #[redlock(name = "job:{id}", client = &self.locks, timeout = -1)]
    async fn run(&self, id: u64) -> Result<u64, LockError> {
        Ok(id + u64::from(self.handled))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_trait_method_is_locked() {
    let masters = Masters::start(1);
    let worker = Worker {
        locks: redlock(&masters),
        handled: 1,
    };

    assert_eq!(worker.run(41).await.unwrap(), 42);
    let held = redlock(&masters).lock("job:41").await.unwrap();
    assert!(matches!(
        worker.run(41).await,
        Err(LockError::Timeout { .. })
    ));
    held.release().await.unwrap();
}

#[allow(clippy::manual_async_fn)] // this shape is what the test is about
#[redlock(name = "tail", client = client, timeout = -1)]
fn tail_async(
    client: &Redlock,
    n: u8,
) -> impl std::future::Future<Output = Result<u8, LockError>> + '_ {
    async move { Ok(n) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_ending_in_an_async_block_is_locked_when_awaited() {
    let masters = Masters::start(1);
    let client = redlock(&masters);

    let future = tail_async(&client, 5);
    let held = redlock(&masters).lock("tail").await.unwrap();
    assert!(
        matches!(future.await, Err(LockError::Timeout { .. })),
        "the lock is taken when awaited"
    );
    held.release().await.unwrap();
    assert_eq!(tail_async(&client, 5).await.unwrap(), 5);
}

#[redlock(name = "aborted", client = client, abort_on_lost, auto_release_time = 0.3, guard = lock)]
async fn long_job(client: &Redlock, steps: &AtomicU32) -> Result<u32, LockError> {
    let token = lock.fencing_token().await?;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        steps.fetch_add(1, Ordering::SeqCst);
    }
    Ok(u32::try_from(token).unwrap_or(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_lost_drops_the_body_and_returns_lost() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let steps = AtomicU32::new(0);
    let stealer = tokio::spawn({
        let masters_url = masters[0].url();
        async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            let mut raw = redis::Client::open(masters_url)
                .unwrap()
                .get_connection()
                .unwrap();
            let _: () = redis::cmd("SET")
                .arg(lock_key("aborted"))
                .arg("intruder")
                .query(&mut raw)
                .unwrap();
            Instant::now()
        }
    });

    let result = long_job(&client, &steps).await;
    let stopped_at = Instant::now();
    let stolen_at = stealer.await.unwrap();

    assert!(
        matches!(result, Err(LockError::Lost { ref name }) if name == "aborted"),
        "{result:?}"
    );
    // The next renewal (every 100 ms) finds the key replaced; the body would run 2 s.
    let stopped_in = stopped_at.saturating_duration_since(stolen_at);
    assert!(
        stopped_in < Duration::from_millis(100) + common::SLACK,
        "stopped at the next renewal: {stopped_in:?}"
    );
    let done = steps.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        steps.load(Ordering::SeqCst),
        done,
        "the body future was dropped"
    );
    assert!(done < 100);
}

#[redlock(name = "quiet:{id}", timeout = 0.2, stats = false, client = client)]
async fn quiet(client: &Redlock, id: u64) -> Result<u64, LockError> {
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_false_waits_without_statistics() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let held = redlock(&masters).lock("quiet:1").await.unwrap();

    let err = quiet(&client, 1).await.unwrap_err();
    assert!(matches!(err, LockError::Timeout { .. }), "{err}");
    held.release().await.unwrap();
    assert_eq!(quiet(&client, 1).await.unwrap(), 1);

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*Waiting*")
        .query(&mut masters[0].connection())
        .unwrap();
    assert!(keys.is_empty(), "statistics written: {keys:?}");
}

struct Invoice {
    tenant: &'static str,
    id: u64,
}

impl Invoice {
    fn lock_key(&self) -> String {
        format!("invoice:{}:{}", self.tenant, self.id)
    }

    // Names from expressions: a method, and `format!` over fields.
    #[redlock(name = self.lock_key(), stats_name = self.tenant, timeout = -1, client = client)]
    async fn bill(&self, client: &Redlock) -> Result<Option<String>, LockError> {
        Ok(client
            .lock(self.lock_key())
            .timeout(-1)
            .await
            .err()
            .map(|e| e.to_string()))
    }

    #[redlock(name = format!("refund:{}", self.id), timeout = -1, client = client)]
    async fn refund(&self, client: &Redlock) -> Result<bool, LockError> {
        Ok(client
            .lock(format!("refund:{}", self.id))
            .timeout(-1)
            .await
            .is_err())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_can_be_expressions_over_fields_and_methods() {
    let masters = Masters::start(1);
    let client = redlock(&masters);
    let invoice = Invoice {
        tenant: "acme",
        id: 7,
    };

    let held_inside = invoice.bill(&client).await.unwrap();
    assert!(
        held_inside.is_some_and(|error| error.contains("invoice:acme:7")),
        "the body runs under `invoice:acme:7`"
    );
    assert!(invoice.refund(&client).await.unwrap(), "held as `refund:7`");
    assert_eq!(get(&masters, 0, &lock_key("invoice:acme:7")), None);
}

/// An application's own error and result alias, as job code writes them.
#[derive(Debug)]
enum JobError {
    Lock(LockError),
}

impl From<LockError> for JobError {
    fn from(error: LockError) -> Self {
        Self::Lock(error)
    }
}

type JobResult<T> = Result<T, JobError>;

struct Jobs {
    locks: Redlock,
}

impl Jobs {
    #[redlock(name = "alias:{id}", timeout = 0.2, client = &self.locks)]
    async fn run(&self, id: u32) -> JobResult<u32> {
        Ok(id)
    }

    #[redlock(name = "alias:{id}", timeout = -1, silent, client = &self.locks)]
    async fn run_unless_running(&self, id: u32) -> JobResult<u32> {
        Ok(id)
    }

    #[redlock(name = "{name}", client = &self.locks)]
    async fn run_named(&self, name: &str) -> JobResult<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_alias_is_a_result() {
    let masters = Masters::start(1);
    let jobs = Jobs {
        locks: redlock(&masters),
    };
    assert_eq!(jobs.run(1).await.unwrap(), 1);
    let held = redlock(&masters).lock("alias:1").await.unwrap();
    assert!(
        matches!(
            jobs.run(1).await,
            Err(JobError::Lock(LockError::Timeout { .. }))
        ),
        "the timeout is returned through the alias"
    );
    assert_eq!(
        jobs.run_unless_running(1).await.unwrap(),
        0,
        "`silent`: Ok(default) when held elsewhere"
    );
    held.release().await.unwrap();
    // Waiting forever, a misconfiguration (an empty name) is returned, not a panic.
    assert!(matches!(jobs.run_named("").await, Err(JobError::Lock(_))));
}
