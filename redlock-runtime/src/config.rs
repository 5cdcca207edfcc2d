//! The settings of a client: which masters, and the time bounds of every call.

use std::time::Duration;

use crate::{LockError, target::redact_url};

/// The URL used when neither `REDLOCK_URLS` nor `REDIS_URL` is set.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";

/// The default of [`Config::outage_timeout`]: how long a wait rides out an outage.
pub const DEFAULT_OUTAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Settings of a [`Redlock`](crate::Redlock) client. Plain data with documented defaults, in the
/// manner of `deadpool_redis::Config`.
///
/// ```
/// use std::time::Duration;
/// use redlock_runtime::{Config, Redlock};
///
/// let config = Config {
///     master_timeout: Duration::from_millis(50),
///     ..Config::new(["redis://db1:6379", "redis://db2:6379", "redis://db3:6379"])
/// };
/// let redlock = Redlock::with_config(config)?;
/// assert_eq!(redlock.quorum(), 2);
/// # Ok::<(), redlock_runtime::LockError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    /// One URL per independent master, each one vote of the quorum:
    ///
    /// - `redis://[user][:password@]host[:port][/db]`: one server (`rediss://` for TLS);
    /// - `redis+cluster://[user:password@]host:port[,host:port...]`: one Redis Cluster, by its
    ///   seed nodes (`rediss+cluster://` for TLS);
    /// - `redis+sentinel://[user:password@]host:port[,host:port...]/<service>[/db]`: the
    ///   master the sentinels name for `<service>`, followed through failovers; the user and
    ///   password are the master's (`rediss+sentinel://` for TLS).
    ///
    /// ```
    /// let redlock = redlock_runtime::Redlock::new([
    ///     "redis+cluster://10.0.0.1:7000,10.0.0.2:7000",
    ///     "redis+sentinel://10.0.1.1:26379,10.0.1.2:26379/locks",
    ///     "redis://10.0.2.1",
    /// ])?;
    /// assert_eq!(redlock.quorum(), 2);
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub urls: Vec<String>,
    /// Bound on one command to one master, connection wait included. Keep it small against
    /// the TTL: a master slower than this counts as failed for that attempt. Default 200 ms.
    pub master_timeout: Duration,
    /// Bound on establishing a connection; it continues in the background while calls give up
    /// after `master_timeout`. Default 1 s.
    pub connect_timeout: Duration,
    /// First pause of the exponential backoff while masters fail (jittered ±50%, doubled per
    /// failure), and of the watchdog's retries of a failed renewal. Waiting for a lock that is
    /// held does not poll: releases wake the waiters. Default 20 ms.
    pub retry_delay: Duration,
    /// Cap of the exponential backoff between attempts while masters are failing. Default 1 s.
    pub max_backoff: Duration,
    /// How long a wait goes on while no quorum of masters can be reached (down, unreachable,
    /// timing out), whatever its timeout: then it fails with
    /// [`LockError::Unavailable`](crate::LockError::Unavailable). Waiting forever
    /// (`timeout = 0`) is a promise about contention, not about outages. `None` retries for
    /// as long as the timeout allows (forever for `timeout = 0`). Failures that waiting cannot
    /// fix (a wrong password, an ACL, an unknown sentinel service or database, an untrusted
    /// certificate) fail at once. Default 30 s.
    ///
    /// ```
    /// let config = redlock_runtime::Config {
    ///     outage_timeout: None, // ride out any outage
    ///     ..redlock_runtime::Config::new(["redis://127.0.0.1:6379"])
    /// };
    /// ```
    pub outage_timeout: Option<Duration>,
    /// How long a master that restarted without persisting every write sits out new
    /// acquisitions: it came back without the locks it held, whose holders may still count on
    /// them (the Redlock spec's delayed restart). Masters with an append-only file and
    /// `appendfsync always` vote at once. Default [`RestartGrace::LockTtl`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use redlock_runtime::{Config, RestartGrace};
    ///
    /// let config = Config {
    ///     // Python workers take the same locks for up to a minute.
    ///     restart_grace: RestartGrace::AtLeast(Duration::from_secs(60)),
    ///     ..Config::new(["redis://db1", "redis://db2", "redis://db3"])
    /// };
    /// ```
    pub restart_grace: RestartGrace,
    /// How many replicas of a master must have a new lock before that master's vote counts:
    /// each granting master is asked `WAIT <replicas> <master_timeout / 2 ms>` on the same
    /// connection, after the `SET` (as Redisson's `syncSlaves`), and that call may take the
    /// `WAIT` plus 100 ms (Redis ends a `WAIT` in its cron, up to one `hz` tick late) beyond
    /// `master_timeout`. It narrows the window in
    /// which a failover to a replica that had not yet received the key loses the lock; a
    /// master whose replicas do not confirm in time counts as failed for that attempt (and
    /// its key is undone if the attempt fails). Renewals are not waited for: a replica may
    /// hold an older TTL. Costs one replication round trip per granting master and
    /// acquisition. Default 0 (off).
    ///
    /// ```
    /// let config = redlock_runtime::Config {
    ///     wait_for_replicas: 1, // Sentinel or Cluster masters with 2 replicas each
    ///     ..redlock_runtime::Config::new(["redis+sentinel://10.0.1.1:26379/locks"])
    /// };
    /// ```
    pub wait_for_replicas: u32,
}

