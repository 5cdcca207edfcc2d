//! Lock metrics in Prometheus text format: `cargo run --features metrics --example prometheus`.
//!
//! With the `metrics` feature (`configurable-redlock = { features = ["metrics"] }`) the crate
//! reports through the `metrics` facade; here `metrics-exporter-prometheus` records them and the
//! example prints what a `/metrics` endpoint would serve (`PrometheusBuilder::install()` serves
//! it over HTTP in a real service). Uses `REDLOCK_URLS` / `REDIS_URL` when set, else a private
//! `redis-server`.

use std::time::Duration;

use configurable_redlock::{LockError, Redlock};
use metrics_exporter_prometheus::PrometheusBuilder;
use redlock_runtime::test_util::env_or_private_server;

#[tokio::main]
async fn main() -> Result<(), LockError> {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("no other metrics recorder is installed");
    let Ok((urls, private_server)) = env_or_private_server().map_err(|error| eprintln!("{error}"))
    else {
        std::process::exit(1);
    };
    let redlock = Redlock::new(urls)?;

    // Four workers take turns on jobs 0..8; a job can be skipped while another worker has it.
    // `stats_name` groups the per-job locks into one time series.
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let redlock = redlock.clone();
            tokio::spawn(async move {
                for job in 0..8 {
                    let lock = redlock
                        .lock(format!("job:{}", (job + worker) % 8))
                        .stats_name("job")
                        .timeout(-1);
                    if let Ok(guard) = lock.await {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        guard.release().await?;
                    }
                }
                // One exclusive report, waited for up to 2 s.
                let report = redlock.lock("report").timeout(2).await?;
                tokio::time::sleep(Duration::from_millis(10)).await;
                report.release().await
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("worker task")?;
    }

    print!("{}", prometheus.render());
    drop(private_server);
    Ok(())
}
