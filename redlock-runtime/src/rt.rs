//! The process runtime: one private tokio runtime per process, started on first use and never
//! stopped, for everything that must outlive the application's own runtimes.
//!
//! An application's runtime ends while work of ours may still be pending: `#[tokio::main]`
//! returns with a guard just dropped, a `#[tokio::test]` ends while another test keeps using
//! the same client. Tasks on that runtime would be dropped unfinished, and connections whose
//! I/O ran there would die with it. So the connections to the masters, the release
//! notifications, the renewal timer, the blocking API and all background work run here.
//!
//! Background work (the release of a dropped guard, the undo of a failed attempt, leaving a
//! queue, uncounting a wait) is counted while in flight. A thread that started some waits for
//! it as the thread ends, the main thread included: when `main` returns, the process exits only
//! after its dropped guards were released (each within its per-master timeout, all within
//! [`DRAIN_BOUND`]). [`drained`] waits for it explicitly (`Redlock::shutdown`).

use std::{
    cell::Cell,
    sync::{LazyLock, OnceLock, mpsc},
    time::Duration,
};

use tokio::{runtime::Runtime, sync::watch};

/// How long an ending thread waits for background work at most, so that exit never hangs.
pub(crate) const DRAIN_BOUND: Duration = Duration::from_secs(5);

thread_local! {
    /// Set on the private runtime's own threads.
    static PRIVATE_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// The private runtime.
pub(crate) fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("configurable-redlock")
            .on_thread_start(|| PRIVATE_THREAD.set(true))
            .enable_all()
            .build()
            .expect("configurable-redlock: cannot start its runtime")
    })
}

/// Spawns a task on the private runtime (connections, subscribers, timers).
pub(crate) fn spawn<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    runtime().spawn(future);
}

/// Spawns work that the process finishes before it exits (see the module docs).
pub(crate) fn spawn_background<F>(future: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let work = Work::start();
    runtime().spawn(async move {
        let _work = work;
        future.await;
    });
}

/// Waits until no background work is in flight.
pub(crate) async fn drained() {
    let mut in_flight = IN_FLIGHT.subscribe();
    // The sender is a static: it is never dropped.
    let _ = in_flight.wait_for(|count| *count == 0).await;
}

/// Background work in flight in this process.
static IN_FLIGHT: LazyLock<watch::Sender<usize>> = LazyLock::new(|| watch::Sender::new(0));

/// One piece of background work, counted until dropped. Starting one makes the calling thread
/// wait for all background work when it ends.
#[derive(Debug)]
pub(crate) struct Work(());

impl Work {
    pub(crate) fn start() -> Self {
        IN_FLIGHT.send_modify(|count| *count += 1);
        drain_when_this_thread_ends();
        Self(())
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        IN_FLIGHT.send_modify(|count| *count -= 1);
    }
}

/// Registers, once per thread, a thread-local whose destructor waits for the background work.
/// The main thread's thread-locals are destroyed when `main` returns, before the process
/// exits; other threads' when they end (a runtime's workers as it shuts down). The private
/// runtime's own threads never wait: they run the work.
pub(crate) fn drain_when_this_thread_ends() {
    thread_local! {
        static DRAIN: Drain = const { Drain };
    }
    // Both fail only while this thread's thread-locals are being destroyed: nothing to add.
    if PRIVATE_THREAD.try_with(Cell::get) == Ok(false) {
        let _ = DRAIN.try_with(|_| {});
    }
}

struct Drain;

impl Drop for Drain {
    fn drop(&mut self) {
        if *IN_FLIGHT.borrow() == 0 {
            return;
        }
        let (done, finished) = mpsc::sync_channel(1);
        runtime().spawn(async move {
            drained().await;
            let _ = done.send(());
        });
        if finished.recv_timeout(DRAIN_BOUND).is_err() {
            tracing::warn!(
                in_flight = *IN_FLIGHT.borrow(),
                "redlock: background work (releases of dropped guards) unfinished at exit; those locks expire with their TTL"
            );
        }
    }
}

/// Locks `mutex`, also after another holder panicked: each critical section of the crate
/// leaves its data whole at every step, so one panic must not fail every later lock.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
