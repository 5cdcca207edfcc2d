use configurable_redlock::redlock;

#[redlock(name = "a")]
struct Job;

fn main() {}
