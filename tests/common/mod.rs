//! Helpers shared by the behaviour tests. The servers come from `redlock_runtime::test_util`.
#![allow(dead_code)] // each test file uses its own subset

use std::time::{Duration, Instant};

use configurable_redlock::{Config, Redlock};
use redlock_runtime::test_util::Masters;

/// How late a loaded 2-core machine may run a task, a timer or a `redis-server` reply: the
/// margin every time bound in these tests adds to what the product promises. The suite must
/// pass with another process keeping one core busy; there, single delays of 100–300 ms were
/// seen, so the margin is 500 ms. Each bound is chosen so that the failure it guards against
/// (a wait for a fallback timer, a whole backoff pause, a TTL running out) still lies beyond it.
pub const SLACK: Duration = Duration::from_millis(500);

/// How long a test waits for a precondition that is no promise of the product (a child process
/// started, a key replicated, a waiter counted by another process): long, because the wait
/// ends as soon as the condition holds.
pub const READY: Duration = Duration::from_secs(30);

/// A client over `masters` with a short per-master timeout, so fault tests stay fast.
pub fn redlock(masters: &Masters) -> Redlock {
    redlock_with_master_timeout(masters, Duration::from_millis(100))
}

/// A client over `masters` whose calls to one master are bounded by `master_timeout`.
pub fn redlock_with_master_timeout(masters: &Masters, master_timeout: Duration) -> Redlock {
    Redlock::with_config(Config {
        master_timeout,
        ..Config::new(masters.urls())
    })
    .expect("valid test URLs")
}

/// Reads a string key from one server with a plain connection.
pub fn get(masters: &Masters, index: usize, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut masters[index].connection())
        .expect("GET")
}

/// The registry of stats keys (`ConfigurableLockKeys`) on one server, as stored.
pub fn registry(masters: &Masters, index: usize) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(configurable_redlock::REGISTRY_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut masters[index].connection())
        .expect("LRANGE")
}

/// The key of lock `name`'s queue of waiters (waiter id -> ticket, the wall-clock ms when it
/// started waiting).
pub fn queue_key(name: &str) -> String {
    format!("{{{}}}:queue", configurable_redlock::lock_key(name))
}

/// Connects `client` to its masters (and loads its scripts) with one lock taken and released,
/// as a running service has before a fault.
pub async fn warm_up(client: &Redlock) {
    let guard = client.lock("warm-up").await.expect("warm-up lock");
    guard.release().await.expect("warm-up release");
}

/// The key of permit `index` of the semaphore `name` (a name without hash tag): permit 0 is the
/// lock key, permit `i` the lock key `{<lock key>}:permit:<i>`.
pub fn permit_key(name: &str, index: usize) -> String {
    let lock = configurable_redlock::lock_key(name);
    match index {
        0 => lock,
        _ => format!("{{{lock}}}:permit:{index}"),
    }
}

/// The queue of waiters of permit `index` of the semaphore `name` (a name without hash tag):
/// permit 0's is the lock's; a permit key has the lock key as its hash tag, so its queue is
/// `{<lock key>}:queue:<permit key>`.
pub fn permit_queue_key(name: &str, index: usize) -> String {
    match index {
        0 => queue_key(name),
        _ => format!(
            "{{{}}}:queue:{}",
            configurable_redlock::lock_key(name),
            permit_key(name, index)
        ),
    }
}

/// How many waiters stand in the queue of lock `name` on one server. A waiter enters the queue
/// after it subscribed to release notifications, so a queued waiter is woken by a release.
pub fn queued(masters: &Masters, index: usize, name: &str) -> usize {
    redis::cmd("ZCARD")
        .arg(queue_key(name))
        .query(&mut masters[index].connection())
        .expect("ZCARD")
}

/// The head of lock `name`'s queue on server `index`: its id and its ticket.
///
/// # Panics
/// If nobody is queued there.
pub fn head(masters: &Masters, index: usize, name: &str) -> (String, f64) {
    let head: Vec<(String, f64)> = redis::cmd("ZRANGE")
        .arg(queue_key(name))
        .arg(0)
        .arg(0)
        .arg("WITHSCORES")
        .query(&mut masters[index].connection())
        .expect("ZRANGE");
    head.into_iter().next().expect("a queued waiter")
}

/// Waits until the head of lock `name`'s queue (on every server) has waited
/// [`configurable_redlock::OVERTAKE_FOR`] since its ticket: for a lock that no release granted
/// yet, a release hands it the lock from then on, rather than leaving it free to be overtaken.
pub async fn until_head_cannot_be_overtaken(masters: &Masters, name: &str) {
    let mut latest = 0.0f64;
    for index in 0..masters.servers().len() {
        latest = latest.max(head(masters, index, name).1);
    }
    let overtaken_until = std::time::UNIX_EPOCH
        + Duration::from_secs_f64(latest / 1000.0)
        + configurable_redlock::OVERTAKE_FOR
        + Duration::from_millis(1);
    if let Ok(left) = overtaken_until.duration_since(std::time::SystemTime::now()) {
        tokio::time::sleep(left).await;
    }
}

/// Waits until `count` waiters stand in the queue of lock `name` on every server.
///
/// # Panics
/// If they are not there within [`READY`].
pub async fn until_queued(masters: &Masters, name: &str, count: usize) {
    let all = eventually(READY, || {
        (0..masters.servers().len()).all(|index| queued(masters, index, name) == count)
    })
    .await;
    assert!(all, "{count} waiters never queued on `{name}`");
}

/// Polls `condition` every 10 ms until it holds or `within` passes; returns whether it held.
pub async fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A URL where nothing listens: connections are refused at once.
pub fn nobody_listening() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("redis://127.0.0.1:{port}")
}

/// Every log line of this test binary, at every level, from the first call on. Tests of one
/// binary run side by side: each picks its own lines (by its servers' ports).
pub fn logs() -> &'static Logs {
    static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Logs::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .init();
        logs
    })
}

/// The log lines written so far (see [`logs`]).
#[derive(Clone, Default)]
pub struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Logs {
    /// The lines written so far that contain `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter(|line| line.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
