use configurable_redlock::redlock;

#[redlock(name = "a", timeout = -2, silent)]
async fn job() {}

fn main() {}
