//! What the log says when masters come and go: each connection failure of a master once per
//! 10 s at WARN, not once per attempt; a master in its restart grace warned about once per
//! restart, with the ways out, and never under `RestartGrace::Off`; a skipped job called in a
//! loop during an outage logs its failure once per 10 s, not once per call.

mod common;

use std::time::Duration;

use configurable_redlock::{Config, LockError, Redlock, RestartGrace, redlock};
use redlock_runtime::test_util::RedisServer;

/// The WARN lines about the master on `port` that contain `what`.
fn warnings(port: u16, what: &str) -> Vec<String> {
    common::logs()
        .lines_with(&format!("127.0.0.1:{port}"))
        .into_iter()
        .filter(|line| line.contains("WARN") && line.contains(what))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_stays_unreachable_is_warned_about_once() {
    common::logs();
    let nobody = common::nobody_listening();
    let port: u16 = nobody.rsplit(':').next().unwrap().parse().unwrap();
    let redlock = Redlock::with_config(Config {
        outage_timeout: Some(Duration::from_secs(2)),
        ..Config::new([nobody])
    })
    .unwrap();
    // 5 tasks ride out a 2 s outage: dozens of connection attempts.
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let redlock = redlock.clone();
            tokio::spawn(async move { redlock.lock("outage").await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    }
    let warned = warnings(port, "cannot connect to Redis master");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(
        !warned[0].contains("Error occurred"),
        "in our words: {warned:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_server_in_its_grace_is_warned_about_once_with_the_fix() {
    common::logs();
    let server = RedisServer::start_volatile();
    let redlock = Redlock::new([server.url()]).unwrap();
    for round in 0..5 {
        let err = redlock
            .lock(format!("fresh-{round}"))
            .timeout(-1)
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("restart_grace"), "{text}");
        // Redis counts its uptime in whole seconds: no false precision.
        assert!(!text.contains("µs") && !text.contains("ns ago"), "{text}");
    }
    // Another client of the same process meets the same restart: still one warning.
    let other = Redlock::new([server.url()]).unwrap();
    other.lock("fresh").timeout(-1).await.unwrap_err();
    let warned = warnings(server.port(), "restart_grace");
    assert_eq!(
        warned.len(),
        2,
        "one per client, not per attempt: {warned:#?}"
    );
    assert!(
        warned[0].contains("appendfsync always") && warned[0].contains("REDLOCK_RESTART_GRACE=off"),
        "names the ways out: {}",
        warned[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_grace_a_fresh_server_grants_at_once_and_nothing_is_warned() {
    common::logs();
    let server = RedisServer::start_volatile();
    let redlock = Redlock::with_config(Config {
        restart_grace: RestartGrace::Off,
        ..Config::new([server.url()])
    })
    .unwrap();
    let guard = redlock.lock("fresh").timeout(-1).await.unwrap();
    guard.release().await.unwrap();
    assert_eq!(warnings(server.port(), "restart").len(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_refuses_writes_is_warned_about_once() {
    common::logs();
    let server = RedisServer::start_with_args(&["--min-replicas-to-write", "1"]);
    let redlock = Redlock::with_config(Config {
        outage_timeout: Some(Duration::from_secs(1)),
        ..Config::new([server.url()])
    })
    .unwrap();
    // A wait retried for 1 s: many refused attempts, one warning that names the refusal.
    let err = redlock.lock("refused").await.unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    let warned = warnings(server.port(), "refuses writes");
    assert_eq!(warned.len(), 1, "{warned:#?}");
    assert!(warned[0].contains("NOREPLICAS"), "{}", warned[0]);
}

#[redlock(name = "looped-during-an-outage", timeout = -1, silent, client = client)]
async fn looped_job(client: &Redlock) {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_job_looped_during_an_outage_logs_its_failure_once() {
    common::logs();
    let client = Redlock::new([common::nobody_listening()]).unwrap();
    for _ in 0..200 {
        looped_job(&client).await;
    }
    let errors: Vec<String> = common::logs()
        .lines_with("looped-during-an-outage")
        .into_iter()
        .filter(|line| line.contains("ERROR") && line.contains("the body is skipped"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0].contains("Redis masters can answer"),
        "{}",
        errors[0]
    );
}
