//! Real `redis-server` processes for tests (feature `test-util`): each on a free loopback port,
//! with its own directory, killed and reaped on drop. Never a fake Redis, never the data of a
//! server you already run.
//!
//! The binary is `$REDIS_SERVER_BIN` if set, else `redis-server` from `PATH`.
//!
//! Servers are durable unless started volatile: an append-only file with `appendfsync always`
//! (in `/dev/shm` where there is one, so that fsync costs nothing), so that a restart keeps the
//! keys and clients let a fresh server vote at once. A volatile server restarts empty, and
//! clients keep it out of new acquisitions for their restart grace, also right after it first
//! starts (see `Config::restart_grace`).
//!
//! ```no_run
//! use redlock_runtime::test_util::Masters;
//!
//! let masters = Masters::start(3);
//! let redlock = redlock_runtime::Redlock::new(masters.urls())?;
//! masters[0].kill(); // a minority down: locks are still granted
//! # Ok::<(), redlock_runtime::LockError>(())
//! ```

mod server;
mod tls;
mod topology;

pub use server::{RedisServer, env_or_private_server};
pub use topology::{Masters, RedisCluster};
