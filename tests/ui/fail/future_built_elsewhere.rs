use std::future::Future;

use configurable_redlock::redlock;

async fn work() -> u8 {
    1
}

#[redlock(name = "a")]
fn job() -> impl Future<Output = u8> {
    work()
}

fn main() {}
