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
//! - `test-util`: the `test_util` module: real `redis-server` processes, clusters and sentinels on free
//!   loopback ports, for tests.
//!
//! [configurable-redlock]: https://crates.io/crates/configurable-redlock
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

mod acquire;
mod background;
pub mod blocking;
mod config;
mod error;
mod guard;
mod master;
mod observe;
mod quorum;
mod reentry;
mod renewals;
mod request;
mod rt;
mod scripts;
mod stats;
mod target;
#[cfg(feature = "test-util")]
pub mod test_util;
mod timeout;
mod wake;

pub use config::{Config, DEFAULT_OUTAGE_TIMEOUT, DEFAULT_URL, Redlock};
pub use error::{LockError, MasterFailure};
pub use guard::LockGuard;
pub use request::{DEFAULT_AUTO_RELEASE_TIME, LockRequest};
pub use stats::{Contended, REGISTRY_KEY, waiting_key};
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
    acquire::lock_key(name)
}

/// What `#[redlock]` expansions call. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private;
