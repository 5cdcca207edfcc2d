use configurable_redlock::redlock;

#[redlock(name = "a", guard = self.lock)]
async fn job() {}

fn main() {}
