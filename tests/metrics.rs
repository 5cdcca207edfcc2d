//! The `metrics` feature: every outcome counted, waits and holds timed, losses counted,
//! as a Prometheus recorder renders them.

use std::time::Duration;

use configurable_redlock::{Config, Redlock};
use metrics_exporter_prometheus::PrometheusBuilder;
use redlock_runtime::test_util::RedisServer;

/// The value of the sample whose line starts with `series` (name and labels).
fn sample(rendered: &str, series: &str) -> Option<f64> {
    rendered.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        value.parse().ok()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_waits_holds_and_losses_are_recorded() {
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .expect("the only recorder of this test binary");
    let server = RedisServer::start();
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_millis(100),
        ..Config::new([server.url()])
    })
    .unwrap();
    let other = Redlock::new([server.url()]).unwrap();

    // Two acquisitions grouped under one stats name, one skip, one timeout.
    let first = redlock
        .lock("job:1")
        .stats_name("job")
        .timeout(-1)
        .await
        .unwrap();
    let busy = other.lock("job:1").stats_name("job").timeout(-1).await;
    assert!(busy.is_err());
    let late = other.lock("job:1").stats_name("job").timeout(0.2).await;
    assert!(late.is_err());
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.release().await.unwrap();
    redlock
        .lock("job:2")
        .stats_name("job")
        .timeout(-1)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();

    // A lost hold: its key is replaced behind its back, and the watchdog notices.
    let stolen = redlock
        .lock("stolen")
        .auto_release_time(Duration::from_millis(300))
        .timeout(-1)
        .await
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg(configurable_redlock::lock_key("stolen"))
        .arg("someone-else")
        .query(&mut server.connection())
        .unwrap();
    tokio::time::timeout(Duration::from_secs(2), stolen.lost())
        .await
        .expect("the watchdog should notice the loss");
    drop(stolen);

    // With no master at all, the outcome is `unavailable`.
    server.kill();
    assert!(redlock.lock("down").timeout(-1).await.is_err());

    let rendered = prometheus.render();
    let count = |series: &str| sample(&rendered, series);
    assert_eq!(
        count(r#"redlock_acquisitions_total{lock="job",outcome="acquired"}"#),
        Some(2.0),
        "{rendered}"
    );
    assert_eq!(
        count(r#"redlock_acquisitions_total{lock="job",outcome="skipped"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"redlock_acquisitions_total{lock="job",outcome="timed_out"}"#),
        Some(1.0)
    );
    assert_eq!(
        count(r#"redlock_acquisitions_total{lock="down",outcome="unavailable"}"#),
        Some(1.0)
    );
    assert_eq!(count(r#"redlock_lost_total{lock="stolen"}"#), Some(1.0));
    // The timed-out wait lasted its 0.2 s; the first hold at least 50 ms.
    let waited = count(r#"redlock_wait_seconds_sum{lock="job",outcome="timed_out"}"#).unwrap();
    assert!((0.2..5.0).contains(&waited), "{waited}");
    assert_eq!(
        count(r#"redlock_hold_seconds_count{lock="job"}"#),
        Some(2.0)
    );
    let held = count(r#"redlock_hold_seconds_sum{lock="job"}"#).unwrap();
    assert!(held >= 0.05, "{held}");
}
