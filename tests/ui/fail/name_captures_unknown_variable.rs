use configurable_redlock::redlock;

#[redlock(name = "job:{idd}", timeout = -1, silent)]
async fn job(id: u64) -> u64 {
    id
}

fn main() {
    let _ = job;
}
