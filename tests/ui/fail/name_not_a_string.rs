use configurable_redlock::redlock;

#[redlock(name = 17)]
async fn job() {}

fn main() {}
