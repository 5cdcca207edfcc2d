//! The Lua scripts, each created once per process.

use std::{sync::LazyLock, time::Duration};

use redis::{
    Arg, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, Script, ServerErrorKind,
    ToRedisArgs,
};

use crate::{
    keys::{Counter, FOREIGN_WINDOW, GRANT, LockKeys},
    master::Handle,
};

/// A Lua script: its code, and its SHA1 digest for `EVALSHA`.
pub(crate) struct Lua {
    script: Script,
    code: &'static str,
}

impl Lua {
    fn new(code: &'static str) -> Self {
        Self {
            script: Script::new(code),
            code,
        }
    }
}

/// A script that reads the queue of waiters, with the queue helpers prepended.
macro_rules! queue_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Lua::new(concat!(
                include_str!("scripts/queue.lua"),
                include_str!($file)
            ))
        })
    };
}

/// The queued attempt of a waiter; reports the holder's remaining TTL and the waiter's rank.
pub(crate) static ACQUIRE: LazyLock<Lua> = queue_script!("scripts/acquire.lua");

/// A waiter that gives up leaves the queue and passes on a grant made to it.
pub(crate) static LEAVE_QUEUE: LazyLock<Lua> = queue_script!("scripts/leave_queue.lua");

/// Compare-and-delete: releases the lock only if it still holds our value, grants it to the
/// first waiter (or leaves it to foreign waiters for a window) and wakes the waiters.
pub(crate) static RELEASE: LazyLock<Lua> = queue_script!("scripts/release.lua");

/// The release of our hold (see [`RELEASE`]). `counter` is the waiting counter in which
/// foreign waiters of the lock count themselves, when it may be read with the lock's keys
/// (not in Redis Cluster): they then get their turns. A non-zero `keep` leaves the key held
/// for that long instead (`LockRequest::min_hold`).
pub(crate) fn release(
    keys: &LockKeys,
    value: &str,
    counter: Option<Counter<'_>>,
    keep: Duration,
) -> ScriptCall {
    let mut call = ScriptCall::new(&RELEASE, if counter.is_some() { 6 } else { 4 })
        .arg(&*keys.lock)
        .arg(keys.queue())
        .arg(keys.expiries())
        .arg(keys.foreign());
    if let Some(counter) = counter {
        call = call.arg(counter).arg(counter.companion("ours"));
    }
    call.arg(value)
        .arg(keys.channel())
        .arg(GRANT.as_millis() as u64)
        .arg(FOREIGN_WINDOW.as_millis() as u64)
        .arg(u64::try_from(keep.as_millis()).unwrap_or(u64::MAX))
}

/// Compare-and-extend: resets the TTL only if the lock still holds our value.
pub(crate) static EXTEND: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("scripts/extend.lua")));

/// Waiting statistics: count a waiter in or out, keep it alive, repair the dead, read.
pub(crate) static STATS: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("scripts/stats.lua")));

/// Fencing tokens: the next value of the lock's counter, or raise the counter to a token.
pub(crate) static FENCE: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("scripts/fence.lua")));

/// The code of every script, loaded on each new connection (see `Master`): a release issued
/// in the background then runs as the one command it was issued as, never as a second `EVAL`
/// after a `NOSCRIPT` reply, which a later `SET` of ours could overtake.
pub(crate) fn codes() -> Vec<&'static str> {
    [&ACQUIRE, &LEAVE_QUEUE, &RELEASE, &EXTEND, &STATS, &FENCE]
        .into_iter()
        .map(|lua| lua.code)
        .collect()
}

/// One call of a script, as a single `EVALSHA` command whose keys and arguments are written once
/// into the command's buffer (a `redis::ScriptInvocation` copies each into a vector of its own,
/// then again into the command: a dozen allocations per call on the hot path).
pub(crate) struct ScriptCall {
    lua: &'static Lua,
    cmd: Cmd,
}

impl ScriptCall {
    /// A call of `script` whose first `keys` arguments are keys (they route it in a cluster).
    pub(crate) fn new(lua: &'static Lua, keys: usize) -> Self {
        // Room for the usual keys and arguments, so the buffers are not grown arg by arg.
        let mut cmd = Cmd::with_capacity(16, 512);
        cmd.arg("EVALSHA").arg(lua.script.get_hash()).arg(keys);
        Self { lua, cmd }
    }

