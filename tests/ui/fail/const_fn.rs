use configurable_redlock::redlock;

#[redlock(name = "a")]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer;
}
