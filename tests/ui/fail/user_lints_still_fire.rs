//! The expansion hides none of the user's own lints.
#![deny(dead_code, unused_variables)]

use configurable_redlock::redlock;

#[redlock(name = "never-called", timeout = -1, silent)]
async fn never_called(id: u64) -> u64 {
    let unused = id;
    0
}

fn main() {}
