//! What the log says during an outage: each connection failure of a master once per 10 s at
//! WARN, not once per attempt.

use std::{
    io::Write,
    net::TcpListener,
    sync::{Arc, Mutex},
    time::Duration,
};

use configurable_redlock::{Config, LockError, Redlock};

/// Every log line of this test binary.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_stays_unreachable_is_warned_about_once() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::WARN)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = format!(
        "redis://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    drop(listener);
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
    let logs = String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    let warnings = logs
        .lines()
        .filter(|line| line.contains("WARN") && line.contains("cannot connect to Redis master"))
        .count();
    assert_eq!(warnings, 1, "{logs}");
}
