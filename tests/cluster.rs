//! A Redis Cluster as one master of the quorum: a real 3-primary cluster started by the
//! harness, alone and beside plain masters, with one of its nodes killed.

mod common;

use std::time::{Duration, Instant};

use common::eventually;
use configurable_redlock::{Config, LockError, Redlock, lock_key, waiting_key};
use redlock_runtime::test_util::{Masters, RedisCluster, RedisServer};

fn client(urls: Vec<String>) -> Redlock {
    Redlock::with_config(Config {
        master_timeout: Duration::from_secs(1),
        ..Config::new(urls)
    })
    .expect("valid test URLs")
}

/// Reads a key through the cluster; retried for a while, since right after a failover a node's
/// slot map may still name the dead primary.
fn cluster_get(cluster: &RedisCluster, key: &str) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match redis::cmd("GET").arg(key).query(&mut cluster.connection()) {
            Ok(value) => return value,
            Err(err) if Instant::now() < deadline => {
                eprintln!("GET {key} on the cluster: {err}; retrying");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(err) => panic!("GET {key} on the cluster: {err}"),
        }
    }
}

/// Whether `node` serves `key` itself (a plain GET elsewhere is answered with MOVED).
fn served_by(node: &RedisServer, key: &str) -> bool {
    redis::cmd("GET")
        .arg(key)
        .query::<Option<String>>(&mut node.connection())
        .is_ok()
}

