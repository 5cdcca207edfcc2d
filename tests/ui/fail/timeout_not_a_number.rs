use configurable_redlock::redlock;

#[redlock(name = "a", timeout = "5", silent)]
async fn job() {}

fn main() {}
