//! One `redis-server` process: started on a free loopback port in its own directory, killed,
//! paused, restarted, and reaped on drop.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// What makes a server durable: every write is on disk before it is acknowledged.
const DURABLE: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];

/// What makes a server volatile (after [`DURABLE`]: the last setting wins).
const VOLATILE: [&str; 2] = ["--appendonly", "no"];

/// One `redis-server` process started for a test.
///
/// ```no_run
/// let server = redlock_runtime::test_util::RedisServer::start();
/// let mut connection = server.connection();
/// let pong: String = redis::cmd("PING").query(&mut connection).unwrap();
/// ```
#[derive(Debug)]
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    extra_args: Vec<String>,
    /// Serves TLS only (`rediss://`), with a certificate of a throwaway CA.
    tls: bool,
    /// Runs as a sentinel, from the `sentinel.conf` in its directory.
    sentinel: bool,
    /// Behind a lock so that a shared server (`Arc<Masters>`) can be killed and restarted
    /// from a fault-injection thread.
    child: Mutex<Option<Child>>,
}

impl RedisServer {
    /// Starts a durable server (see the module) on a free loopback port.
    ///
    /// # Panics
    /// If the server does not answer within 10 s; the panic message carries its log.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// println!("{}", server.url());
    /// ```
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Starts a server without persistence: a restart empties it, and clients keep it out of
    /// new acquisitions for their restart grace, also right after it starts.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start_volatile();
    /// server.restart(); // empty now
    /// ```
    pub fn start_volatile() -> Self {
        Self::start_with_args(&VOLATILE)
    }

    /// Starts a durable server with extra `redis-server` arguments, which come last.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start_with_args(&["--requirepass", "s3cret"]);
    /// ```
    pub fn start_with_args(args: &[&str]) -> Self {
        Self::start_with(args, false, None, free_port)
    }

    /// Starts a server that speaks TLS only, with a certificate (for `127.0.0.1` and
    /// `localhost`) signed by a throwaway CA made with `openssl`; trust [`tls_ca`](Self::tls_ca)
    /// (e.g. `SSL_CERT_FILE`) to connect.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start_tls();
    /// assert!(server.url().starts_with("rediss://"));
    /// ```
    pub fn start_tls() -> Self {
        Self::start_with(&[], true, None, free_port)
    }

    /// Starts a sentinel that monitors `master` as `service` (quorum 1, down after 1 s), so that
    /// it alone can fail the master over to a replica. Its URL is a plain `redis://` one; a
    /// client names it as `redis+sentinel://127.0.0.1:<port>/<service>`.
    ///
    /// ```no_run
    /// use redlock_runtime::test_util::RedisServer;
    ///
    /// let master = RedisServer::start();
    /// let sentinel = RedisServer::start_sentinel(&master, "jobs");
    /// let url = format!("redis+sentinel://127.0.0.1:{}/jobs", sentinel.port());
    /// ```
    pub fn start_sentinel(master: &RedisServer, service: &str) -> Self {
        let config = format!(
            "sentinel monitor {service} 127.0.0.1 {port} 1\n\
             sentinel down-after-milliseconds {service} 1000\n\
             sentinel failover-timeout {service} 5000\n",
            port = master.port
        );
        Self::start_with(&[], false, Some(&config), free_port)
    }

    /// The CA certificate of a [`start_tls`](Self::start_tls) server.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start_tls();
    /// assert!(server.tls_ca().exists());
    /// ```
    pub fn tls_ca(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// `port`: picks a free port to try.
    pub(super) fn start_with(
        args: &[&str],
        tls: bool,
        sentinel_config: Option<&str>,
        port: fn() -> u16,
    ) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let shm = std::path::Path::new("/dev/shm");
        let base = if shm.is_dir() {
            shm.to_owned()
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "redlock-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create the redis-server directory");
        let mut server = Self {
            port: 0,
            dir,
            extra_args: args.iter().map(|arg| (*arg).to_owned()).collect(),
            tls,
            sentinel: sentinel_config.is_some(),
            child: Mutex::new(None),
        };
        if tls {
            super::tls::make_certificates(&server.dir);
        }
        if let Some(config) = sentinel_config {
            std::fs::write(server.dir.join("sentinel.conf"), config).expect("write sentinel.conf");
        }
        // A free port can be taken by someone else before redis-server binds it: try again.
        for _ in 0..5 {
            server.port = port();
            if server.spawn_and_wait() {
                return server;
            }
        }
        panic!("redis-server did not start; its log:\n{}", server.log());
    }