/// How long a master that may have lost its keys in a restart does not vote for new
/// acquisitions (see [`Config::restart_grace`]). Renewals and releases are answered as usual.
///
/// While a majority of masters is inside its grace, a request that does not wait
/// (`Timeout::Skip`) fails with [`LockError::Unavailable`](crate::LockError::Unavailable),
/// naming those masters and how long each has left; a waiting request waits the grace out.
///
/// ```
/// use std::time::Duration;
/// use redlock_runtime::RestartGrace;
///
/// let ttl = Duration::from_secs(10);
/// assert_eq!(RestartGrace::LockTtl.for_ttl(ttl), Some(ttl));
/// assert_eq!(RestartGrace::AtLeast(Duration::from_secs(60)).for_ttl(ttl), Some(Duration::from_secs(60)));
/// assert_eq!(RestartGrace::Off.for_ttl(ttl), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RestartGrace {
    /// The lock's own `auto_release_time`: the longest validity a holder of it may still count
    /// on, when every holder of one lock uses the same TTL. The default.
    #[default]
    LockTtl,
    /// At least this long (and at least the lock's TTL): for fleets that take one lock with
    /// different TTLs, e.g. Python workers with a longer `auto_release_time`.
    AtLeast(Duration),
    /// A restarted master votes at once. Mutual exclusion then does not survive a majority of
    /// masters restarting empty within one TTL.
    Off,
}

impl RestartGrace {
    /// The grace for a lock whose TTL is `ttl`; `None` when off.
    ///
    /// ```
    /// use std::time::Duration;
    /// let grace = redlock_runtime::RestartGrace::AtLeast(Duration::from_secs(5));
    /// assert_eq!(grace.for_ttl(Duration::from_secs(30)), Some(Duration::from_secs(30)));
    /// ```
    pub fn for_ttl(self, ttl: Duration) -> Option<Duration> {
        match self {
            Self::LockTtl => Some(ttl),
            Self::AtLeast(grace) => Some(grace.max(ttl)),
            Self::Off => None,
        }
    }
}

impl Config {
    /// Default settings for these masters.
    ///
    /// ```
    /// let config = redlock_runtime::Config::new(["redis://127.0.0.1:6379"]);
    /// assert_eq!(config.master_timeout, std::time::Duration::from_millis(200));
    /// ```
    pub fn new(urls: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        Self {
            urls: urls
                .into_iter()
                .map(|url| url.as_ref().to_owned())
                .collect(),
            master_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_secs(1),
            retry_delay: Duration::from_millis(20),
            max_backoff: Duration::from_secs(1),
            outage_timeout: Some(DEFAULT_OUTAGE_TIMEOUT),
            restart_grace: RestartGrace::LockTtl,
            wait_for_replicas: 0,
        }
    }

