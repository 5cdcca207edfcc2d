//! The Lua scripts, each created once per process.

use std::{
    sync::LazyLock,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use redis::{
    Arg, Cmd, ErrorKind, FromRedisValue, Pipeline, RedisResult, Script, ServerErrorKind,
    ToRedisArgs,
};

use crate::{
    keys::{Counter, FOREIGN_POLL, FOREIGN_WINDOW, GRANT, LockKeys, OVERTAKE_FOR, PLACE_TTL},
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

/// A script of the lock, with the queue's helpers and the lock kind's functions prepended
/// (`queue.lua`, then `mutex.lua`: what holding means, what a release grants; see README
/// "Lock kinds").
macro_rules! lock_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Lua::new(concat!(
                include_str!("scripts/queue.lua"),
                include_str!("scripts/mutex.lua"),
                include_str!($file)
            ))
        })
    };
}

/// The queued attempt of a waiter; reports the holder's remaining TTL and the waiter's turn.
pub(crate) static ACQUIRE: LazyLock<Lua> = lock_script!("scripts/acquire.lua");

/// A waiter that gives up leaves the queue and passes on a grant made to it.
pub(crate) static LEAVE_QUEUE: LazyLock<Lua> = lock_script!("scripts/leave_queue.lua");

/// Compare-and-delete: releases the lock only if it still holds our value, grants it to the
/// waiters whose turn it is (or leaves it to foreign waiters for a window) and wakes the
/// waiters.
pub(crate) static RELEASE: LazyLock<Lua> = lock_script!("scripts/release.lua");

/// The undo of a failed attempt: compare-and-delete, granting nobody (see `undo.lua`).
pub(crate) static UNDO: LazyLock<Lua> = lock_script!("scripts/undo.lua");

/// Compare-and-extend: resets the TTL only if the lock still holds our value.
pub(crate) static EXTEND: LazyLock<Lua> = lock_script!("scripts/extend.lua");

/// Waiting statistics: count a waiter in or out, keep it alive, repair the dead, read.
pub(crate) static STATS: LazyLock<Lua> =
    LazyLock::new(|| Lua::new(include_str!("scripts/stats.lua")));

/// Fencing tokens: the next value of the lock's counter, or raise the counter to a token.
pub(crate) static FENCE: LazyLock<Lua> = lock_script!("scripts/fence.lua");

/// A call of a script that reads the lock's queue: `KEYS` = the lock, its queue, the expiries
/// of the places in it, the state of its foreign waiters and its head (see `OVERTAKE_FOR`),
/// then the waiting `counter` in
/// which foreign waiters count themselves and the sum of our processes' counts in it, when
/// these may be read with the lock's keys (not in Redis Cluster: another slot).
fn queue_call(lua: &'static Lua, keys: &LockKeys, counter: Option<Counter<'_>>) -> ScriptCall {
    let lock: &str = &keys.lock;
    let (queue, expiries, foreign, head) =
        (keys.queue(), keys.expiries(), keys.foreign(), keys.head());
    match counter {
        Some(counter) => ScriptCall::new(
            lua,
            &[
                &lock,
                &queue,
                &expiries,
                &foreign,
                &head,
                &counter,
                &counter.companion("ours"),
            ],
        ),
        None => ScriptCall::new(lua, &[&lock, &queue, &expiries, &foreign, &head]),
    }
}

/// The release of our hold (see [`RELEASE`]). `counter` is the waiting counter in which
/// foreign waiters of the lock count themselves, when it may be read with the lock's keys
/// (not in Redis Cluster): they then get their turns. A non-zero `keep` leaves the key held
/// for that long instead (`LockRequest::min_hold`). Its reply is a [`Released`].
pub(crate) fn release(
    keys: &LockKeys,
    value: &str,
    counter: Option<Counter<'_>>,
    keep: Duration,
) -> ScriptCall {
    release_at(keys, value, counter, keep, wall_clock_ms())
}

