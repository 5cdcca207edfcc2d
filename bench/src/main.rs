//! This crate against the raw Redis floor and against its Rust peers (rslock, distkit,
//! distributed-lock-redis: see `peers.rs`), side by side in one run, on private
//! `redis-server`s started here:
//! - uncontended acquire + release, 1 and 3 masters: floor, API, `#[redlock]`, the peers,
//!   interleaved cycle by cycle;
//! - skip when held (`timeout = -1`) against one raw `SET NX` per master, 1 and 3 masters;
//!   split votes: 3 clients trying one fresh name at once, with a master down or paused;
//! - handoff (holder releases -> the next waiter holds it) against a raw `PING`;
//! - 4 worker processes on one lock: throughput, fairness (Jain, and acquisitions in a row by
//!   one process: how much a releaser barges ahead of the waiters), waits, the commands each
//!   acquisition costs, counted with `MONITOR` (sent by clients / run inside scripts), and
//!   master 0's CPU per acquisition against an uncontended acquire + release; the full run
//!   draws the waits as `bench/waits-hold-5ms.svg` and `bench/waits-no-hold.svg`;
//! - liveness: a cold start of thousands of waiters on a busy machine, a mixed fleet with the
//!   Python library, a dead head of the queue (`--liveness` runs only these);
//! - 1,000 tasks on distinct names in one process, against the floor at the same concurrency,
//!   1 and 3 masters, with the client's CPU per cycle;
//! - 10,000 guards held at once, renewed by the watchdog: renewals per second, how many one
//!   server read carries (batching), the client's CPU per renewal, losses (`--scale` runs
//!   only these and the row above);
//! - memory: RSS over 100,000 cycles on 100,000 distinct names;
//! - semaphores (`--semaphore` runs only these): uncontended cost against the lock's and the
//!   floor's; 12 tasks looping on 3 permits with 4 ms holds (permits held on average, Jain,
//!   waits), beside distributed-lock-redis's semaphore on 1 master.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml [-- --quick] [-- --uncontended] [-- --waiting] [-- --liveness] [-- --paused] [-- --replicas] [-- --scale] [-- --semaphore]
//! [-- --json PATH]`; `-- --profile-distinct` runs only the API's distinct-names loop (1 master,
//! 8 s) and prints its rate and CPU per cycle, for A/B runs and `perf record`.
//!
//! The floor is what any Redlock must send: `SET NX PX`, then an `EVALSHA` compare-and-delete,
//! on one multiplexed connection per master, masters in parallel. The peers run with their
//! defaults (rslock: 3 retries, retry delay up to 200 ms) except where `peers.rs` or a row
//! says otherwise.

use std::time::Duration;

use report::Report;

mod chart;
mod contention;
mod liveness;
mod peers;
mod probes;
mod report;
mod scale;
mod semaphore;
mod uncontended;

/// How much to measure: the full run, or a smoke run under a minute (`--quick`).
pub(crate) struct Plan {
    pub(crate) cycles: usize,
    pub(crate) reps: usize,
    pub(crate) handoffs: usize,
    pub(crate) peer_handoffs: usize,
    pub(crate) contention: Duration,
    pub(crate) scale: Duration,
    pub(crate) held: Duration,
    pub(crate) memory_cycles: usize,
    pub(crate) cold_start_tasks: usize,
    pub(crate) mixed_fleet: Duration,
}

impl Plan {
    fn from_args() -> Self {
        if std::env::args().any(|arg| arg == "--quick") {
            Self {
                cycles: 200,
                reps: 2,
                handoffs: 20,
                peer_handoffs: 5,
                contention: Duration::from_secs(1),
                scale: Duration::from_secs(1),
                held: Duration::from_secs(6),
                memory_cycles: 10_000,
                cold_start_tasks: 200,
                mixed_fleet: Duration::from_secs(3),
            }
        } else {
            Self {
                cycles: 2_000,
                reps: 5,
                handoffs: 200,
                peer_handoffs: 30,
                contention: Duration::from_secs(10),
                scale: Duration::from_secs(5),
                held: Duration::from_secs(60),
                memory_cycles: 100_000,
                cold_start_tasks: 2_000,
                mixed_fleet: Duration::from_secs(20),
            }
        }
    }
}

