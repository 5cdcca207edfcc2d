//! The attribute with the facade renamed in Cargo.toml (`locks = { package =
//! "configurable-redlock" }`): `crate = "::locks"` tells the expansion where the runtime is.

use locks::{LockError, Redlock, redlock};
use redlock_runtime::test_util::Masters;

#[redlock(name = "renamed:{id}", crate = "::locks", timeout = -1, client = client)]
async fn job(client: &Redlock, id: u32) -> Result<u32, LockError> {
    Ok(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attribute_resolves_a_renamed_facade() {
    let masters = Masters::start(1);
    let client = Redlock::new(masters.urls()).unwrap();
    assert_eq!(job(&client, 7).await.unwrap(), 7);
    // Held by another client: the expansion's timeout path resolves too.
    let other = Redlock::new(masters.urls()).unwrap();
    let held = other.lock("renamed:7").await.unwrap();
    assert!(matches!(
        job(&client, 7).await,
        Err(LockError::Timeout { .. })
    ));
    held.release().await.unwrap();
}
