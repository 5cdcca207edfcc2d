use configurable_redlock::redlock;

#[redlock(name = "a", timeout = -1, silent, min_hold = 0)]
async fn job() {}

fn main() {}