/// What one run measures: one flag of the command line, or none for everything.
enum Mode {
    /// Every section.
    All,
    /// `--uncontended`: the uncontended, skip and split-vote sections.
    Uncontended,
    /// `--waiting`: the handoff and contention sections (the ones a change of the wait moves).
    Waiting,
    /// `--liveness`: cold start, mixed fleet, dead head, paused master.
    Liveness,
    /// `--mixed-fleet`: one Python worker beside two processes of ours.
    MixedFleet,
    /// `--paused`: one master of three paused.
    Paused,
    /// `--replicas`: the price of `wait_for_replicas`.
    Replicas,
    /// `--scale`: the rows of many locks in one process (distinct names, held guards).
    Scale,
    /// `--semaphore`: a semaphore's uncontended cost and its permits' use under contention.
    Semaphore,
    /// `--profile-distinct`: the API's distinct-names loop alone.
    ProfileDistinct,
    /// One of the worker processes that the rows start (this executable, with its arguments).
    Worker(Worker),
}

/// The kinds of worker process.
enum Worker {
    Contention,
    ColdStart,
    Head,
}

impl Mode {
    fn from_args(args: &[String]) -> (Self, &[String]) {
        let workers = [
            ("--contention-worker", Worker::Contention),
            ("--cold-start-worker", Worker::ColdStart),
            ("--head-worker", Worker::Head),
        ];
        for (flag, worker) in workers {
            if let Some(at) = args.iter().position(|arg| arg == flag) {
                return (Self::Worker(worker), &args[at + 1..]);
            }
        }
        let flags = [
            ("--profile-distinct", Self::ProfileDistinct),
            ("--replicas", Self::Replicas),
            ("--paused", Self::Paused),
            ("--mixed-fleet", Self::MixedFleet),
            ("--liveness", Self::Liveness),
            ("--waiting", Self::Waiting),
            ("--scale", Self::Scale),
            ("--semaphore", Self::Semaphore),
            ("--uncontended", Self::Uncontended),
        ];
        for (flag, mode) in flags {
            if args.iter().any(|arg| arg == flag) {
                return (mode, &[]);
            }
        }
        (Self::All, &[])
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (mode, worker_args) = Mode::from_args(&args);
    let plan = Plan::from_args();
    // A smoke run leaves the committed charts alone.
    let quick = args.iter().any(|arg| arg == "--quick");
    let mut report = Report::default();
    let report = &mut report;
    if !matches!(mode, Mode::Worker(_) | Mode::ProfileDistinct) {
        println!("machine: {}", report::machine());
    }
    match mode {
        Mode::Worker(Worker::Contention) => return contention::worker_main(worker_args).await,
        Mode::Worker(Worker::ColdStart) => return liveness::cold_start_worker(worker_args).await,
        Mode::Worker(Worker::Head) => return liveness::head_worker(worker_args).await,
        Mode::ProfileDistinct => return scale::profile_distinct().await,
        Mode::Replicas => uncontended::replica_wait_section(report, &plan).await,
        Mode::Paused => liveness::paused_master_section(report, &plan).await,
        Mode::MixedFleet => liveness::mixed_fleet_section(report, &plan).await,
        Mode::Liveness => liveness::sections(report, &plan).await,
        Mode::Uncontended => uncontended::sections(report, &plan).await,
        Mode::Waiting => contention::sections(report, &plan, quick).await,
        Mode::Scale => scale::sections(report, &plan, false).await,
        Mode::Semaphore => semaphore::sections(report, &plan).await,
        Mode::All => {
            uncontended::sections(report, &plan).await;
            semaphore::sections(report, &plan).await;
            contention::sections(report, &plan, quick).await;
            liveness::sections(report, &plan).await;
            scale::sections(report, &plan, true).await;
        }
    }
    if let Some(path) = args
        .iter()
        .position(|arg| arg == "--json")
        .and_then(|at| args.get(at + 1))
    {
        std::fs::write(path, report.json()).expect("write the JSON report");
        println!("\nJSON written to {path}");
    }
}
