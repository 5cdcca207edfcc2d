use configurable_redlock::redlock;

#[redlock(name = "a", timeout = -1, silent = true)]
async fn job() {}

fn main() {}
