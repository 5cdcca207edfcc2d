//! The Lua scripts, each created once per process.

use std::sync::LazyLock;

use redis::Script;

/// Compare-and-delete: releases the lock only if it still holds our value.
pub(crate) static RELEASE: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/release.lua")));

/// Compare-and-extend: resets the TTL only if the lock still holds our value.
pub(crate) static EXTEND: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/extend.lua")));

/// Counts a waiter and registers its stats key once, atomically.
pub(crate) static STATS_BEGIN: LazyLock<Script> =
    LazyLock::new(|| Script::new(include_str!("scripts/stats_begin.lua")));
