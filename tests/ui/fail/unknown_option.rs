use configurable_redlock::redlock;

#[redlock(name = "a", retries = 3)]
async fn job() {}

fn main() {}
