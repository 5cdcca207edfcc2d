use configurable_redlock::redlock;

#[redlock(name = "a", timout = 5)]
async fn job() {}

fn main() {}
