//! Redlock distributed locks for Rust over one or many Redis masters, with a `#[redlock]`
//! attribute that wraps a function body in the lock. Wire-compatible with the Python library
//! `configurable-redlock`: Python and Rust workers share locks and waiting statistics.
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
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, unreachable_pub, rust_2018_idioms)]

pub use redlock_macros::redlock;
pub use redlock_runtime::*;

/// The README's examples, compiled as doctests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
