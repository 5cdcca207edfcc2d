use configurable_redlock::redlock;

#[redlock(name = "a", client = "redis://127.0.0.1")]
async fn job() {}

fn main() {
    let _ = job;
}
