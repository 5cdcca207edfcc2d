//! Topologies of test servers: independent masters, and a Redis Cluster.

use std::{
    ops::Index,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::server::{RedisServer, free_port, free_port_with_bus, server_version};

/// Several independent masters for quorum tests; index them to kill, pause or restart one.
///
/// ```no_run
/// let masters = redlock_runtime::test_util::Masters::start(5);
/// masters[0].kill();
/// masters[1].pause();
/// ```
#[derive(Debug)]
pub struct Masters(Vec<RedisServer>);

impl Masters {
    /// Starts `count` durable servers.
    ///
    /// ```no_run
    /// let masters = redlock_runtime::test_util::Masters::start(3);
    /// assert_eq!(masters.urls().len(), 3);
    /// ```
    pub fn start(count: usize) -> Self {
        Self((0..count).map(|_| RedisServer::start()).collect())
    }

    /// Starts `count` servers without persistence (see [`RedisServer::start_volatile`]).
    ///
    /// ```no_run
    /// let masters = redlock_runtime::test_util::Masters::start_volatile(3);
    /// masters[0].restart(); // empty now
    /// ```
    pub fn start_volatile(count: usize) -> Self {
        Self((0..count).map(|_| RedisServer::start_volatile()).collect())
    }

    /// Servers started by the caller (e.g. with extra arguments) as a set of masters.
    ///
    /// ```no_run
    /// use redlock_runtime::test_util::{Masters, RedisServer};
    ///
    /// let small = ["--maxmemory", "64mb"];
    /// let masters = Masters::from_servers((0..3).map(|_| RedisServer::start_with_args(&small)).collect());
    /// ```
    pub fn from_servers(servers: Vec<RedisServer>) -> Self {
        Self(servers)
    }

    /// One URL per server, in order.
    ///
    /// ```no_run
    /// let masters = redlock_runtime::test_util::Masters::start(3);
    /// let redlock = redlock_runtime::Redlock::new(masters.urls())?;
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn urls(&self) -> Vec<String> {
        self.0.iter().map(RedisServer::url).collect()
    }

    /// The servers.
    ///
    /// ```no_run
    /// let masters = redlock_runtime::test_util::Masters::start(3);
    /// assert_eq!(masters.servers().len(), 3);
    /// ```
    pub fn servers(&self) -> &[RedisServer] {
        &self.0
    }
}

/// A Redis Cluster of primaries without replicas, made with `redis-cli --cluster create`
/// (`$REDIS_CLI_BIN` if set, else `redis-cli` from `PATH`). Each node is a [`RedisServer`] that
/// can be killed, paused and restarted; a restarted node keeps its place in the cluster.
///
/// ```no_run
/// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
/// let redlock = redlock_runtime::Redlock::new([cluster.url()])?;
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Debug)]
pub struct RedisCluster(Vec<RedisServer>);

impl RedisCluster {
    /// Starts `primaries` nodes (at least 3, as Redis requires), joins them into one cluster
    /// that covers all slots, and waits until every node reports it healthy.
    ///
    /// # Panics
    /// If the cluster is not healthy within 30 s.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
    /// assert_eq!(cluster.nodes().len(), 3);
    /// ```
    pub fn start(primaries: usize) -> Self {
        Self::start_with_replicas(primaries, 0)
    }

    /// Like [`start`](Self::start), with `replicas` replicas per primary: a primary that
    /// dies is replaced by its replica about 2 s later (`cluster-node-timeout` 2000).
    ///
    /// # Panics
    /// If the cluster is not healthy within 30 s.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start_with_replicas(3, 1);
    /// assert_eq!(cluster.nodes().len(), 6);
    /// ```
    pub fn start_with_replicas(primaries: usize, replicas: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..primaries * (1 + replicas))
            .map(|_| {
                let node = ["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"];
                if server_version() < 7 {
                    // The bus port is always the port + 10000 (`--cluster-port` came with 7.0).
                    return RedisServer::start_with(&node, false, None, free_port_with_bus);
                }
                // The bus port is chosen too: the default (port + 10000) may not exist.
                let bus_port = free_port().to_string();
                let mut args = node.to_vec();
                args.extend(["--cluster-port", &bus_port]);
                RedisServer::start_with_args(&args)
            })
            .collect();
        let cli = std::env::var("REDIS_CLI_BIN").unwrap_or_else(|_| "redis-cli".into());
        let created = Command::new(&cli)
            .args(["--cluster", "create"])
            .args(
                nodes
                    .iter()
                    .map(|node| format!("127.0.0.1:{}", node.port())),
            )
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|err| panic!("cannot run `{cli}` ({err}): install redis-tools"));
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed:\n{}",
            String::from_utf8_lossy(&created.stdout)
        );
        let cluster = Self(nodes);
        cluster.wait_until_healthy();
        cluster
    }

    /// Waits until every running node reports `cluster_state:ok` (e.g. after a restart) and
    /// every running replica is in sync with its primary.
    ///
    /// # Panics
    /// If that takes more than 30 s.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
    /// cluster.nodes()[0].restart();
    /// cluster.wait_until_healthy();
    /// ```
    pub fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let healthy = |node: &RedisServer| {
            redis::Client::open(node.url())
                .and_then(|client| client.get_connection_with_timeout(Duration::from_secs(1)))
                .and_then(|mut connection| {
                    redis::cmd("CLUSTER")
                        .arg("INFO")
                        .query::<String>(&mut connection)
                })
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        };
        while !self
            .0
            .iter()
            .filter(|node| node.pid().is_some())
            .all(healthy)
        {
            assert!(
                Instant::now() < deadline,
                "the cluster is not healthy after 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        for node in self.0.iter().filter(|node| node.pid().is_some()) {
            node.wait_until_synced();
        }
    }

    /// `redis+cluster://127.0.0.1:<port>,...`: every node as a seed.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
    /// assert!(cluster.url().starts_with("redis+cluster://127.0.0.1:"));
    /// ```
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .0
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// The nodes, to kill, pause or restart one.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
    /// cluster.nodes()[1].pause();
    /// ```
    pub fn nodes(&self) -> &[RedisServer] {
        &self.0
    }

    /// A synchronous cluster connection through the running nodes, to arrange and inspect data.
    ///
    /// # Panics
    /// If the cluster cannot be reached.
    ///
    /// ```no_run
    /// let cluster = redlock_runtime::test_util::RedisCluster::start(3);
    /// let mut connection = cluster.connection();
    /// ```
    pub fn connection(&self) -> redis::cluster::ClusterConnection {
        // Running nodes only: a dead seed fails the synchronous client.
        let seeds: Vec<String> = self
            .0
            .iter()
            .filter(|node| node.pid().is_some())
            .map(RedisServer::url)
            .collect();
        redis::cluster::ClusterClient::new(seeds)
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|err| panic!("connect to the cluster: {err}"))
    }
}

impl Index<usize> for Masters {
    type Output = RedisServer;

    fn index(&self, index: usize) -> &RedisServer {
        &self.0[index]
    }
}
