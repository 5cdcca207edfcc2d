use configurable_redlock::redlock;

#[redlock(timeout = -1, silent)]
async fn job() {}

fn main() {}
