//! Why a master failed: connection failures and call errors, sorted into what waiting heals
//! (an outage, a refusal for now) and what it cannot (a misconfiguration, a data error).

use std::time::Duration;

use redis::{ErrorKind, RedisError, ServerErrorKind};

use crate::restart::Restart;

/// Why a connection could not be made.
#[derive(Debug, Clone)]
pub(crate) struct ConnectFailure {
    pub(super) reason: String,
    /// Waiting cannot fix it (see [`cannot_heal`]).
    pub(super) misconfigured: bool,
    /// The client's error, if it reported one.
    pub(super) cause: Option<RedisError>,
}

impl ConnectFailure {
    /// A failure that may heal: the master down, unreachable or slow.
    pub(super) fn transient(reason: String) -> Self {
        Self {
            reason,
            misconfigured: false,
            cause: None,
        }
    }

    /// The failure that `err` tells of; `misconfigured` as [`cannot_heal`] says, unless the
    /// caller knows better.
    pub(super) fn of(err: RedisError, misconfigured: bool) -> Self {
        Self {
            reason: err.to_string(),
            misconfigured,
            cause: Some(err),
        }
    }
}

/// Whether an error comes from the configuration or the data rather than from the master's
/// state, so that retrying cannot fix it: a wrong password or user, an ACL that forbids our
/// commands, a service the sentinels do not know, a database index the server does not have,
/// a certificate the client does not trust; a key of the lock that someone else wrote with
/// another type (`WRONGTYPE`), or a script that fails on what it reads.
pub(super) fn cannot_heal(err: &RedisError) -> bool {
    // A master that answers but refuses writes for now (a failover, too few replicas, full
    // memory, loading its data) is an outage, even from inside a script.
    if refusal_hint(err).is_some() {
        return false;
    }
    matches!(
        err.kind(),
        ErrorKind::AuthenticationFailed
            | ErrorKind::InvalidClientConfig
            | ErrorKind::MasterNameNotFoundBySentinel
            | ErrorKind::Server(ServerErrorKind::NoPerm)
    ) || matches!(err.code(), Some("WRONGPASS" | "NOAUTH" | "NOPERM" | "WRONGTYPE"))
        || (err.code() == Some("ERR") && err.detail().is_some_and(config_or_script_error))
        // rustls' words: no code or kind of the client's tells an untrusted certificate.
        || (err.kind() == ErrorKind::Io && err.to_string().contains("invalid peer certificate"))
}

/// Whether the text of an `ERR` reply tells of a database index the server does not have, or
/// of a Lua runtime error (Redis 7 names the line, `user_script:12:`; 6.2 says "Error running
/// script"): the generic `ERR` code is all the server gives for either.
fn config_or_script_error(detail: &str) -> bool {
    [
        "DB index is out of range",
        "user_script:",
        "Error running script",
    ]
    .iter()
    .any(|start| detail.starts_with(start))
}

/// Why a master that answered refuses writes for now, if it does: the advice that goes with
/// the server's own words.
pub(super) fn refusal_hint(err: &RedisError) -> Option<&'static str> {
    refusal(err).map(|(_, hint, _)| hint)
}

/// Whether a replica refused the write (`READONLY`, also from inside a script).
pub(super) fn read_only(err: &RedisError) -> bool {
    refusal(err).is_some_and(|(code, _, _)| code == "READONLY")
}

/// The refusal of a master that answered (see [`refusal_hint`]): its code, the advice, and
/// the server's words. Redis 7 keeps the code of a command refused inside a script; 6.2
/// reports it inside an `ERR Error running script … -NOREPLICAS …`.
fn refusal(err: &RedisError) -> Option<(&'static str, &'static str, String)> {
    const REFUSALS: [(&str, &str); 8] = [
        (
            "NOREPLICAS",
            "fewer replicas in sync than its min-replicas-to-write; with 1 replica per master \
             every failover does this: give masters 2 replicas, or lower the setting",
        ),
        (
            "READONLY",
            "a replica now (a failover demoted it); reconnecting to the new master",
        ),
        ("OOM", "out of memory (maxmemory with noeviction)"),
        ("MASTERDOWN", "a replica cut off from its master"),
        ("LOADING", "still loading its data after a start"),
        ("BUSY", "busy running a long script"),
        ("CLUSTERDOWN", "its cluster is reconfiguring"),
        ("TRYAGAIN", "its cluster is reconfiguring"),
    ];
    let text = err.to_string();
    REFUSALS.into_iter().find_map(|(code, hint)| {
        let words = if err.code() == Some(code) {
            err.detail().unwrap_or_default().to_owned()
        } else {
            let (_, after) = text.split_once(&format!("-{code} "))?;
            after.to_owned()
        };
        // Up to the script's name, which says nothing to a user.
        let words = words.split(" script: ").next().unwrap_or_default().trim();
        Some((code, hint, words.to_owned()))
    })
}

/// Why one call to a master failed.
#[derive(Debug)]
pub(crate) enum CallError {
    /// No connection could be established; the command was never sent.
    NotConnected(ConnectFailure),
    /// No answer within the per-master timeout; the command may still be applied.
    TimedOut(Duration),
    /// The client or the server reported an error.
    Redis(RedisError),
    /// The master restarted, may have lost its keys then, and does not vote for a new hold
    /// for `left` more (see `Config::restart_grace`); the command was not sent.
    InGrace { restart: Restart, left: Duration },
}

impl CallError {
    /// Whether the command may have reached the master (so its effect may need undoing).
    pub(crate) fn maybe_applied(&self) -> bool {
        !matches!(self, Self::NotConnected(_) | Self::InGrace { .. })
    }

    /// Whether waiting cannot fix it (see [`cannot_heal`]).
    pub(crate) fn misconfigured(&self) -> bool {
        match self {
            Self::NotConnected(failure) => failure.misconfigured,
            Self::TimedOut(_) | Self::InGrace { .. } => false,
            Self::Redis(err) => cannot_heal(err),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotConnected(failure) => write!(f, "cannot connect: {}", failure.reason),
            Self::TimedOut(limit) => write!(f, "no reply within {limit:?}"),
            Self::Redis(err) => match refusal(err) {
                Some((code, hint, words)) => {
                    write!(f, "answered but refused: {code} {words} ({hint})")
                }
                None => write!(f, "{err}"),
            },
            Self::InGrace { restart, left } => f.write_str(&restart.sits_out(*left)),
        }
    }
}
