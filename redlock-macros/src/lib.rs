//! The `#[redlock(...)]` attribute of [configurable-redlock](https://crates.io/crates/configurable-redlock).
//! Use it through the facade crate: `use configurable_redlock::redlock;`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod attr;
mod expand;
mod plan;

use proc_macro::TokenStream;

/// Runs the function's body only while this process holds a distributed lock.
///
/// # What it expands to
///
/// The function keeps its attributes, visibility, signature and generics. Its body becomes:
/// acquire the lock through the runtime (`Redlock::lock(name)` awaited in an `async fn`, the
/// blocking API in a plain `fn`); if that fails, return the failure value below; else run the
/// original body in its own scope, release the lock (awaited, so the next call finds it free),
/// and return the body's value. `return` and `?` in the body leave the function as usual; the
/// guard then releases in the background. A panic in the body releases the lock too.
///
/// # Options
///
/// | option | value | default |
/// |---|---|---|
/// | `name` | a format string that may capture arguments (`"job:{id}"`; a literal brace is doubled, so the hash tag of `job:{17}` is written `"job:{{17}}"`), or any expression whose value is displayed: a constant (`name = REPORT_LOCK`), `job.lock_key()`, `format!(…)` | required |
/// | `timeout` | `-1` (one attempt, skip if held), `0` (wait forever), `N` seconds (integer or float) | `0` |
/// | `auto_release_time` | the lock's TTL in seconds, integer or float, from `0.003` to below `1e9` | `10` |
/// | `min_hold` | seconds, integer or float: keep the lock at least this long after it is taken, even when the body ends sooner (ShedLock's `lockAtLeastFor`), so that replicas of a scheduled job whose timers fire within it skip | none |
/// | `silent` | flag: return `Default::default()` (or `Ok(Default::default())`) when the lock is held elsewhere | off |
/// | `stats_name` | string literal (format string allowed): the waiting-statistics name; each stats name keeps its keys in Redis forever, as in the Python library | the name; for a name that captures arguments, its template (`"job:{id}"` is counted under `job:{id}`, not under each id) |
/// | `stats` | `true` / `false`: keep waiting statistics | `true` |
/// | `client` | an expression of type `Redlock`, `blocking::Redlock` or a reference to one: a `static`, `&self.locks`… | `Redlock::from_env()`, created on first use and kept for the whole process: `REDLOCK_URLS` / `REDIS_URL` are read once, so tests that each start their own server pass `client =` rather than set the variables |
/// | `auto_extend` | `true` / `false`: renew the lock while the body runs | `true` |
/// | `guard` | an identifier bound to `&LockGuard` in the body (`is_lost`, `lost`, `extend`, `fencing_token`…) | none |
/// | `reentrant` | flag: a function that already holds the lock (same task, or same thread for a plain `fn`) runs nested without waiting; the outermost call releases | off: waiting forever for a lock you hold is `Err(LockError::Reentered)` |
/// | `permits` | a whole number from 1 to 64: a literal: up to that many calls run the body at once, fleet-wide (a semaphore: `Redlock::semaphore(name, permits)`; 1 is the lock `name`); above 1, not with `reentrant` | `1` |
/// | `abort_on_lost` | flag, for `async` functions returning `Result`: when the lock is lost, drop the body at its next `.await` and return `Err(LockError::Lost)` | off |
/// | `crate` | path string of the runtime: the facade's name when `Cargo.toml` renames it (`locks = { package = "configurable-redlock", … }` → `crate = "::locks"`), or `"::redlock_runtime"` for users of the runtime without the facade | `"::configurable_redlock"` |
///
/// With `auto_extend` (the default) the guard's watchdog renews the lock every third of its
/// TTL while the body runs; `auto_extend = false` keeps the fixed TTL of the Python library.
///
/// # When the lock is not acquired
///
/// | return type | `silent` | held by another client | backend failure, split vote |
/// |---|---|---|---|
/// | `…Result<T, E>`, `E: From<LockError>` | no | `Err(LockError::Timeout{..}.into())` | `Err(LockError::Unavailable{..}.into())`, `Err(LockError::SplitVote{..}.into())` |
/// | `…Result<T, E>` | yes | `Ok(T::default())` | `Err(….into())`: `silent` never hides an outage |
/// | any `T: Default` | yes | `T::default()` | `T::default()` and a `tracing` error event |
/// | any other `T` | no | a compile error unless `timeout = 0` | with `timeout = 0`: retried with capped backoff for the client's `outage_timeout` (30 s by default; `None` = forever), then a panic with the error, as for a misconfiguration (wrong password, ACL, unknown sentinel service or database, untrusted certificate), which panics at once |
///
/// "Held by another client" means what it says: with `timeout = -1`, a round in which
/// contenders split the masters' votes (nobody holds the lock) is retried, and one that stays
/// split is `LockError::SplitVote`, which `silent` does not hide.
///
/// A function of the last row cannot return the failure, and its body must not run unlocked: the
/// panic says which lock and which masters failed. Return a `Result` to handle it instead.
///
/// The compiler decides which row applies, after resolving aliases: `Result<T, E>`,
/// `io::Result<T>`, `anyhow::Result<T>` and an application's own
/// `type JobResult<T> = Result<T, JobError>` all are `Result`s. (A return type with `impl Trait`
/// inside, which the expansion cannot name, is taken as a `Result` when spelled `…Result<…>`.)
/// The body never runs without the lock.
///
/// # Function shapes
///
/// `async fn`; plain `fn` (blocking API: usable from threads and `spawn_blocking`); methods with
/// `self`, `&self`, `&mut self`; generics and `where` clauses; `impl Trait` returns; `fn`s that
/// end in `async move { … }` with `-> impl Future<Output = T>`; methods in `#[async_trait]`
/// impls (put `#[async_trait]` on the impl and `#[redlock]` on the method: the attribute wraps
/// the `Box::pin(async move { … })` that `async_trait` writes).
///
/// # Compile errors
///
/// Unknown or duplicate options, values of the wrong type, `timeout` outside -1/0/N,
/// `auto_release_time` below 3 ms, `permits` outside 1 to 64, or above 1 with `reentrant`, `silent = …`
/// with a value, a missing or empty `name`,
/// `silent` on a return type without `Default`, a `timeout` that can fail on a function that
/// cannot report it, `const fn`, and futures built elsewhere. The function is still emitted, so
/// the rest of the crate keeps compiling. The Python library only finds the last kind of
/// mistake at run time (`NoTimeoutCheck`).
#[proc_macro_attribute]
pub fn redlock(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::redlock(attr.into(), item.into()).into()
}
