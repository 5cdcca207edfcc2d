//! The Lua scripts, each created once per process.

use std::sync::LazyLock;

use redis::Script;

/// A script that reads the queue of waiters, with the queue helpers prepended.
macro_rules! queue_script {
    ($file:literal) => {
        LazyLock::new(|| {
            Script::new(concat!(
                include_str!("scripts/queue.lua"),
                include_str!($file)
            ))
        })
    };
}

/// The queued attempt of a waiter; reports the holder's remaining TTL and the waiter's rank.
pub(crate) static ACQUIRE: LazyLock<Script> = queue_script!("scripts/acquire.lua");

/// A waiter that gives up leaves the queue.
pub(crate) static LEAVE_QUEUE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/leave_queue.lua")));

/// Compare-and-delete: releases the lock only if it still holds our value, hands it to the
/// first waiter and wakes the waiters.
pub(crate) static RELEASE: LazyLock<Script> = queue_script!("scripts/release.lua");

/// Compare-and-extend: resets the TTL only if the lock still holds our value.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));

/// Waiting statistics: count a waiter in or out, keep it alive, repair the dead, read.
pub(crate) static STATS: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/stats.lua")));

/// Fencing tokens: the next value of the lock's counter, or raise the counter to a token.
pub(crate) static FENCE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/fence.lua")));
