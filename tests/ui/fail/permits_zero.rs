use configurable_redlock::redlock;

#[redlock(name = "encoder", permits = 0)]
async fn encode() {}

#[redlock(name = "encoder", permits = 2.5)]
async fn encode_half() {}

fn main() {}
