//! The tour of the API: `cargo run --example quickstart`.
//!
//! Uses the masters in `REDLOCK_URLS` (comma-separated) or `REDIS_URL` when set; otherwise it
//! starts a private `redis-server` on a free port and stops it at the end.

use std::time::Duration;

use configurable_redlock::{LockError, Redlock, Timeout};
use redlock_runtime::test_util::env_or_private_server;

#[tokio::main]
async fn main() -> Result<(), LockError> {
    // The client tells why a lock waits (a master down, a fresh server in its restart grace)
    // through `tracing`: without a subscriber, nobody hears it.
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(std::io::stderr)
        .init();
    let Ok((urls, private_server)) = env_or_private_server().map_err(|error| eprintln!("{error}"))
    else {
        std::process::exit(1);
    };
    let redlock = Redlock::new(urls)?;
    println!(
        "masters: {:?} (quorum {})",
        redlock.masters().collect::<Vec<_>>(),
        redlock.quorum()
    );

    // timeout = 0 (the default): wait until the lock is ours.
    let guard = redlock.lock("quickstart:report").await?;
    println!("1. holding `{}` as {}", guard.name(), guard.value());

    // timeout = -1: one attempt, skip if another client holds it.
    match redlock
        .lock("quickstart:report")
        .timeout(Timeout::Skip)
        .await
    {
        Err(LockError::Timeout { name, .. }) => println!("2. `{name}` is held: skipped at once"),
        other => println!("2. unexpected: {other:?}"),
    }

    // timeout = N seconds: wait up to N; here the holder releases after 200 ms.
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("quickstart:report").timeout(2).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    guard.release().await?;
    let guard = waiter.await.expect("waiter task")?;
    println!("3. the waiter got `{}` once it was released", guard.name());

    // Dropping a guard releases in the background: an early return or `?` never leaks a lock.
    drop(guard);
    let again = redlock.lock("quickstart:report").timeout(1).await?;
    println!("4. free again after the drop");
    again.release().await?;

    // The client before its server: what it sends in the background (releases, waiting
    // statistics) lands, and its connections close without a word.
    redlock.shutdown().await;
    drop(redlock);
    drop(private_server);
    println!("done");
    Ok(())
}
