//! Redlock distributed locks for Rust over one or many Redis masters, with a `#[redlock]`
//! attribute that wraps a function body in the lock. Wire-compatible with the Python library
//! `configurable-redlock`: Python and Rust workers share locks and waiting statistics.
//!
//! # The attribute
//!
//! ```no_run
//! use configurable_redlock::{LockError, redlock};
//!
//! // One worker at a time sends the digest; the others skip it silently.
//! #[redlock(name = "digest:{day}", timeout = -1, silent)]
//! async fn send_digest(day: u32) {
//!     // ... runs only under the lock `redlock:ConfigurableLock.digest:<day>` ...
//! }
//!
//! // Wait up to 5 s; else `Err(LockError::Timeout { .. })`, converted into the error type.
//! #[redlock(name = "invoice:{id}", timeout = 5)]
//! async fn bill(id: u64) -> Result<u64, LockError> {
//!     Ok(id)
//! }
//! ```
//!
//! See [`redlock`] for every option and what a function returns when the lock is not taken.
//!
//! # The layer (feature `tower`)
//!
//! `layer::RedlockLayer` gives any `tower::Service` the attribute's semantics: each request
//! runs under a lock named from the request (a job of a job queue, a resource of an HTTP
//! service), with the same `timeout`, `silent` and `abort_on_lost`.
//!
//! ```no_run
//! # #[cfg(feature = "tower")] {
//! use configurable_redlock::{Redlock, layer::RedlockLayer};
//!
//! struct Job {
//!     id: u64,
//! }
//!
//! # fn run(redlock: Redlock) {
//! // A job that another worker runs now is acknowledged as skipped, not run twice.
//! let layer = RedlockLayer::new(redlock, |job: &Job| format!("job:{}", job.id))
//!     .timeout(-1)
//!     .silent(|_job: Job| "skipped");
//! # let _ = layer;
//! # }
//! # }
//! ```
//!
//! # The API
//!
//! ```no_run
//! use configurable_redlock::{Redlock, Timeout};
//!
//! # async fn run() -> Result<(), configurable_redlock::LockError> {
//! let redlock = Redlock::from_env()?;
//! let guard = redlock.lock("nightly-report").timeout(Timeout::Skip).await?;
//! // ... the critical section ...
//! guard.release().await?;
//! # Ok(()) }
//! ```
//!
//! # Masters
//!
//! Each URL is one vote of the quorum: `redis://` (one server), `rediss://` (TLS),
//! `redis+cluster://host:port[,host:port...]` (one Redis Cluster, by its seed nodes) or
//! `redis+sentinel://host:port[,host:port...]/<service>[/db]` (the master the sentinels name).
//! See [`Config::urls`], and the README for what each deployment guarantees.
//!
//! # Feature flags
//!
//! - `tls`: `rediss://` masters, with rustls (certificates checked against the platform's
//!   roots, or the file named by `SSL_CERT_FILE`):
//!
//!   ```no_run
//!   # #[cfg(feature = "tls")]
//!   # fn run() -> Result<(), configurable_redlock::LockError> {
//!   let redlock = configurable_redlock::Redlock::new([
//!       "rediss://:secret@db1.example.com:6380",
//!       "rediss://:secret@db2.example.com:6380",
//!       "rediss://:secret@db3.example.com:6380",
//!   ])?;
//!   # Ok(()) }
//!   ```
//!
//! - `metrics`: counters and histograms through the [`metrics`](https://docs.rs/metrics)
//!   facade: `redlock_acquisitions_total{lock,outcome}`, `redlock_wait_seconds{lock,outcome}`,
//!   `redlock_hold_seconds{lock}`, `redlock_lost_total{lock}`. `lock` is the stats name, else
//!   the lock name: group locks named after ids with a `stats_name`, or each id becomes a
//!   time series. The repository's `examples/prometheus.rs` exports them
//!   (`cargo run --features metrics --example prometheus`).
//!
//! - `tower`: the `layer` module, `RedlockLayer` (see above); the repository's `integrations`
//!   package runs it under axum (`examples/axum_resource.rs`) and in tests.
//!
//! - `test-util`: the `test_util` module, a `RedisServer` / `Masters` harness that runs real
//!   `redis-server` processes on free loopback ports, for your own tests (see the README's
//!   "Testing code that uses locks").
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

/// ```no_run
/// use configurable_redlock::{redlock, LockError};
///
/// // One worker at a time sends the digest; the others skip it silently.
/// #[redlock(name = "digest:{day}", timeout = -1, silent)]
/// async fn send_digest(day: u32) {
///     // ... runs only under the lock `redlock:ConfigurableLock.digest:<day>` ...
/// }
///
/// // Wait up to 5 s; else `Err(LockError::Timeout { .. })`, converted into the error type.
/// #[redlock(name = "invoice:{id}", timeout = 5)]
/// fn bill(id: u64) -> Result<u64, LockError> {
///     Ok(id)
/// }
///
/// # #[tokio::main] async fn main() {
/// send_digest(7).await;
/// let billed = bill(42);
/// # }
/// ```
#[doc(inline)]
pub use redlock_macros::redlock;
pub use redlock_runtime::*;

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
