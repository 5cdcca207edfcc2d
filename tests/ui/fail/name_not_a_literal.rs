use configurable_redlock::redlock;

const NAME: &str = "a";

#[redlock(name = NAME)]
async fn job() {}

fn main() {}
