//! `RedlockLayer` in apalis 1.x workers, against a real `redis-server`: two worker processes
//! (`src/bin/apalis_worker.rs`), each with every job in its queue (every job enqueued twice),
//! never run one job's body twice at once, and acknowledge the duplicate they skip (each
//! process answers every job of its queue and exits: nothing is retried forever).

use std::process::{Command, Stdio};

use redlock_runtime::test_util::Masters;

const JOBS: u32 = 40;

#[test]
fn two_apalis_workers_never_run_a_job_twice_at_once() {
    let masters = Masters::start(1);
    let url = masters[0].url();
    let workers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_apalis_worker"))
                .arg(&url)
                .arg(JOBS.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("start a worker")
        })
        .collect();
    let (mut ran_in_all, mut skipped_in_all) = (0, 0);
    for worker in workers {
        let output = worker.wait_with_output().expect("run the worker");
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "a worker failed: {text}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let counts: Vec<u32> = text
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        let (ran, skipped) = (counts[0], counts[1]);
        assert_eq!(ran + skipped, JOBS, "every job of its queue answered");
        ran_in_all += ran;
        skipped_in_all += skipped;
    }
    assert!(
        ran_in_all >= JOBS,
        "each job ran at least once: {ran_in_all}"
    );
    // The two start together (see the worker) and take a second each: they meet.
    assert!(skipped_in_all > 0, "some duplicates were skipped");
    let overlaps: Option<u32> = redis::cmd("GET")
        .arg("apalis:overlaps")
        .query(&mut masters[0].connection())
        .unwrap();
    assert_eq!(overlaps, None, "no job body ran twice at once");
}
