//! A `top` for lock contention: every second, whether the client can grant locks, and each
//! contended lock with its live waiters (Rust and Python waiters alike) and its holder as the
//! masters see it (`Redlock::inspect`; a lock named like its statistics). A holder known dead
//! whose long TTL stalls its lock is freed with `Redlock::force_release`, the tool of last
//! resort.
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
            "\n[{}s] {} contended lock(s); {}",
            tick + 1,
            contended.len(),
            redlock.readiness().await
        );
        println!(
            "{:>8}  {:<12}  {:>9}  holder",
            "waiting", "lock", "ttl left"
        );
        for lock in contended {
            let state = redlock.inspect(&lock.stats_name).await;
            // The holder and TTL of the first master that answered with a holder.
            let seen = state
                .masters
                .iter()
                .flatten()
                .find(|master| master.holder.is_some());
            let (ttl, holder) = match seen {
                Some(master) => (
                    format!("{:.1}s", master.ttl.unwrap_or_default().as_secs_f64()),
                    master.holder.clone().unwrap_or_default(),
                ),
                None => ("-".into(), "(free)".into()),
            };
            println!(
                "{:>8}  {:<12}  {ttl:>9}  {holder}",
                lock.waiters, lock.stats_name
            );
        }
    }
    Ok(())
}
