//! The Lua scripts, each created once per process.

use std::sync::LazyLock;

use redis::{
    Arg, Cmd, ErrorKind, FromRedisValue, RedisResult, Script, ServerErrorKind, ToRedisArgs,
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
/// (not in Redis Cluster): they then get their turns.
pub(crate) fn release(keys: &LockKeys, value: &str, counter: Option<Counter<'_>>) -> ScriptCall {
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
            Err(err) if err.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut eval = Cmd::with_capacity(16, 512 + self.lua.code.len());
                eval.arg("EVAL").arg(self.lua.code);
                // After `EVALSHA` and the digest: the key count, the keys, the arguments.
                for arg in self.cmd.args_iter().skip(2) {
                    if let Arg::Simple(bytes) = arg {
                        eval.arg(bytes);
                    }
                }
                eval.query_async(connection).await
            }
            other => other,
        }
    }
}
