use configurable_redlock::redlock;

#[derive(Debug)]
struct AppError;

// Waiting forever: a misconfiguration is returned as `Err`, so `AppError` must take it.
#[redlock(name = "a")]
async fn a() -> Result<u32, AppError> {
    Ok(1)
}

fn main() {}
