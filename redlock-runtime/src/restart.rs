//! What a connection learns of its master's last restart: the Redlock spec's delayed restart,
//! enforced by the client.
//!
//! A master that restarts without persisting every write comes back without the locks it held,
//! while their holders go on. Once a majority did, a quorum could grant a lock that is still
//! held. So a master that started less than a grace ago (the longest validity a holder may
//! still count on: see [`RestartGrace`]) does not vote for new acquisitions; it still answers
//! renewals and releases. Each connection reads `INFO server` (uptime) and
//! `INFO persistence` / `CONFIG GET appendfsync` once, when it is made (a restart breaks every
//! connection), so the rule costs nothing per lock.
//!
//! [`RestartGrace`]: crate::RestartGrace

use std::time::{Duration, Instant};

use redis::{ErrorKind, RedisError, ServerErrorKind, Value, aio::ConnectionLike};

/// The last start of a master that may have lost its keys then.
#[derive(Debug, Clone)]
pub(crate) struct Restart {
    /// The latest instant the master can have started at.
    pub(crate) at: Instant,
    /// Why it may have lost its keys, for the error that names it.
    pub(crate) why: String,
}

impl Restart {
    /// What the restart means for new locks, with `left` of the grace to go: durations as
    /// precise as they are known (Redis counts its uptime in whole seconds).
    pub(crate) fn sits_out(&self, left: Duration) -> String {
        format!(
            "restarted about {}s ago and may have lost its locks then ({}): no vote for a new \
             lock for {:.1}s more (Config::restart_grace)",
            self.at.elapsed().as_secs(),
            self.why,
            left.as_secs_f64()
        )
    }

    /// Whether `other` is the same start, as learned by another connection (each reads the
    /// uptime in whole seconds, so the two may differ by up to a second).
    pub(crate) fn same_start(&self, other: &Restart) -> bool {
        let (early, late) = if self.at <= other.at {
            (self.at, other.at)
        } else {
            (other.at, self.at)
        };
        late.duration_since(early) <= Duration::from_secs(2)
    }

    /// How much of a `grace` after this restart is left at `now`.
    pub(crate) fn grace_left(&self, grace: Duration, now: Instant) -> Option<Duration> {
        match self.at.checked_add(grace) {
            Some(end) => end
                .checked_duration_since(now)
                .filter(|left| !left.is_zero()),
            // A grace too long for the clock (`RestartGrace::AtLeast(Duration::MAX)`) never ends.
            None => Some(grace.saturating_sub(now.saturating_duration_since(self.at))),
        }
    }
}

/// What a new connection learns of its master.
#[derive(Debug)]
pub(crate) struct Learned {
    /// `None` for a master that keeps every write across restarts.
    pub(crate) restart: Option<Restart>,
    /// The `run_id` of each server behind the connection (one, or each primary of a cluster;
    /// none when `INFO` is forbidden): two URLs of one server must not cast two votes.
    pub(crate) run_ids: Vec<String>,
}

/// Reads the master's uptime, identity and persistence on a new connection: no restart for a
/// master that keeps every write across restarts (AOF with `appendfsync always`, on every
/// primary of a cluster). A master that does not let us read `INFO` counts as started when we
/// connected (the safe side), and the reason says so. Other errors fail the connection.
pub(crate) async fn learn(connection: &mut impl ConnectionLike) -> Result<Learned, RedisError> {
    let connected = Instant::now();
    let server = match read(connection, redis::cmd("INFO").arg("server")).await? {
        Ok(server) => server,
        Err(err) => {
            let why = format!(
                "its uptime cannot be read ({err}), so it counts as restarted when we connected"
            );
            return Ok(Learned {
                restart: Some(Restart { at: connected, why }),
                run_ids: Vec::new(),
            });
        }
    };
    let run_ids = server
        .iter()
        .filter_map(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("run_id:"))
                .map(|id| id.trim().to_owned())
        })
        .collect();
    // The start is taken as late as it can be (in a cluster, the latest start of its
    // primaries). Redis subtracts two clock readings in whole seconds, so the true uptime may
    // be almost a second shorter than it says.
    let uptime = field(&server, "uptime_in_seconds").min().unwrap_or(0);
    let at = Instant::now()
        .checked_sub(Duration::from_secs(uptime.saturating_sub(1)))
        .unwrap_or(connected);
    let restart = durable(connection)
        .await?
        .err()
        .map(|why| Restart { at, why });
    Ok(Learned { restart, run_ids })
}