/// [`release`] at `clock` (this client's wall clock, ms: see [`OVERTAKE_FOR`]).
fn release_at(
    keys: &LockKeys,
    value: &str,
    counter: Option<Counter<'_>>,
    keep: Duration,
    clock: f64,
) -> ScriptCall {
    queue_call(&RELEASE, keys, counter)
        .arg(value)
        .arg(keys.channel())
        .arg(millis(GRANT))
        .arg(millis(FOREIGN_WINDOW))
        .arg(millis(keep))
        .arg(millis(OVERTAKE_FOR))
        .arg(clock)
}

/// The undo of a failed attempt that set `value` (see [`UNDO`]): `offer` when no other client
/// won the round, so that the head of the queue attempts. Replies 1, or -1 if not ours.
pub(crate) fn undo(keys: &LockKeys, value: &str, offer: bool) -> ScriptCall {
    let lock: &str = &keys.lock;
    ScriptCall::new(&UNDO, &[&lock, &keys.queue(), &keys.expiries()])
        .arg(value)
        .arg(keys.channel())
        .arg(u8::from(offer))
}

/// What a release did on a master that held our value (a reply of [`release`] that is not
/// negative: a negative reply means "not ours", as for every owned-lock script).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Released {
    /// Deleted, granted to the first waiter, or kept for a minimum hold.
    Done = 1,
    /// Deleted and left free to foreign waiters for their window.
    LeftToForeignWaiters = 2,
}

impl Released {
    /// The outcome a reply code stands for (the highest of a quorum's).
    pub(crate) fn from_code(code: u64) -> Self {
        if code == Self::LeftToForeignWaiters as u64 {
            Self::LeftToForeignWaiters
        } else {
            Self::Done
        }
    }
}

/// The queued attempt of the waiter `waiter` at its `ticket` to set the lock to `value` for
/// `ttl_ms` (see [`ACQUIRE`]); `counter` as for [`release`]. Its reply is a [`QueuedReply`].
pub(crate) fn queued_attempt(
    keys: &LockKeys,
    counter: Option<Counter<'_>>,
    value: &str,
    ttl_ms: u64,
    waiter: &str,
    ticket: f64,
) -> ScriptCall {
    queue_call(&ACQUIRE, keys, counter)
        .arg(value)
        .arg(ttl_ms)
        .arg(waiter)
        .arg(ticket)
        .arg(millis(PLACE_TTL))
        .arg(millis(FOREIGN_POLL))
}

/// The reply of a queued attempt on one master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueuedReply {
    Granted,
    Refused {
        /// How long until an attempt may succeed (zero: when a release is announced).
        wait_ms: u64,
        /// How many releases come before our turn (the kind's arithmetic: `turns` in
        /// `mutex.lua`).
        releases: u64,
        /// Whether the next grant goes to the waiter just ahead of us (ours if it lapses).
        next_in_line: bool,
        /// A digest of the holder's value (0: free): a holder that changed with no release
        /// announced in between released unannounced (see `wait::queued`).
        holder: u64,
        /// Whether the script takes the holder for a foreign one (foreign waiters wait, or one
        /// of them took the lock last): the head watches the key (see `wake.rs`).
        foreign: bool,
    },
}

impl FromRedisValue for QueuedReply {
    fn from_redis_value(value: redis::Value) -> Result<Self, redis::ParsingError> {
        let (granted, wait_ms, releases, next_in_line, holder, foreign): (
            u8,
            u64,
            u64,
            u8,
            Option<Vec<u8>>,
            Option<u8>,
        ) = FromRedisValue::from_redis_value(value)?;
        Ok(if granted == 1 {
            Self::Granted
        } else {
            Self::Refused {
                wait_ms,
                releases,
                next_in_line: next_in_line == 1,
                holder: holder.map_or(0, |value| digest(&value)),
                foreign: foreign == Some(1),
            }
        })
    }
}

/// A digest of a lock's value, never 0 (which stands for "free"); stable within the process.
pub(crate) fn digest(value: &[u8]) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default()
        .hash_one(value)
        .max(1)
}

