use configurable_redlock::redlock;

#[redlock(name = "a", timeout = 5, timeout = -1, silent)]
async fn job() {}

fn main() {}
