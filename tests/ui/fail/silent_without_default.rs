use configurable_redlock::redlock;

struct Report {
    pages: u32,
}

#[redlock(name = "report", timeout = -1, silent)]
async fn report() -> Report {
    Report { pages: 1 }
}

fn main() {
    let _ = report;
}
