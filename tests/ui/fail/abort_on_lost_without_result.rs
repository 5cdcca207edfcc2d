use configurable_redlock::redlock;

#[redlock(name = "a", abort_on_lost)]
async fn job() -> u32 {
    1
}

#[redlock(name = "b", abort_on_lost)]
fn sync_job() -> Result<u32, configurable_redlock::LockError> {
    Ok(1)
}

fn main() {}