    /// The settings named by the environment: the masters from `REDLOCK_URLS`
    /// (comma-separated), else `REDIS_URL`, else [`DEFAULT_URL`]; and, when set,
    /// `REDLOCK_RESTART_GRACE` (`off`, `ttl` or seconds: [`RestartGrace`]),
    /// `REDLOCK_OUTAGE_TIMEOUT` (seconds, or `none` to ride out any outage) and
    /// `REDLOCK_MASTER_TIMEOUT` (seconds). A value that does not read is
    /// [`LockError::InvalidEnvironment`], naming the variable.
    ///
    /// ```
    /// let config = redlock_runtime::Config::from_env()?;
    /// assert!(!config.urls.is_empty());
    /// # Ok::<(), redlock_runtime::LockError>(())
    /// ```
    pub fn from_env() -> Result<Self, LockError> {
        Ok(Self::from_env_with_source()?.0)
    }

    /// [`from_env`](Self::from_env), and the variable the URLs came from.
    pub(crate) fn from_env_with_source() -> Result<(Self, &'static str), LockError> {
        let from = |name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        };
        let (urls, source) = match (from("REDLOCK_URLS"), from("REDIS_URL")) {
            (Some(list), _) => (
                list.split(',').map(|url| url.trim().to_owned()).collect(),
                "REDLOCK_URLS",
            ),
            (None, Some(url)) => (vec![url.trim().to_owned()], "REDIS_URL"),
            (None, None) => (vec![DEFAULT_URL.to_owned()], "the default URL"),
        };
        let mut config = Self {
            urls,
            ..Self::default()
        };
        let setting = |variable: &'static str, expected: &'static str| {
            move |value: &str| LockError::InvalidEnvironment {
                variable,
                value: value.to_owned(),
                expected,
            }
        };
        if let Some(value) = from("REDLOCK_RESTART_GRACE") {
            let invalid = setting(
                "REDLOCK_RESTART_GRACE",
                "`off`, `ttl` or a number of seconds",
            );
            config.restart_grace = match value.trim() {
                "off" => RestartGrace::Off,
                "ttl" => RestartGrace::LockTtl,
                seconds => {
                    RestartGrace::AtLeast(seconds_of(seconds).ok_or_else(|| invalid(&value))?)
                }
            };
        }
        if let Some(value) = from("REDLOCK_OUTAGE_TIMEOUT") {
            let invalid = setting("REDLOCK_OUTAGE_TIMEOUT", "a number of seconds, or `none`");
            config.outage_timeout = match value.trim() {
                "none" => None,
                seconds => Some(seconds_of(seconds).ok_or_else(|| invalid(&value))?),
            };
        }
        if let Some(value) = from("REDLOCK_MASTER_TIMEOUT") {
            let invalid = setting("REDLOCK_MASTER_TIMEOUT", "a positive number of seconds");
            config.master_timeout = seconds_of(value.trim())
                .filter(|timeout| !timeout.is_zero())
                .ok_or_else(|| invalid(&value))?;
        }
        Ok((config, source))
    }
}

/// A number of seconds (`2`, `0.5`), if `text` is one that a `Duration` holds.
fn seconds_of(text: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(text.parse().ok()?).ok()
}

impl std::fmt::Debug for Config {
    /// Shows the URLs with their passwords redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self.urls.iter().map(|url| redact_url(url)).collect();
        f.debug_struct("Config")
            .field("urls", &urls)
            .field("master_timeout", &self.master_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("retry_delay", &self.retry_delay)
            .field("max_backoff", &self.max_backoff)
            .field("outage_timeout", &self.outage_timeout)
            .field("restart_grace", &self.restart_grace)
            .field("wait_for_replicas", &self.wait_for_replicas)
            .finish()
    }
}

impl Default for Config {
    /// One master at [`DEFAULT_URL`].
    fn default() -> Self {
        Self::new([DEFAULT_URL])
    }
}