/// Whether every write survives a restart (`Ok`), else why it may not.
async fn durable(connection: &mut impl ConnectionLike) -> Result<Result<(), String>, RedisError> {
    let persistence = match read(connection, redis::cmd("INFO").arg("persistence")).await? {
        Ok(persistence) => persistence,
        Err(err) => return Ok(Err(format!("its persistence cannot be read ({err})"))),
    };
    // While it loads its data a server may report no append-only file yet (`aof_enabled:0`
    // next to `loading:1`): the connection fails as the commands would (`LOADING`, an
    // outage), and the next one reads the settings the server runs with.
    if field(&persistence, "loading").any(|loading| loading != 0) {
        return Err(RedisError::from((
            ErrorKind::Server(ServerErrorKind::BusyLoading),
            "LOADING",
            "the master is loading its data set after a start".to_owned(),
        )));
    }
    let aof: Vec<u64> = field(&persistence, "aof_enabled").collect();
    if aof.is_empty() || aof.contains(&0) {
        return Ok(Err("it has no append-only file".into()));
    }
    let fsync = match read(
        connection,
        redis::cmd("CONFIG").arg("GET").arg("appendfsync"),
    )
    .await?
    {
        Ok(fsync) => fsync,
        Err(err) => return Ok(Err(format!("its appendfsync cannot be read ({err})"))),
    };
    // `["appendfsync", "always"]`, once per primary in a cluster.
    let values: Vec<&str> = fsync
        .iter()
        .map(String::as_str)
        .filter(|text| *text != "appendfsync")
        .collect();
    if values.is_empty() || values.iter().any(|value| *value != "always") {
        return Ok(Err(format!(
            "appendfsync is `{}`, not `always`",
            values.join("`, `")
        )));
    }
    Ok(Ok(()))
}

/// The texts of `command`'s reply; the inner error when we may not run it (see [`forbidden`]).
async fn read(
    connection: &mut impl ConnectionLike,
    command: &redis::Cmd,
) -> Result<Result<Vec<String>, RedisError>, RedisError> {
    match texts(command.query_async(connection).await) {
        Ok(texts) => Ok(Ok(texts)),
        Err(err) if forbidden(&err) => Ok(Err(err)),
        Err(err) => Err(err),
    }
}

/// An error that says we may not run the command (an ACL), or that the server does not have it.
/// Managed services word the latter in their own ways under the generic `ERR` code ("unknown
/// command", "Command is not available", "… disabled"), so every `ERR` to these two reads
/// counts: they change nothing, and no `ERR` of theirs heals by retrying.
fn forbidden(err: &RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoPerm)
        || matches!(err.code(), Some("NOPERM" | "ERR"))
}

/// The texts of a reply: one for a server, one per node for a cluster (a map of replies).
fn texts(reply: Result<Value, RedisError>) -> Result<Vec<String>, RedisError> {
    fn collect(value: Value, into: &mut Vec<String>) {
        match value {
            Value::BulkString(bytes) => into.push(String::from_utf8_lossy(&bytes).into_owned()),
            Value::SimpleString(text) => into.push(text),
            Value::VerbatimString { text, .. } => into.push(text),
            Value::Array(values) | Value::Set(values) => {
                values.into_iter().for_each(|value| collect(value, into));
            }
            // A cluster's replies by node: only the replies matter.
            Value::Map(pairs) => pairs
                .into_iter()
                .for_each(|(_, value)| collect(value, into)),
            _ => {}
        }
    }
    let mut texts = Vec::new();
    collect(reply?, &mut texts);
    Ok(texts)
}

/// The numeric values of `name:value` lines in INFO texts, one per text that has it.
fn field<'a>(texts: &'a [String], name: &'a str) -> impl Iterator<Item = u64> + 'a {
    texts.iter().filter_map(move |text| {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use redis::Value;

    use super::{Restart, field, texts};

    #[test]
    fn a_cluster_reply_gives_one_text_per_node_and_fields_are_read_from_each() {
        let node = |uptime: u64| {
            Value::BulkString(format!("# Server\r\nuptime_in_seconds:{uptime}\r\n").into_bytes())
        };
        let reply = Value::Map(vec![
            (Value::SimpleString("a:7000".into()), node(40)),
            (Value::SimpleString("b:7001".into()), node(3)),
        ]);
        let texts = texts(Ok(reply)).unwrap();
        assert_eq!(
            field(&texts, "uptime_in_seconds").collect::<Vec<_>>(),
            [40, 3]
        );
        assert_eq!(
            field(&texts, "uptime").count(),
            0,
            "a field is matched by its whole name"
        );
    }

    #[test]
    fn the_grace_runs_from_the_restart() {
        let now = Instant::now();
        let restart = Restart {
            at: now,
            why: String::new(),
        };
        assert_eq!(
            restart.grace_left(Duration::from_secs(3), now),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            restart.grace_left(Duration::from_secs(3), now + Duration::from_secs(3)),
            None
        );
        assert_eq!(restart.grace_left(Duration::ZERO, now), None);
    }
}
