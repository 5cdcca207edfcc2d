use configurable_redlock::redlock;

#[redlock(name = "a", auto_release_time = 0.001)]
async fn job() {}

fn main() {}