// Names over all three nodes' slots, and names whose braces are hash tags: every key of a lock
// must share the lock key's slot, or its scripts fail with CROSSSLOT.
const NAMES: [&str; 8] = [
    "report",
    "job:1",
    "job:2",
    "job:3",
    "a{b}c",
    "{tag}",
    "job:{17}",
    "open{brace",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_serves_every_operation_of_a_lock() {
    let cluster = RedisCluster::start(3);
    let redlock = client(vec![cluster.url()]);
    assert_eq!(redlock.quorum(), 1);
    let other = client(vec![cluster.url()]);
    let mut nodes_used = [false; 3];

    for name in NAMES {
        let guard = redlock.lock(name).timeout(-1).await.unwrap();
        let key = lock_key(name);
        assert_eq!(cluster_get(&cluster, &key).as_deref(), Some(guard.value()));
        for (index, node) in cluster.nodes().iter().enumerate() {
            nodes_used[index] |= served_by(node, &key);
        }
        let busy = other.lock(name).timeout(-1).await.unwrap_err();
        assert!(matches!(busy, LockError::Timeout { .. }), "{name}: {busy}");
        // The fencing and extend scripts touch the companion keys.
        let first = guard.fencing_token().await.unwrap();
        assert!(first >= 1, "{name}: token {first}");
        guard.extend().await.unwrap();
        guard.release().await.unwrap();
        assert_eq!(cluster_get(&cluster, &key), None, "{name}: key left behind");

        let again = redlock.lock(name).timeout(-1).await.unwrap();
        assert!(again.fencing_token().await.unwrap() > first, "{name}");
        again.release().await.unwrap();
    }
    assert_eq!(nodes_used, [true; 3], "the names should cover all nodes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_woken_and_counted_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let holder_client = client(vec![cluster.url()]);
    let waiter_client = client(vec![cluster.url()]);
    for name in ["handoff", "shard{7}"] {
        let holder = holder_client.lock(name).timeout(-1).await.unwrap();
        let waiter = {
            let waiter_client = waiter_client.clone();
            tokio::spawn(async move {
                let guard = waiter_client.lock(name).timeout(10).await;
                (guard, Instant::now())
            })
        };
        // In a cluster the registry entry is written just after the counter (another slot).
        let entry = format!("\"{}\"", waiting_key(name));
        let counted = eventually(common::READY, || {
            let mut connection = cluster.connection();
            let count: Option<i64> = redis::cmd("GET")
                .arg(waiting_key(name))
                .query(&mut connection)
                .unwrap();
            let registry: Vec<String> = redis::cmd("LRANGE")
                .arg(configurable_redlock::REGISTRY_KEY)
                .arg(0)
                .arg(-1)
                .query(&mut connection)
                .unwrap();
            count == Some(1) && registry.contains(&entry)
        })
        .await;
        assert!(counted, "{name}: the waiter is not counted");
        let contended = holder_client.waiting().await.unwrap();
        assert!(
            contended
                .iter()
                .any(|c| c.stats_name == name && c.waiters == 1),
            "{name}: {contended:?}"
        );

        let released = Instant::now();
        holder.release().await.unwrap();
        let (guard, acquired) = waiter.await.unwrap();
        let guard = guard.unwrap();
        // Round trips (through the cluster's redirects) plus the load margin; without the
        // release notification the waiter would wake only at its 1 s heartbeat.
        let handoff = acquired - released;
        assert!(
            handoff < Duration::from_millis(300) + common::SLACK,
            "{name}: {handoff:?}"
        );
        guard.release().await.unwrap();
    }
    let registry: Vec<String> = redis::cmd("LRANGE")
        .arg(configurable_redlock::REGISTRY_KEY)
        .arg(0)
        .arg(-1)
        .query(&mut cluster.connection())
        .unwrap();
    assert_eq!(
        registry,
        [
            "\"Waiting.ConfigurableLock.handoff\"",
            "\"Waiting.ConfigurableLock.shard{7}\""
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_whose_keys_would_span_slots_are_refused_with_a_cluster() {
    let cluster = RedisCluster::start(3);
    let plain = RedisServer::start();
    let redlock = client(vec![cluster.url()]);
    for name in ["a}b", "a{}b", "x}y{"] {
        let refused = redlock.lock(name).timeout(-1).await.unwrap_err();
        assert!(
            matches!(&refused, LockError::InvalidName { name: n, .. } if n == name),
            "{name}: {refused}"
        );
        assert!(refused.to_string().contains("hash tag"), "{refused}");
    }
    let refused = redlock
        .lock("fine")
        .stats_name("bad}stats")
        .timeout(-1)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, LockError::InvalidName { .. }),
        "{refused}"
    );
    // Plain masters have no slots: the same name works there.
    let plain_client = client(vec![plain.url()]);
    plain_client
        .lock("a}b")
        .timeout(-1)
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_is_one_vote_beside_plain_masters() {
    let cluster = RedisCluster::start(3);
    let plain = Masters::start(2);
    let mut urls = vec![cluster.url()];
    urls.extend(plain.urls());
    let redlock = client(urls);
    assert_eq!(redlock.quorum(), 2);

    // Names whose keys the first node serves.
    let node = &cluster.nodes()[0];
    let mut on_node = Vec::new();
    for index in 0.. {
        let name = format!("mixed:{index}");
        let guard = redlock.lock(&name).timeout(-1).await.unwrap();
        // The lock is granted once a quorum answers; a third `SET` may still be on its way.
        for master in 0..2 {
            let set = eventually(common::READY, || {
                common::get(&plain, master, &lock_key(&name)).as_deref() == Some(guard.value())
            })
            .await;
            assert!(set, "{name}: plain master {master} never got the key");
        }
        if served_by(node, &lock_key(&name)) {
            on_node.push(name);
        }
        guard.release().await.unwrap();
        if on_node.len() == 3 {
            break;
        }
    }

    // The cluster loses a node: the plain masters still make a quorum.
    node.kill();
    for name in &on_node {
        let guard = redlock.lock(name).timeout(-1).await.unwrap();
        guard.release().await.unwrap();
    }
    // And with a plain master down as well, the cluster's failure is named.
    plain[1].kill();
    let unavailable = redlock.lock(&on_node[0]).timeout(-1).await.unwrap_err();
    let LockError::Unavailable { failures, .. } = &unavailable else {
        panic!("expected Unavailable, got {unavailable}");
    };
    let failed: Vec<&str> = failures.iter().map(|f| f.master.as_str()).collect();
    assert!(failed.contains(&cluster.url().as_str()), "{unavailable}");
    assert!(failed.contains(&plain[1].url().as_str()), "{unavailable}");

    // The node comes back (empty): the cluster votes again.
    node.restart();
    cluster.wait_until_healthy();
    let mut granted = false;
    for _ in 0..100 {
        if let Ok(guard) = redlock.lock(&on_node[0]).timeout(-1).await {
            assert_eq!(
                cluster_get(&cluster, &lock_key(&on_node[0])).as_deref(),
                Some(guard.value())
            );
            guard.release().await.unwrap();
            granted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(granted, "the restarted node never voted again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contending_clients_exclude_each_other_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let plain = Masters::start(2);
    let mut mixed = vec![cluster.url()];
    mixed.extend(plain.urls());
    for urls in [vec![cluster.url()], mixed] {
        let counter = format!("counter:{}", urls.len());
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let redlock = client(urls.clone());
                let seeds: Vec<String> = cluster.nodes().iter().map(RedisServer::url).collect();
                let counter = counter.clone();
                tokio::spawn(async move {
                    let data = redis::cluster::ClusterClient::new(seeds).unwrap();
                    let mut data = data.get_async_connection().await.unwrap();
                    for _ in 0..15 {
                        let guard = redlock.lock("counter").timeout(10).await.unwrap();
                        // Read, pause, write: a second holder would lose an increment.
                        let seen: Option<u64> = redis::cmd("GET")
                            .arg(&counter)
                            .query_async(&mut data)
                            .await
                            .unwrap();
                        tokio::time::sleep(Duration::from_millis(1)).await;
                        let _: () = redis::cmd("SET")
                            .arg(&counter)
                            .arg(seen.unwrap_or(0) + 1)
                            .query_async(&mut data)
                            .await
                            .unwrap();
                        guard.release().await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(
            cluster_get(&cluster, &counter).as_deref(),
            Some("60"),
            "{urls:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicated_hold_survives_a_cluster_failover() {
    let cluster = RedisCluster::start_with_replicas(3, 1);
    let redlock = client(vec![cluster.url()]);
    let other = client(vec![cluster.url()]);
    let guard = redlock
        .lock("survivor")
        // Longer than the failover (node timeout 2 s plus the election).
        .auto_release_time(Duration::from_secs(8))
        .timeout(-1)
        .await
        .unwrap();
    let acquired = Instant::now();
    let key = lock_key("survivor");
    let primary = cluster
        .nodes()
        .iter()
        .find(|node| served_by(node, &key))
        .expect("a primary serves the key");
    // Its replica has the key (replication is asynchronous: wait for it). `READONLY` lets a
    // replica answer reads of its primary's slots; other nodes answer MOVED.
    let on_a_replica = |node: &RedisServer| {
        let mut connection = node.connection();
        let _: () = redis::cmd("READONLY").query(&mut connection).unwrap();
        let value: Option<String> = redis::cmd("GET")
            .arg(&key)
            .query(&mut connection)
            .ok()
            .flatten();
        value.as_deref() == Some(guard.value())
    };
    let replicated = eventually(common::READY, || {
        cluster
            .nodes()
            .iter()
            .filter(|node| !std::ptr::eq(*node, primary))
            .any(on_a_replica)
    })
    .await;
    assert!(replicated, "no replica got the lock key");

    primary.kill();
    cluster.wait_until_healthy();
    // The promoted replica serves the key: the hold goes on past its first validity, so it
    // was renewed there, and it excludes others.
    tokio::time::sleep_until((acquired + Duration::from_secs(9)).into()).await;
    assert!(
        !guard.is_lost(),
        "the replicated hold was lost in the failover"
    );
    assert_eq!(cluster_get(&cluster, &key).as_deref(), Some(guard.value()));
    let busy = other.lock("survivor").timeout(-1).await.unwrap_err();
    assert!(matches!(busy, LockError::Timeout { .. }), "{busy}");
    guard.release().await.unwrap();
    assert_eq!(cluster_get(&cluster, &key), None);
}

#[configurable_redlock::redlock(name = "cluster-failover", client = client)]
async fn cluster_job(client: &Redlock, holds: &std::sync::atomic::AtomicU32) {
    holds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_killed_under_waiting_tasks_is_an_outage_ridden_out() {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    };
    let cluster = RedisCluster::start_with_replicas(3, 1);
    // The default client settings, as an application has them.
    let client = Redlock::new([cluster.url()]).unwrap();
    let holds = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    // Through the attribute, whose `()` return cannot carry an error: a failure taken for a
    // misconfiguration would panic the tasks.
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, holds, stop) = (client.clone(), Arc::clone(&holds), Arc::clone(&stop));
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    cluster_job(&client, &holds).await;
                }
            })
        })
        .collect();
    assert!(eventually(common::READY, || holds.load(Ordering::SeqCst) > 20).await);

    let key = lock_key("cluster-failover");
    let primary = cluster
        .nodes()
        .iter()
        .find(|node| served_by(node, &key))
        .expect("a primary serves the key");
    primary.kill();
    let killed_at = Instant::now();
    let at_kill = holds.load(Ordering::SeqCst);
    let resumed = eventually(common::READY, || {
        holds.load(Ordering::SeqCst) > at_kill + 20
    })
    .await;
    eprintln!(
        "holds resumed {:?} after the primary was killed",
        killed_at.elapsed()
    );
    assert!(resumed, "no holds after the failover");
    stop.store(true, Ordering::SeqCst);
    for task in tasks {
        task.await.expect("no task panicked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_semaphores_permits_share_its_slot_on_a_cluster() {
    let cluster = RedisCluster::start(3);
    let (first, second) = (client(vec![cluster.url()]), client(vec![cluster.url()]));
    for name in ["encoder", "a{b}c", "open{brace"] {
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(first.semaphore(name, 2).timeout(-1).await.unwrap());
        }
        let busy = second.semaphore(name, 2).timeout(-1).await.unwrap_err();
        assert!(matches!(busy, LockError::Timeout { .. }), "{name}: {busy}");
        // The fencing counter is the semaphore's, beside every permit.
        let tokens = [
            held[0].fencing_token().await.unwrap(),
            held[1].fencing_token().await.unwrap(),
        ];
        assert!(tokens[1] > tokens[0], "{name}: {tokens:?}");
        held[1].extend().await.unwrap();
        let waiter = {
            let second = second.clone();
            tokio::spawn(async move { second.semaphore(name, 2).timeout(10).await })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        held.pop().unwrap().release().await.unwrap();
        let guard = waiter.await.unwrap().expect("the released permit");
        guard.release().await.unwrap();
        held.pop().unwrap().release().await.unwrap();
        let lock = lock_key(name);
        let permit = match name {
            "a{b}c" => format!("{{b}}:permit:{lock}:1"),
            _ => format!("{{{lock}}}:permit:1"),
        };
        for key in [lock, permit] {
            assert_eq!(
                cluster_get(&cluster, &key),
                None,
                "{name}: {key} left behind"
            );
        }
    }
}
