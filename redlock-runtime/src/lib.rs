//! The runtime of [configurable-redlock]: Redlock distributed locks over one or many
//! independent Redis masters, wire-compatible with the Python library `configurable-redlock`.
//!
//! Most users depend on the facade crate `configurable-redlock`, which re-exports everything
//! here plus the `#[redlock]` attribute. Depend on this crate directly only to avoid the proc
//! macro.
//!
//! ```no_run
//! use redlock_runtime::{Redlock, LockError};
//!
//! # async fn run() -> Result<(), LockError> {
//! let redlock = Redlock::new(["redis://10.0.0.1", "redis://10.0.0.2", "redis://10.0.0.3"])?;
//! match redlock.lock("nightly-report").timeout(-1).await {
//!     Ok(guard) => {
//!         // ... the critical section: no other holder on a quorum of masters ...
//!         guard.release().await?;
//!     }
//!     Err(LockError::Timeout { .. }) => { /* another worker runs it */ }
//!     Err(other) => return Err(other),
//! }
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! - `tls`: `rediss://`, `rediss+cluster://` and `rediss+sentinel://` masters, with rustls.
//! - `metrics`: counters and histograms through the [`metrics`](https://docs.rs/metrics)
//!   facade (`redlock_acquisitions_total`, `redlock_wait_seconds`, `redlock_hold_seconds`,
//!   `redlock_lost_total`, labelled by stats name, else lock name).
//! - `tower`: the `layer` module: `RedlockLayer` runs each request of any `tower::Service`
//!   under a lock named from the request, with the attribute's `timeout`, `silent` and
//!   `abort_on_lost`.
//! - `test-util`: the `test_util` module: real `redis-server` processes, clusters and sentinels on free
//!   loopback ports, for tests.
//!
//! [configurable-redlock]: https://crates.io/crates/configurable-redlock
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

// The modules in layers: each uses only those above it in this list (`test_util` and
// `__private` may use any); `.ci/check_layers.py` checks it. A reader follows one acquisition
// downward from `redlock`.
//
// The vocabulary: errors, timeouts, URL kinds, settings, key names, the private runtime.
mod error;
mod timeout;
mod target;
mod config;
mod keys;
mod rt;
mod throttle;
mod backoff;
mod restart;
// One connection per master; the Lua scripts; fan-out and tally; release notifications;
// background releases in flight; a client's masters.
mod master;
mod scripts;
mod quorum;
mod wake;
mod background;
mod backend;
// One hold: observation, local lines of waiters, its lease and validity, renewals, re-entry
// records.
mod observe;
mod line;
mod lease;
mod renewals;
mod reentry;
// One attempt round; waiting statistics; the wait; the guard; the client; a semaphore's
// permits; the request.
mod acquire;
mod stats;
mod wait;
mod guard;
mod client;
mod permits;
mod request;
mod operate;
mod redlock;
#[cfg(feature = "tower")]
pub mod layer;
pub mod blocking;
// Also built for the crate's own tests, which run its scripts on real servers.
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;

pub use config::{Config, DEFAULT_OUTAGE_TIMEOUT, DEFAULT_URL, RestartGrace};
pub use error::{LockError, MasterFailure, MasterVote, Vote};
pub use guard::LockGuard;
pub use keys::{OVERTAKE_FOR, waiting_key};
pub use operate::{LockOnMaster, LockState, MasterReadiness, Readiness};
pub use redlock::Redlock;
pub use request::{DEFAULT_AUTO_RELEASE_TIME, LockRequest};
pub use stats::{Contended, REGISTRY_KEY};
pub use timeout::Timeout;

/// The `redis` crate this one is built on, whose types the test harness returns: use it
/// rather than a `redis` dependency of your own, whose version could differ.
///
/// ```no_run
/// use redlock_runtime::redis::Commands;
/// # fn run() -> redlock_runtime::redis::RedisResult<()> {
/// let mut connection = redlock_runtime::redis::Client::open("redis://127.0.0.1")?.get_connection()?;
/// let holder: Option<String> = connection.get(redlock_runtime::lock_key("report"))?;
/// # Ok(()) }
/// ```
pub use redis;

/// The lock key of a lock name, as the Python library writes it: `redlock:ConfigurableLock.<name>`.
///
/// ```
/// assert_eq!(redlock_runtime::lock_key("emails"), "redlock:ConfigurableLock.emails");
/// ```
pub fn lock_key(name: &str) -> String {
    keys::lock_key(name)
}

/// What `#[redlock]` expansions call. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private;