    /// `redis://127.0.0.1:<port>`.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// assert!(server.url().starts_with("redis://127.0.0.1:"));
    /// ```
    pub fn url(&self) -> String {
        let scheme = if self.tls { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// assert_ne!(server.port(), 6379);
    /// ```
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process id, while the server runs.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// assert!(server.pid().is_some());
    /// ```
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        crate::rt::lock(&self.child)
    }

    /// A plain synchronous connection, to arrange and inspect data.
    ///
    /// # Panics
    /// If the server cannot be reached.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// let mut connection = server.connection();
    /// ```
    pub fn connection(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.url()))
    }

    /// For a replica: waits until its link to the master is up (the initial sync done), so a
    /// key written on the master from then on reaches it within a replication round trip. A
    /// master returns at once.
    ///
    /// # Panics
    /// If the link is not up within 30 s.
    ///
    /// ```no_run
    /// use redlock_runtime::test_util::RedisServer;
    ///
    /// let master = RedisServer::start();
    /// let replica =
    ///     RedisServer::start_with_args(&["--replicaof", "127.0.0.1", &master.port().to_string()]);
    /// replica.wait_until_synced();
    /// ```
    pub fn wait_until_synced(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query(&mut self.connection())
                .unwrap_or_default();
            if info.contains("role:master") || info.contains("master_link_status:up") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the replica {} is not in sync after 30 s:\n{info}",
                self.url()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL and reaps it; a volatile server's data is gone.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// server.kill();
    /// ```
    pub fn kill(&self) {
        if let Some(mut child) = self.child().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server with SIGSTOP: connections stay open, nothing is answered.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// server.pause();
    /// server.resume();
    /// ```
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// Resumes a paused server with SIGCONT.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// server.pause();
    /// server.resume();
    /// ```
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// Starts the server again on the same port with the same arguments (after [`kill`](Self::kill)).
    ///
    /// # Panics
    /// If it does not come back within 10 s.
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start();
    /// server.kill();
    /// server.restart();
    /// ```
    pub fn restart(&self) {
        self.kill();
        if !self.spawn_and_wait() {
            panic!("redis-server did not restart; its log:\n{}", self.log());
        }
    }

    /// Kills the server and starts it again on the same port and data, returning as soon as
    /// it answers `LOADING` (still reading its data: give it a slow load, e.g.
    /// `--key-load-delay`, and enough keys). Use [`wait_until_loaded`](Self::wait_until_loaded)
    /// to wait for the rest.
    ///
    /// # Panics
    /// If it does not answer `LOADING` within 10 s (it loaded too fast, or did not start).
    ///
    /// ```no_run
    /// let server = redlock_runtime::test_util::RedisServer::start_with_args(&["--key-load-delay", "750"]);
    /// // ... write a few thousand keys and rewrite the append-only file ...
    /// server.restart_loading();
    /// server.wait_until_loaded();
    /// ```
    pub fn restart_loading(&self) {
        self.kill();
        self.spawn();
        let loading = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            matches!(self.ping(), Err(err) if err.code() == Some("LOADING"))
        });
        assert!(
            loading,
            "redis-server never answered LOADING; its log:\n{}",
            self.log()
        );
    }

    /// Waits until a restarted server has loaded its data and answers.
    ///
    /// # Panics
    /// If it does not within 30 s.
    ///
    /// ```no_run
    /// # let server = redlock_runtime::test_util::RedisServer::start();
    /// server.restart_loading();
    /// server.wait_until_loaded();
    /// ```
    pub fn wait_until_loaded(&self) {
        assert!(
            self.wait_until_answers(Duration::from_secs(30)),
            "redis-server exited while loading; its log:\n{}",
            self.log()
        );
    }

    fn ping(&self) -> redis::RedisResult<String> {
        redis::Client::open(self.url())
            .and_then(|client| client.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut connection| redis::cmd("PING").query::<String>(&mut connection))
    }

    fn signal(&self, signal: &str) {
        let pid = self.pid().expect("the server is not running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(pid.to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid} failed");
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|err| format!("(no log: {err})"))
    }

    /// Spawns the process and waits until it answers; false if it exited first.
    fn spawn_and_wait(&self) -> bool {
        self.spawn();
        self.wait_until_answers(Duration::from_secs(10))
    }

    /// Spawns the process.
    fn spawn(&self) {
        // A fresh log per start: readiness of a TLS server is read from it.
        let _ = std::fs::remove_file(self.log_path());
        let binary = binary();
        let child = self.command(&binary).spawn().unwrap_or_else(|err| {
            panic!("cannot run `{binary}` ({err}): install redis-server or set REDIS_SERVER_BIN")
        });
        *self.child() = Some(child);
    }

    /// The `redis-server` command line of this server.
    fn command(&self, binary: &str) -> Command {
        let port = self.port.to_string();
        let listen = if self.tls {
            super::tls::listen_args(&port)
        } else {
            vec!["--port", &port]
        };
        let mode: &[&str] = if self.sentinel {
            // The configuration file must come first; the sentinel rewrites it as it learns.
            &["sentinel.conf", "--sentinel"]
        } else {
            &[]
        };
        // Only a data server (not a sentinel) is durable and has replicas.
        let (durability, replication): (&[&str], &[&str]) = if self.sentinel {
            (&[], &[])
        } else {
            (&DURABLE, &["--repl-diskless-sync-delay", "0"])
        };
        let mut command = Command::new(binary);
        command
            .current_dir(&self.dir)
            .args(mode)
            .args(&listen)
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--daemonize", "no"])
            .args(durability)
            // A master waits 5 s by default before it syncs a new replica (to batch replicas):
            // replicas of the test harness sync at once.
            .args(replication)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        command
    }

    /// Waits until the spawned server answers (true) or exits (false).
    ///
    /// # Panics
    /// If it does neither `within`; the message carries its log.
    fn wait_until_answers(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let exited = self.child().as_mut().map(Child::try_wait);
            if let Some(Ok(Some(_exited))) = exited {
                *self.child() = None;
                return false;
            }
            if self.answers() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server did not answer within {within:?}; its log:\n{}",
            self.log()
        );
    }

    /// Whether the server answers now. Any answer, `NOAUTH` included, means it is up, except
    /// `LOADING`: a restarted server still reading its append-only file is not serving yet
    /// (and may not report its persistence yet). The harness's own client does not speak TLS,
    /// so a TLS server's log is trusted instead.
    fn answers(&self) -> bool {
        if self.tls {
            return self.log().contains("Ready to accept connections");
        }
        self.ping().map_or_else(
            |err| !err.is_io_error() && err.code() != Some("LOADING"),
            |_| true,
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SIGKILL also ends a paused (SIGSTOPped) server.
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The masters named by `REDLOCK_URLS` / `REDIS_URL` (see [`crate::Config::from_env`]), or
/// else one private server started here, kept running while the returned server lives: what
/// the examples run against on a fresh machine.
///
/// # Errors
/// A one-line message when neither is set and no `redis-server` can be run.
///
/// ```no_run
/// let (urls, _private_server) = redlock_runtime::test_util::env_or_private_server()?;
/// let redlock = redlock_runtime::Redlock::new(urls)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn env_or_private_server() -> Result<(Vec<String>, Option<RedisServer>), String> {
    let named = ["REDLOCK_URLS", "REDIS_URL"]
        .iter()
        .any(|name| std::env::var_os(name).is_some());
    if named {
        let config = crate::Config::from_env().map_err(|error| error.to_string())?;
        return Ok((config.urls, None));
    }
    let binary = binary();
    if let Err(err) = Command::new(&binary).arg("--version").output() {
        return Err(format!(
            "cannot run `{binary}` ({err}): install Redis (Debian/Ubuntu: `apt-get install \
             redis-server`, macOS: `brew install redis`), or set REDIS_URL or REDLOCK_URLS to \
             masters you run"
        ));
    }
    let server = RedisServer::start();
    Ok((vec![server.url()], Some(server)))
}

/// The server binary: `$REDIS_SERVER_BIN`, else `redis-server` from `PATH`.
fn binary() -> String {
    std::env::var("REDIS_SERVER_BIN").unwrap_or_else(|_| "redis-server".into())
}

/// The major version of the `redis-server` (or `valkey-server`) binary the harness runs.
pub(super) fn server_version() -> u32 {
    static VERSION: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let binary = binary();
        let output = Command::new(&binary)
            .arg("--version")
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        // "Redis server v=7.0.15 sha=…", "Valkey server v=8.1.8 sha=…".
        output
            .split_whitespace()
            .find_map(|word| word.strip_prefix("v="))
            .and_then(|version| version.split('.').next()?.parse().ok())
            .unwrap_or(7)
    })
}

/// A free port whose cluster bus port (+ 10000) is free too, for servers before 7.0.
pub(super) fn free_port_with_bus() -> u16 {
    loop {
        let port = 20_000 + fastrand_port();
        let both = TcpListener::bind(("127.0.0.1", port))
            .and_then(|_first| TcpListener::bind(("127.0.0.1", port + 10_000)));
        if both.is_ok() {
            return port;
        }
    }
}

/// A pseudo-random offset below 25,000, different per call.
fn fastrand_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.subsec_nanos() as usize)
        .unwrap_or_default();
    ((seed / 1_000 + NEXT.fetch_add(7_919, Ordering::Relaxed)) % 25_000) as u16
}

pub(super) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free loopback port")
}
