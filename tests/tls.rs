//! `rediss://` masters (feature `tls`): locks over TLS when the server's CA is trusted (here
//! through `SSL_CERT_FILE`, which the platform's certificate loader reads), and a clear
//! `Unavailable` naming the certificate problem when it is not.

mod common;

use std::{process::Command, time::Duration};

use configurable_redlock::{Config, LockError, Redlock};
use redlock_runtime::test_util::RedisServer;

const CLIENT_ENV: &str = "REDLOCK_TLS_CLIENT_URL";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_over_tls_with_a_trusted_ca() {
    if let Ok(url) = std::env::var(CLIENT_ENV) {
        // The client process, started with SSL_CERT_FILE naming the test CA.
        let redlock = Redlock::new([url]).unwrap();
        let guard = redlock.lock("over-tls").timeout(-1).await.unwrap();
        assert!(matches!(
            redlock.lock("over-tls").timeout(-1).await,
            Err(LockError::Timeout { .. })
        ));
        guard.release().await.unwrap();
        return;
    }
    let server = RedisServer::start_tls();
    assert!(server.url().starts_with("rediss://"));
    // Reading the CA file is the platform loader's job; it is read once per process, so the
    // client runs in a process of its own.
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "locks_over_tls_with_a_trusted_ca", "--nocapture"])
        .env(CLIENT_ENV, server.url())
        .env("SSL_CERT_FILE", server.tls_ca())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the TLS client failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_unavailable_with_the_reason() {
    let server = RedisServer::start_tls();
    // Room for loading the platform's roots and the handshake on a busy machine: the error
    // must be the certificate's, not a timeout's.
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_secs(2),
        ..Config::new([server.url()])
    })
    .unwrap();

    // Waiting cannot make the certificate trusted: even a wait without deadline fails at once.
    let err = redlock.lock("untrusted").timeout(0).await.unwrap_err();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(failures[0].misconfigured, "{err}");
    assert_eq!(failures[0].master, server.url());
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "names the TLS problem: {err}"
    );
}
