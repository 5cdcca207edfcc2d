use configurable_redlock::redlock;

#[redlock(name = "count", timeout = -1)]
fn count() -> u32 {
    1
}

fn main() {
    let _ = count;
}
