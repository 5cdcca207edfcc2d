use configurable_redlock::redlock;

#[redlock(name = "encoder", permits = 3, reentrant)]
async fn encode() {}

fn main() {}
