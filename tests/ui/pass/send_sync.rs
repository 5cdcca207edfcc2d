//! Handles are `Send + Sync + 'static` and every future is `Send`: guards and requests move
//! freely across tasks (checked at compile time).

use std::future::IntoFuture;

use configurable_redlock::{LockError, LockGuard, LockRequest, Redlock, blocking};

fn handle<T: Send + Sync + 'static>() {}
fn future<T: std::future::Future + Send>(_: T) {}

#[allow(dead_code, unused_must_use)]
async fn futures(redlock: Redlock, guard: LockGuard) {
    future(redlock.lock("a").into_future());
    future(redlock.waiting());
    future(guard.lost());
    future(guard.extend());
    future(guard.fencing_token());
    future(guard.release());
}

fn main() {
    handle::<Redlock>();
    handle::<LockRequest>();
    handle::<LockGuard>();
    handle::<LockError>();
    handle::<blocking::Redlock>();
    handle::<blocking::LockRequest>();
    handle::<blocking::LockGuard>();
    let _ = futures;
}