    /// A call of a script that acts only if the lock holds `value`: `KEYS` = lock, fence;
    /// `ARGV[1]` = `value`, more arguments to follow.
    pub(crate) fn owned(lua: &'static Lua, keys: &LockKeys, value: &str) -> Self {
        Self::new(lua, 2)
            .arg(&*keys.lock)
            .arg(keys.fence())
            .arg(value)
    }

    /// Appends a key or an argument: the keys first, then the arguments.
    pub(crate) fn arg(mut self, arg: impl ToRedisArgs) -> Self {
        self.cmd.arg(arg);
        self
    }

    /// Runs the call; a master that does not know the script (restarted, or a new cluster
    /// node) gets it as `EVAL` with the same keys and arguments. One command either way: a
    /// `SCRIPT LOAD` first would leave a gap in which the call's time bound could end it, with
    /// the script never run (an undo lost, a key left for its TTL).
    pub(crate) async fn invoke<T: FromRedisValue>(
        &self,
        connection: &mut Handle,
    ) -> RedisResult<T> {
        match self.cmd.query_async(connection).await {
            Err(err) if is_no_script(&err) => {
                self.lua.eval_of(&self.cmd).query_async(connection).await
            }
            other => other,
        }
    }
}

fn is_no_script(err: &redis::RedisError) -> bool {
    err.kind() == ErrorKind::Server(ServerErrorKind::NoScript)
}

impl Lua {
    /// The `EVAL` of an `EVALSHA` of this script: the same keys and arguments.
    fn eval_of(&self, evalsha: &Cmd) -> Cmd {
        let mut eval = Cmd::with_capacity(16, 512 + self.code.len());
        eval.arg("EVAL").arg(self.code);
        // After `EVALSHA` and the digest: the key count, the keys, the arguments.
        for arg in evalsha.args_iter().skip(2) {
            if let Arg::Simple(bytes) = arg {
                eval.arg(bytes);
            }
        }
        eval
    }
}

/// Many calls of one script in one pipeline: one round trip to a master carries them all (the
/// watchdog's renewals of every guard due at once), and each reply stands on its own.
pub(crate) struct ScriptBatch {
    lua: &'static Lua,
    pipeline: Pipeline,
}

impl ScriptBatch {
    /// The batch of `calls`, all of one script.
    pub(crate) fn new(lua: &'static Lua, calls: impl IntoIterator<Item = ScriptCall>) -> Self {
        let mut pipeline = redis::pipe();
        pipeline.ignore_errors();
        for call in calls {
            pipeline.add_command(call.cmd);
        }
        Self { lua, pipeline }
    }

    /// Runs every call (see [`all_at_once`]); a master that does not know the script gets the
    /// calls it refused again, as `EVAL`s.
    pub(crate) async fn invoke<T: FromRedisValue + Send>(
        &self,
        connection: &mut Handle,
    ) -> RedisResult<Vec<RedisResult<T>>> {
        let mut replies: Vec<RedisResult<T>> = all_at_once(&self.pipeline, connection).await?;
        let refused: Vec<usize> = (0..replies.len())
            .filter(|&index| replies[index].as_ref().is_err_and(is_no_script))
            .collect();
        if !refused.is_empty() {
            let calls: Vec<&Cmd> = self.pipeline.cmd_iter().collect();
            let mut evals = redis::pipe();
            evals.ignore_errors();
            for &index in &refused {
                evals.add_command(self.lua.eval_of(calls[index]));
            }
            let again = all_at_once(&evals, connection).await?;
            for (index, reply) in refused.into_iter().zip(again) {
                replies[index] = reply;
            }
        }
        Ok(replies)
    }
}

/// The commands of `pipeline` in one round trip on a server; in a cluster, each on its own (a
/// pipeline goes to one node, and the commands' keys lie in many slots), all at once.
async fn all_at_once<T: FromRedisValue + Send>(
    pipeline: &Pipeline,
    connection: &mut Handle,
) -> RedisResult<Vec<RedisResult<T>>> {
    match connection {
        Handle::Server(server) => pipeline.query_async(server).await,
        Handle::Cluster(_) => {
            let commands = pipeline.cmd_iter().map(|cmd| {
                let mut connection = connection.clone();
                async move { cmd.query_async(&mut connection).await }
            });
            Ok(futures_util::future::join_all(commands).await)
        }
    }
}
