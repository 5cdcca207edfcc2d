use configurable_redlock::redlock;

struct Job {
    id: u64,
}

// `format!` cannot capture a field: the error says how to write it instead.
#[redlock(name = "job:{job.id}", timeout = -1, silent)]
async fn run(job: &Job) -> u64 {
    job.id
}

fn main() {}
