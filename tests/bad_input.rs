//! Bad input gives a typed error that names what is wrong, and never prints a password.

mod common;

use std::{io::Write, net::TcpListener, time::Duration};

use configurable_redlock::{Config, LockError, Redlock, Timeout};
use redlock_runtime::test_util::{Masters, RedisServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_requests_fail_before_touching_redis() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);

    let empty = redlock.lock("").await.unwrap_err();
    assert!(matches!(empty, LockError::InvalidName { .. }), "{empty}");
    assert!(empty.to_string().contains("must not be empty"));

    for ttl in [Duration::ZERO, Duration::from_millis(2)] {
        let err = redlock
            .lock("ttl")
            .auto_release_time(ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LockError::InvalidAutoReleaseTime { .. }),
            "{err}"
        );
        assert!(
            err.to_string().contains("`ttl`") && err.to_string().contains("drift"),
            "{err}"
        );
    }

    for timeout in [f64::NAN, f64::INFINITY, -2.0, -0.5] {
        let err = redlock.lock("timeout").timeout(timeout).await.unwrap_err();
        assert!(
            matches!(err, LockError::InvalidTimeout { .. }),
            "{timeout}: {err}"
        );
        assert!(
            err.to_string().contains("-1, 0 or a positive number"),
            "{err}"
        );
    }
    assert!(Timeout::try_from(-3).is_err());

    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut masters[0].connection())
        .unwrap();
    assert!(keys.is_empty(), "nothing written: {keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unavailable_and_never_printed() {
    let server = RedisServer::start_with_args(&["--requirepass", "right-pw"]);
    let url = format!("redis://:hunter2-pw@127.0.0.1:{}", server.port());
    let redlock = Redlock::new([&url]).unwrap();

    let err = redlock.lock("auth").timeout(-1).await.unwrap_err();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1);
    assert_eq!(
        failures[0].master,
        format!("redis://:***@127.0.0.1:{}", server.port())
    );
    let shown = format!("{err} {err:?} {:?}", redlock);
    assert!(
        shown.to_uppercase().contains("WRONGPASS") || shown.contains("auth"),
        "{shown}"
    );
    assert!(!shown.contains("hunter2-pw"), "password printed: {shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_master_that_is_not_redis_is_unavailable() {
    // A server that answers like a web server, not like Redis.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let redlock = Redlock::with_config(Config {
        master_timeout: Duration::from_millis(300),
        ..Config::new([format!("redis://127.0.0.1:{port}")])
    })
    .unwrap();

    let err = redlock.lock("not-redis").timeout(-1).await.unwrap_err();

    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures[0].master, format!("redis://127.0.0.1:{port}"));
    assert!(err.to_string().contains("not-redis"), "{err}");
}

