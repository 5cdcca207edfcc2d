//! A process that ends while it holds locks or waits for them leaves nothing behind: its
//! dropped guards are released and its waits uncounted before it exits.
//!
//! Each case runs this executable again as a child whose `main` ends the way an application's
//! does (`#[tokio::main]` returning with a guard still alive, a plain `fn main` with the
//! blocking API, a runtime shut down with waits in flight); the parent then looks at Redis
//! right after the child exited. This file has its own `main` (no libtest harness), so the
//! child's `main` is a real one.

use std::{process::Command, time::Duration};

use configurable_redlock::{Redlock, blocking, lock_key, waiting_key};
use redlock_runtime::test_util::RedisServer;

const CHILD_ENV: &str = "REDLOCK_SHUTDOWN_CHILD";

/// What `#[tokio::main]` expands to: a multi-thread runtime that is dropped when `main` ends.
fn tokio_main(body: impl Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(body);
}

/// The children. Each prints nothing and ends with its work in the background.
fn child(case: &str, url: String) {
    match case {
        // `let _guard = redlock.lock(..).await?;` as the last statement of `#[tokio::main]`.
        "async-guard" => tokio_main(async {
            let redlock = Redlock::new([url]).unwrap();
            let _guard = redlock.lock("exit-async").await.unwrap();
        }),
        // The blocking API inside `#[tokio::main]`.
        "blocking-in-tokio-main" => tokio_main(async {
            let redlock = blocking::Redlock::new([url]).unwrap();
            let _guard = redlock.lock("exit-blocking").acquire().unwrap();
        }),
        // The blocking API in a plain `fn main`.
        "blocking-main" => {
            let redlock = blocking::Redlock::new([url]).unwrap();
            let _guard = redlock.lock("exit-plain").acquire().unwrap();
        }
        // Waiters still waiting when `main` returns: their runtime shuts down under them.
        "waits-in-flight" => tokio_main(async {
            let holder = Redlock::new([&url]).unwrap();
            let guard = holder.lock("exit-waits").await.unwrap();
            let waiters = Redlock::new([&url]).unwrap();
            for _ in 0..3 {
                let waiters = waiters.clone();
                tokio::spawn(async move { waiters.lock("exit-waits").await.map(drop) });
            }
            let mut data = redis::Client::open(url.as_str()).unwrap();
            loop {
                let counted: Option<i64> = redis::cmd("GET")
                    .arg(waiting_key("exit-waits"))
                    .query(&mut data)
                    .unwrap();
                if counted == Some(3) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            // The guard is dropped as `main` ends, the waiters as the runtime shuts down.
            drop(guard);
        }),
        other => panic!("unknown case {other}"),
    }
}

/// Runs `case` as a child process against `server` and returns once it exited.
fn run_child(case: &str, server: &RedisServer) {
    let status = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, case)
        .env("REDIS_URL", server.url())
        .status()
        .unwrap();
    assert!(status.success(), "{case}: the child failed: {status}");
}

fn get(server: &RedisServer, key: &str) -> Option<String> {
    redis::cmd("GET")
        .arg(key)
        .query(&mut server.connection())
        .unwrap()
}

fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    redis::cmd("KEYS")
        .arg(pattern)
        .query(&mut server.connection())
        .unwrap()
}

/// Each exit path leaves the lock free the moment the process is gone.
fn a_guard_alive_when_main_ends_is_released_before_exit() {
    let server = RedisServer::start();
    for (case, name) in [
        ("async-guard", "exit-async"),
        ("blocking-in-tokio-main", "exit-blocking"),
        ("blocking-main", "exit-plain"),
    ] {
        run_child(case, &server);
        assert_eq!(
            get(&server, &lock_key(name)),
            None,
            "{case}: the lock outlived the process"
        );
    }
}

/// Waits cut short by the end of the process are uncounted and leave their queue.
fn waits_in_flight_at_exit_are_uncounted() {
    let server = RedisServer::start();
    run_child("waits-in-flight", &server);
    assert_eq!(get(&server, &lock_key("exit-waits")), None, "lock key left");
    assert_eq!(
        get(&server, &waiting_key("exit-waits")).as_deref(),
        Some("0"),
        "waiters still counted after the process ended"
    );
    // The queue is left at exit; the head's state (`{…}:head`) expires by itself, as a
    // grant does (250 ms).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !keys(&server, "{redlock:*").is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        keys(&server, "{redlock:*"),
        Vec::<String>::new(),
        "queue places left"
    );
}

fn main() {
    if let Ok(case) = std::env::var(CHILD_ENV) {
        return child(&case, std::env::var("REDIS_URL").unwrap());
    }
    let tests: [(&str, fn()); 2] = [
        (
            "a_guard_alive_when_main_ends_is_released_before_exit",
            a_guard_alive_when_main_ends_is_released_before_exit,
        ),
        (
            "waits_in_flight_at_exit_are_uncounted",
            waits_in_flight_at_exit_are_uncounted,
        ),
    ];
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|arg| !arg.starts_with('-'))
        .collect();
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        if !filter.is_empty() && !filter.iter().any(|wanted| name.contains(wanted.as_str())) {
            continue;
        }
        match std::panic::catch_unwind(test) {
            Ok(()) => {
                println!("test {name} ... ok");
                passed += 1;
            }
            Err(_) => {
                println!("test {name} ... FAILED");
                failed += 1;
            }
        }
    }
    println!("\ntest result: {passed} passed, {failed} failed");
    if failed > 0 {
        std::process::exit(101);
    }
}
