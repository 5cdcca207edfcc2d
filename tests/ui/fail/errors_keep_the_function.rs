//! Several mistakes at once: every one is reported, and callers of the function compile.
use configurable_redlock::redlock;

#[redlock(timeout = -3, auto_release_time = 0)]
async fn job(id: u64) -> u64 {
    id
}

async fn caller() -> u64 {
    job(1).await + 1
}

fn main() {
    let _ = caller;
}