/// The waiter `waiter` leaves the lock's queue (see [`LEAVE_QUEUE`]); unless it
/// `keeps_its_grant` (it holds the lock by grants), a grant made to it is passed on.
pub(crate) fn leave_queue(keys: &LockKeys, waiter: &str, keeps_its_grant: bool) -> ScriptCall {
    let lock: &str = &keys.lock;
    let (queue, expiries, head) = (keys.queue(), keys.expiries(), keys.head());
    ScriptCall::new(&LEAVE_QUEUE, &[&lock, &queue, &expiries, &head])
        .arg(waiter)
        .arg(keys.channel())
        .arg(millis(GRANT))
        .arg(keeps_its_grant)
}

/// The compare-and-extend of our hold to `ttl` (see [`EXTEND`]).
pub(crate) fn extend(keys: &LockKeys, value: &str, ttl: Duration) -> ScriptCall {
    ScriptCall::owned(&EXTEND, keys, value).arg(millis(ttl))
}

/// What the fencing script does with the lock's counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fence {
    /// Increment it, and reply with it.
    Next,
    /// Make it at least this token, so that any later quorum sees it.
    Raise(u64),
}

/// The fencing script's `op` on the counter of our hold (see [`FENCE`]).
pub(crate) fn fence(keys: &LockKeys, value: &str, op: Fence) -> ScriptCall {
    let call = ScriptCall::owned(&FENCE, keys, value);
    match op {
        Fence::Next => call.arg("next").arg(0),
        Fence::Raise(token) => call.arg("raise").arg(token),
    }
}

/// A duration as the whole milliseconds that scripts take (saturating).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// This client's wall clock in ms: a waiter's ticket (its place in the queue, the same on every
/// master), and a releaser's now against it (see [`OVERTAKE_FOR`]).
pub(crate) fn wall_clock_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1000.0)
}

/// The code of every script, loaded on each new connection (see `Master`): a release issued
/// in the background then runs as the one command it was issued as, never as a second `EVAL`
/// after a `NOSCRIPT` reply, which a later `SET` of ours could overtake.
pub(crate) fn codes() -> Vec<&'static str> {
    [
        &ACQUIRE,
        &LEAVE_QUEUE,
        &RELEASE,
        &UNDO,
        &EXTEND,
        &STATS,
        &FENCE,
    ]
    .into_iter()
    .map(|lua| lua.code)
    .collect()
}

/// A key of a script call, written as one argument (a trait object, so that one slice holds
/// keys of several types and the call counts them itself).
pub(crate) trait Key {
    fn write_to(&self, cmd: &mut Cmd);
}

impl<T: ToRedisArgs> Key for T {
    fn write_to(&self, cmd: &mut Cmd) {
        cmd.arg(self);
    }
}

/// One call of a script, as a single `EVALSHA` command whose keys and arguments are written once
/// into the command's buffer (a `redis::ScriptInvocation` copies each into a vector of its own,
/// then again into the command: a dozen allocations per call on the hot path).
pub(crate) struct ScriptCall {
    lua: &'static Lua,
    cmd: Cmd,
}

impl ScriptCall {
    /// A call of `lua` with `keys` (they route it in a cluster); its arguments follow.
    pub(crate) fn new(lua: &'static Lua, keys: &[&dyn Key]) -> Self {
        // Room for the usual keys and arguments, so the buffers are not grown arg by arg.
        let mut cmd = Cmd::with_capacity(16, 512);
        cmd.arg("EVALSHA")
            .arg(lua.script.get_hash())
            .arg(keys.len());
        for key in keys {
            key.write_to(&mut cmd);
        }
        Self { lua, cmd }
    }

    /// A call of a script that acts only if the lock holds `value`: `KEYS` = lock, fence;
    /// `ARGV[1]` = `value`, more arguments to follow.
    pub(crate) fn owned(lua: &'static Lua, keys: &LockKeys, value: &str) -> Self {
        let lock: &str = &keys.lock;
        Self::new(lua, &[&lock, &keys.fence()]).arg(value)
    }

    /// Appends an argument (`ARGV`).
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redis::Commands;

