use configurable_redlock::redlock;

#[redlock(name = "", timeout = -1, silent)]
async fn job() {}

fn main() {}
