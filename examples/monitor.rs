//! A `top` for lock contention: every second, each contended lock with its live waiters
//! (Rust and Python waiters alike, summed over all masters).
//!
//! `cargo run --example monitor` watches the masters in `REDLOCK_URLS` / `REDIS_URL` until
//! Ctrl-C. With neither set, it starts a private `redis-server`, runs a few contending workers
//! on it, and shows 5 refreshes.

use std::time::Duration;

use configurable_redlock::{LockError, Redlock};
use redlock_runtime::test_util::env_or_private_server;

/// Workers that keep three locks contended, so that the demo has something to show.
fn demo_workers(redlock: &Redlock) {
    for (lock, workers, hold_ms) in [("reports", 4, 300), ("emails", 2, 500), ("billing", 3, 200)] {
        for _ in 0..workers {
            let redlock = redlock.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(guard) = redlock.lock(lock).await {
                        tokio::time::sleep(Duration::from_millis(hold_ms)).await;
                        let _ = guard.release().await;
                    }
                }
            });
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let Ok((urls, private_server)) = env_or_private_server().map_err(|error| eprintln!("{error}"))
    else {
        std::process::exit(1);
    };
    let redlock = Redlock::new(urls)?;
    if private_server.is_some() {
        demo_workers(&redlock);
    }
    let refreshes = if private_server.is_some() {
        5
    } else {
        u64::MAX
    };
    for tick in 0..refreshes {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut contended = redlock.waiting().await?;
        contended.sort_by(|a, b| {
            b.waiters
                .cmp(&a.waiters)
                .then(a.stats_name.cmp(&b.stats_name))
        });
        println!(
            "\n[{}s] {} contended lock(s) on {:?}",
            tick + 1,
            contended.len(),
            redlock.masters().collect::<Vec<_>>()
        );
        println!("{:>8}  lock (stats name)", "waiting");
        for lock in contended {
            println!("{:>8}  {}", lock.waiters, lock.stats_name);
        }
    }
    Ok(())
}