/// Every malformed value a user may pass, with the error it must give.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_matrix() {
    type Check = fn(&LockError) -> bool;
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let secret_server = RedisServer::start_with_args(&["--requirepass", "right-pw"]);
    let wrong_password = Redlock::new([format!(
        "redis://:hunter2-pw@127.0.0.1:{}",
        secret_server.port()
    )])
    .unwrap();

    let cases: Vec<(&str, Result<(), LockError>, Check, &str)> = vec![
        (
            "empty name",
            redlock.lock("").await.map(drop),
            |e| matches!(e, LockError::InvalidName { .. }),
            "must not be empty",
        ),
        (
            "zero TTL",
            redlock
                .lock("m")
                .auto_release_time(Duration::ZERO)
                .await
                .map(drop),
            |e| matches!(e, LockError::InvalidAutoReleaseTime { .. }),
            "at least 3 ms",
        ),
        (
            "TTL within the drift",
            redlock
                .lock("m")
                .auto_release_time(Duration::from_millis(2))
                .await
                .map(drop),
            |e| matches!(e, LockError::InvalidAutoReleaseTime { .. }),
            "clock-drift",
        ),
        (
            "NaN timeout",
            redlock.lock("m").timeout(f64::NAN).await.map(drop),
            |e| matches!(e, LockError::InvalidTimeout { .. }),
            "NaN",
        ),
        (
            "infinite timeout",
            redlock.lock("m").timeout(f64::INFINITY).await.map(drop),
            |e| matches!(e, LockError::InvalidTimeout { .. }),
            "inf",
        ),
        (
            "timeout -2",
            redlock.lock("m").timeout(-2).await.map(drop),
            |e| matches!(e, LockError::InvalidTimeout { .. }),
            "-1, 0 or a positive number",
        ),
        (
            "timeout -0.5",
            redlock.lock("m").timeout(-0.5).await.map(drop),
            |e| matches!(e, LockError::InvalidTimeout { .. }),
            "-0.5",
        ),
        (
            "no masters",
            Redlock::new(Vec::<String>::new()).map(drop),
            |e| matches!(e, LockError::NoMasters),
            "at least one URL",
        ),
        (
            "zero master_timeout",
            Redlock::with_config(Config {
                master_timeout: Duration::ZERO,
                ..Config::new(["redis://127.0.0.1"])
            })
            .map(drop),
            |e| matches!(e, LockError::InvalidSetting { .. }),
            "invalid Config::master_timeout 0ns: it must be more than zero",
        ),
        (
            "URL without scheme",
            Redlock::new(["127.0.0.1:6379"]).map(drop),
            |e| matches!(e, LockError::InvalidUrl { .. }),
            "no scheme: write `redis://127.0.0.1:6379`",
        ),
        (
            "URL of another protocol",
            Redlock::new(["http://127.0.0.1"]).map(drop),
            |e| matches!(e, LockError::InvalidUrl { .. }),
            "unknown scheme `http`",
        ),
        (
            "port that is not a number",
            Redlock::new(["redis://:hunter2-pw@h:port"]).map(drop),
            |e| matches!(e, LockError::InvalidUrl { .. }),
            "port `port` of `h:port` is not a number from 1 to 65535",
        ),
        (
            "port out of range",
            Redlock::new(["redis://h:99999"]).map(drop),
            |e| matches!(e, LockError::InvalidUrl { .. }),
            "port `99999`",
        ),
        (
            "empty URL",
            Redlock::new([""]).map(drop),
            |e| matches!(e, LockError::InvalidUrl { .. }),
            "empty URL",
        ),
        (
            "wrong password",
            wrong_password.lock("m").timeout(-1).await.map(drop),
            |e| matches!(e, LockError::Unavailable { .. }),
            "redis://:***@127.0.0.1",
        ),
    ];

    for (what, outcome, expected, says) in cases {
        let err = outcome.expect_err(what);
        assert!(expected(&err), "{what}: wrong error {err:?}");
        let shown = format!("{err} | {err:?}");
        assert!(
            shown.contains(says),
            "{what}: the message should say {says:?}: {shown}"
        );
        assert!(
            !shown.contains("hunter2-pw"),
            "{what}: password printed: {shown}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acl_user_with_a_password_in_the_url_locks() {
    let acl = [
        "--user",
        "locker",
        "on",
        ">locker-pw",
        "~*",
        "&*",
        "+@all",
        "--user",
        "default",
        "off",
    ];
    let server = RedisServer::start_with_args(&acl);
    let url = format!("redis://locker:locker-pw@127.0.0.1:{}", server.port());
    let redlock = Redlock::new([&url]).unwrap();

    let guard = redlock.lock("acl").timeout(-1).await.unwrap();
    guard.release().await.unwrap();
    assert_eq!(
        redlock.masters().collect::<Vec<_>>(),
        [format!("redis://locker:***@127.0.0.1:{}", server.port())]
    );

    let wrong = Redlock::new([format!(
        "redis://locker:nope-pw@127.0.0.1:{}",
        server.port()
    )])
    .unwrap();
    let err = wrong.lock("acl").timeout(-1).await.unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
    assert!(!format!("{err} {err:?}").contains("nope-pw"));
}

const ENV_CHILD: &str = "REDLOCK_BAD_INPUT_FROM_ENV";

/// The environment is read in a child process of its own: variables are shared by the tests of
/// a process.
#[test]
fn a_bad_url_from_the_environment_names_the_variable() {
    if std::env::var_os(ENV_CHILD).is_some() {
        match Redlock::from_env() {
            Err(err) => println!("ERROR {err}"),
            Ok(_) => println!("CONFIG {:?}", Config::from_env().unwrap()),
        }
        return;
    }
    let run = |vars: &[(&str, &str)]| {
        let mut command = std::process::Command::new(std::env::current_exe().unwrap());
        command
            .args([
                "--exact",
                "a_bad_url_from_the_environment_names_the_variable",
                "--nocapture",
            ])
            .env(ENV_CHILD, "1")
            .env_remove("REDLOCK_URLS")
            .env_remove("REDIS_URL");
        for (var, value) in vars {
            command.env(var, value);
        }
        let stdout = String::from_utf8_lossy(&command.output().unwrap().stdout).into_owned();
        stdout
            .lines()
            .find_map(|line| line.strip_prefix("ERROR ").or(line.strip_prefix("CONFIG ")))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("nothing from {vars:?}: {stdout}"))
    };

    let trailing_comma = run(&[("REDLOCK_URLS", "redis://a:6379,redis://b:6379,")]);
    assert!(trailing_comma.contains("empty URL"), "{trailing_comma}");
    assert!(
        trailing_comma.contains("entry 3 of 3 in REDLOCK_URLS"),
        "{trailing_comma}"
    );
    let bad_port = run(&[("REDIS_URL", "redis://:hunter2-pw@h:70000")]);
    assert!(bad_port.contains("port `70000`"), "{bad_port}");
    assert!(bad_port.contains("from REDIS_URL"), "{bad_port}");
    assert!(!bad_port.contains("hunter2-pw"), "{bad_port}");

    // The settings beside the URLs: read when valid, else named.
    let settings = run(&[
        ("REDLOCK_RESTART_GRACE", "off"),
        ("REDLOCK_OUTAGE_TIMEOUT", "none"),
        ("REDLOCK_MASTER_TIMEOUT", "0.05"),
    ]);
    assert!(
        settings.contains("restart_grace: Off")
            && settings.contains("outage_timeout: None")
            && settings.contains("master_timeout: 50ms"),
        "{settings}"
    );
    let grace = run(&[("REDLOCK_RESTART_GRACE", "12.5")]);
    assert!(grace.contains("AtLeast(12.5s)"), "{grace}");
    for (var, value, expected) in [
        (
            "REDLOCK_RESTART_GRACE",
            "soon",
            "`off`, `ttl` or a number of seconds",
        ),
        (
            "REDLOCK_OUTAGE_TIMEOUT",
            "-3",
            "a number of seconds, or `none`",
        ),
        (
            "REDLOCK_MASTER_TIMEOUT",
            "0",
            "a positive number of seconds",
        ),
    ] {
        let err = run(&[(var, value)]);
        assert!(
            err.contains(&format!("invalid {var}=\"{value}\"")) && err.contains(expected),
            "{err}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_timeouts_wait_without_a_deadline_instead_of_panicking() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let extremes: [Timeout; 4] = [
        Duration::MAX.into(),
        Timeout::try_from(i64::MAX).unwrap(),
        Timeout::try_from(1.8e19).unwrap(),
        Timeout::After(Duration::from_secs(u64::MAX)),
    ];
    for timeout in extremes {
        // Free: taken at once.
        let guard = redlock.lock("extreme").timeout(timeout).await.unwrap();
        // Held: the request waits (no deadline the clock can hold) until the release.
        let waiter = tokio::spawn({
            let redlock = redlock.clone();
            async move { redlock.lock("extreme").timeout(timeout).await }
        });
        common::until_queued(&masters, "extreme", 1).await;
        assert!(!waiter.is_finished());
        guard.release().await.unwrap();
        let guard = waiter
            .await
            .expect("no panic")
            .expect("acquired after the release");
        guard.release().await.unwrap();
    }
    // The blocking API, on its own thread.
    let blocking = configurable_redlock::blocking::Redlock::new(masters.urls()).unwrap();
    let taken = tokio::task::spawn_blocking(move || {
        blocking
            .lock("extreme")
            .timeout(Duration::MAX)
            .acquire()
            .map(|guard| guard.release())
    })
    .await
    .expect("no panic");
    assert!(matches!(taken, Ok(Ok(()))), "{taken:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_config_durations_neither_panic_nor_hang() {
    let nobody = common::nobody_listening();
    let redlock = Redlock::with_config(Config {
        retry_delay: Duration::MAX,
        max_backoff: Duration::MAX,
        outage_timeout: Some(Duration::MAX),
        restart_grace: configurable_redlock::RestartGrace::AtLeast(Duration::MAX),
        ..Config::new([nobody])
    })
    .unwrap();
    let err = redlock.lock("extreme").timeout(1).await.unwrap_err();
    assert!(matches!(err, LockError::Unavailable { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ttls_beyond_redis_and_empty_stats_names_are_refused_up_front() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    for ttl in [Duration::MAX, Duration::from_millis((1 << 53) + 1)] {
        let err = redlock
            .lock("ttl")
            .auto_release_time(ttl)
            .await
            .unwrap_err();
        assert!(
            matches!(err, LockError::InvalidAutoReleaseTime { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("at most 2^53 ms"), "{err}");
    }
    let err = redlock.lock("job").stats_name("").await.unwrap_err();
    assert!(matches!(err, LockError::InvalidName { .. }), "{err}");
    assert!(err.to_string().contains("stats name is empty"), "{err}");
    // Without statistics, the stats name does not matter.
    let guard = redlock.lock("job").stats_name("").stats(false).await;
    assert!(guard.is_ok(), "{guard:?}");
}

#[test]
fn a_server_listed_twice_is_refused() {
    for urls in [
        [
            "redis://127.0.0.1:7000",
            "redis://127.0.0.1:7001",
            "redis://127.0.0.1:7000",
        ],
        ["redis://:pw@h:1/", "redis://b:2", "redis://:pw@h:1"],
    ] {
        let err = Redlock::new(urls).unwrap_err();
        assert!(matches!(err, LockError::InvalidUrl { .. }), "{err}");
        assert!(err.to_string().contains("listed twice"), "{err}");
        assert!(!err.to_string().contains("pw@"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_locks_name_never_takes_over_another_locks_keys() {
    let masters = Masters::start(3);
    let redlock = common::redlock(&masters);
    let other = common::redlock(&masters);
    // Names that were the keys of `j{1}`: its queue, leases, waiters and fencing counter.
    let squatters = ["j{1}:queue", "j{1}:leases", "j{1}:foreign", "j{1}:fence"];
    let mut held = Vec::new();
    for name in squatters {
        held.push(other.lock(name).await.unwrap());
    }
    // `j{1}` still works: a holder, a waiter woken by the release, fencing tokens.
    let first = redlock.lock("j{1}").await.unwrap();
    let token = first.fencing_token().await.unwrap();
    let waiter = tokio::spawn({
        let other = other.clone();
        async move { other.lock("j{1}").timeout(10).await }
    });
    common::eventually(common::READY, || {
        (0..3).all(|index| {
            let queue: usize = redis::cmd("ZCARD")
                .arg("{1}:queue:redlock:ConfigurableLock.j{1}")
                .query(&mut masters[index].connection())
                .unwrap();
            queue == 1
        })
    })
    .await;
    first.release().await.unwrap();
    let second = waiter.await.unwrap().unwrap();
    assert!(second.fencing_token().await.unwrap() > token);
    second.release().await.unwrap();
    // And the squatters still hold theirs, and release them.
    for guard in held {
        assert!(!guard.is_lost());
        guard.release().await.unwrap();
    }
    // After `j{1}` took tokens, `j{1}:fence` is a lock like any other.
    let fence = redlock.lock("j{1}:fence").timeout(-1).await.unwrap();
    fence.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_statistics_counter_never_fails_a_lock() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    let _: () = redis::cmd("SET")
        .arg(configurable_redlock::waiting_key("broken"))
        .arg("not a number")
        .query(&mut masters[0].connection())
        .unwrap();
    let holder = common::redlock(&masters).lock("broken").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = redlock.clone();
        async move { redlock.lock("broken").timeout(10).await }
    });
    common::until_queued(&masters, "broken", 1).await;
    holder.release().await.unwrap();
    let guard = waiter
        .await
        .unwrap()
        .expect("acquired despite the broken counter");
    guard.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_ends_the_wait_at_once_as_a_data_error() {
    let masters = Masters::start(1);
    let redlock = common::redlock(&masters);
    // Someone wrote the lock's queue as a string: the queued attempt cannot work.
    let queue = format!("{{{}}}:queue", configurable_redlock::lock_key("typed"));
    let _: () = redis::cmd("SET")
        .arg(&queue)
        .arg("x")
        .query(&mut masters[0].connection())
        .unwrap();
    let holder = common::redlock(&masters).lock("typed").await.unwrap();
    let started = std::time::Instant::now();
    let err = redlock.lock("typed").timeout(0).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        failures.iter().all(|failure| failure.misconfigured),
        "{err}"
    );
    assert!(err.to_string().contains("WRONGTYPE"), "{err}");
    // At once: not retried as an outage for `outage_timeout` (30 s).
    assert!(started.elapsed() < common::SLACK, "{:?}", started.elapsed());
    // Its release meets the same key, and says so.
    let released = holder.release().await;
    assert!(
        matches!(released, Err(LockError::Unavailable { .. })),
        "{released:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_that_fails_on_what_it_reads_ends_the_request_at_once_as_a_data_error() {
    let masters = Masters::start(1);
    let lock_key = configurable_redlock::lock_key("scrambled");
    let mut connection = masters[0].connection();
    // Foreign waiters counted, and their turn state scrambled: the release script's
    // arithmetic on it fails (a Lua runtime error, `ERR user_script:…`).
    let _: () = redis::cmd("SET")
        .arg(configurable_redlock::waiting_key("scrambled"))
        .arg(3)
        .query(&mut connection)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg(format!("{{{lock_key}}}:foreign"))
        .arg("missed")
        .arg("not a number")
        .query(&mut connection)
        .unwrap();
    let holder = common::redlock(&masters).lock("scrambled").await.unwrap();
    let waiter = tokio::spawn({
        let redlock = common::redlock(&masters);
        async move { redlock.lock("scrambled").timeout(2).await }
    });
    common::until_queued(&masters, "scrambled", 1).await;
    let started = std::time::Instant::now();
    let err = holder.release().await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        failures.iter().all(|failure| failure.misconfigured),
        "{err}"
    );
    assert!(started.elapsed() < common::SLACK, "{:?}", started.elapsed());
    waiter.abort();
}