    use super::{
        QueuedReply, Released, ScriptCall, queued_attempt, release, release_at, undo, wall_clock_ms,
    };
    use crate::{
        keys::{LockKeys, OVERTAKE_FOR},
        test_util::RedisServer,
    };

    fn run<T: redis::FromRedisValue>(call: ScriptCall, connection: &mut redis::Connection) -> T {
        call.lua.eval_of(&call.cmd).query(connection).unwrap()
    }

    /// Queues `waiter` with `ticket` by a queued attempt that the lock, held, refuses.
    fn queue_refused(
        keys: &LockKeys,
        waiter: &str,
        ticket: f64,
        connection: &mut redis::Connection,
    ) {
        let call = queued_attempt(keys, None, waiter, 5_000, waiter, ticket);
        assert!(matches!(
            run::<QueuedReply>(call, connection),
            QueuedReply::Refused { .. }
        ));
    }

    /// `listener` subscribed to the lock's release channel.
    fn listen<'a>(listener: &'a mut redis::Connection, keys: &LockKeys) -> redis::PubSub<'a> {
        let mut pubsub = listener.as_pubsub();
        pubsub.subscribe(keys.channel().to_string()).unwrap();
        pubsub
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        pubsub
    }

    /// The undo of a failed attempt grants nobody (a grant on one master would leave its
    /// grantee partly granted): the lock is left free, and the head of the queue is offered it
    /// only when nobody won the round.
    #[test]
    fn an_undo_leaves_the_lock_free_and_offers_it_only_when_asked() {
        let server = RedisServer::start();
        let mut connection = server.connection();
        let keys = LockKeys::new("undo");
        let set_ours = |connection: &mut redis::Connection| {
            let _: () = connection.set(&*keys.lock, "ours").unwrap();
        };
        set_ours(&mut connection);
        queue_refused(&keys, "head", 1.0, &mut connection);
        let mut listener = server.connection();
        let mut pubsub = listen(&mut listener, &keys);
        let mut connection = server.connection();

        // A holder won the round: silent, and nobody is granted the lock.
        assert_eq!(run::<i64>(undo(&keys, "ours", false), &mut connection), 1);
        let exists: bool = connection.exists(&*keys.lock).unwrap();
        assert!(!exists, "left free, granted to nobody");
        let _: () = connection
            .publish(keys.channel().to_string(), "marker")
            .unwrap();
        let next: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(next, "marker", "nothing announced");

        // Nobody won it: the head is offered the free lock.
        set_ours(&mut connection);
        assert_eq!(run::<i64>(undo(&keys, "ours", true), &mut connection), 1);
        let announced: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(announced, "-head");
        let exists: bool = connection.exists(&*keys.lock).unwrap();
        assert!(!exists, "offered, not granted");

        // Another value is not ours to undo.
        let _: () = connection.set(&*keys.lock, "theirs").unwrap();
        assert_eq!(run::<i64>(undo(&keys, "ours", true), &mut connection), -1);
        let value: String = connection.get(&*keys.lock).unwrap();
        assert_eq!(value, "theirs");
    }

    /// The lock kind's seam as the waits see it: a refusal counts the releases before each
    /// waiter's turn, and a release grants the lock and names the grantee in one message.
    #[test]
    fn refusals_count_turns_and_a_release_names_its_grantee() {
        let server = RedisServer::start();
        let mut connection = server.connection();
        let keys = LockKeys::new("seam");
        let _: () = connection
            .set_options(
                &*keys.lock,
                "holder",
                redis::SetOptions::default().with_expiration(redis::SetExpiry::PX(5_000)),
            )
            .unwrap();
        let mut attempt = |waiter: &str, ticket: f64| -> QueuedReply {
            let call = queued_attempt(&keys, None, waiter, 5_000, waiter, ticket);
            run(call, &mut connection)
        };
        let refused = |reply: QueuedReply| match reply {
            QueuedReply::Refused {
                releases,
                next_in_line,
                ..
            } => (releases, next_in_line),
            QueuedReply::Granted => panic!("granted while held"),
        };
        // The holder's release, then the first waiter's: B is next in line behind A.
        assert_eq!(refused(attempt("a", 1.0)), (1, false));
        assert_eq!(refused(attempt("b", 2.0)), (2, true));

        let mut listener = server.connection();
        let mut pubsub = listen(&mut listener, &keys);
        let mut connection = server.connection();
        let code: u64 = run(
            release(&keys, "holder", None, Duration::ZERO),
            &mut connection,
        );
        assert_eq!(Released::from_code(code), Released::Done);
        let announced: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(announced, "a");
        let value: String = connection.get(&*keys.lock).unwrap();
        assert_eq!(value, "a", "the release grants the lock to the head");
        // The grant made B the head: until its time to be overtaken is over, a release would
        // only offer it the lock (see the next test). Released once it is over:
        let later = wall_clock_ms() + OVERTAKE_FOR.as_secs_f64() * 1000.0 + 1.0;
        let release_a = release_at(&keys, "a", None, Duration::ZERO, later);
        let code: u64 = run(release_a, &mut connection);
        assert_eq!(Released::from_code(code), Released::Done);
        let announced: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(announced, "b");
        // Nobody left to grant to: the lock is free, and the release announces no grantee.
        let code: u64 = run(release(&keys, "b", None, Duration::ZERO), &mut connection);
        assert_eq!(Released::from_code(code), Released::Done);
        let exists: bool = connection.exists(&*keys.lock).unwrap();
        assert!(!exists);
        // A release that is not ours changes nothing.
        let code: i64 = run(release(&keys, "b", None, Duration::ZERO), &mut connection);
        assert_eq!(code, -1);
    }

    /// Bounded barging: a release while the head may still be overtaken leaves the lock free
    /// for whoever asks first and offers it to the head, once per head; then it is the head's.
    #[test]
    fn a_release_offers_the_lock_to_a_head_that_may_still_be_overtaken() {
        let server = RedisServer::start();
        let mut connection = server.connection();
        let keys = LockKeys::new("offer");
        let hold = |value: &str, connection: &mut redis::Connection| {
            let set: Option<String> = redis::cmd("SET")
                .arg(&*keys.lock)
                .arg(value)
                .arg("NX")
                .arg("PX")
                .arg(5_000)
                .query(connection)
                .unwrap();
            set.is_some()
        };
        let overtake = OVERTAKE_FOR.as_secs_f64() * 1000.0;
        // The releases' clocks: the head queued just before the first.
        let now = wall_clock_ms();
        let (ticket, first, second, third) = (
            now - overtake / 4.0,
            now,
            now + overtake / 2.0,
            now + overtake,
        );
        assert!(hold("holder", &mut connection));
        queue_refused(&keys, "young", ticket, &mut connection);
        let mut listener = server.connection();
        let mut pubsub = listen(&mut listener, &keys);
        let mut connection = server.connection();
        let mut release = |value: &str, clock: f64| -> u64 {
            run(
                release_at(&keys, value, None, Duration::ZERO, clock),
                &mut connection,
            )
        };

        assert_eq!(release("holder", first), Released::Done as u64);
        let announced: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(announced, "-young", "offered to the head");
        let mut connection = server.connection();
        assert!(
            hold("newcomer", &mut connection),
            "free for whoever asks first"
        );

        // Overtaken again, still within its time: no second announcement (a marker message
        // shows what came next).
        assert_eq!(release("newcomer", second), Released::Done as u64);
        let _: () = connection
            .publish(keys.channel().to_string(), "marker")
            .unwrap();
        let next: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(next, "marker", "one offer per head");
        assert!(hold("again", &mut connection));

        // Its time is over: the next release grants it the lock.
        assert_eq!(release("again", third), Released::Done as u64);
        let announced: String = pubsub.get_message().unwrap().get_payload().unwrap();
        assert_eq!(announced, "young", "granted to the head");
        let value: String = connection.get(&*keys.lock).unwrap();
        assert_eq!(value, "young");
    }
}
