//! Memory after a burst of waiters: N tasks wait for one held lock, are all served, and the
//! process's resident memory and its live heap (every allocation counted by a wrapping global
//! allocator) are printed before, while waiting and after.
//!
//! `cargo run --release --manifest-path bench/Cargo.toml --bin burst_memory [-- N]` (N = 100,000 by default).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, Ordering},
    time::{Duration, Instant},
};

use configurable_redlock::Redlock;
use redlock_runtime::test_util::Masters;

/// The system allocator, counting the bytes in use.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to the system allocator unchanged; only a counter is kept.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_mb() -> f64 {
    LIVE.load(Ordering::Relaxed) as f64 / 1_048_576.0
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let waiters: usize = std::env::args()
        .nth(1)
        .map_or(100_000, |arg| arg.parse().expect("a number of waiters"));
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();
    redlock
        .lock("warm-up")
        .await
        .unwrap()
        .release()
        .await
        .unwrap();
    println!("| burst | RSS | live heap |\n|---|---|---|");
    for round in 1..=2 {
        println!(
            "| {round}: before | {:.1} MB | {:.2} MB |",
            rss_mb(),
            live_mb()
        );
        let held = redlock.lock("burst").await.unwrap();
        let tasks: Vec<_> = (0..waiters)
            .map(|_| {
                let redlock = redlock.clone();
                tokio::spawn(async move {
                    let guard = redlock.lock("burst").stats(false).await.unwrap();
                    guard.release().await.unwrap();
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "| {round}: {waiters} waiting | {:.1} MB | {:.2} MB |",
            rss_mb(),
            live_mb()
        );
        let started = Instant::now();
        held.release().await.unwrap();
        for task in tasks {
            task.await.unwrap();
        }
        let served = started.elapsed();
        // Background releases and the line's bookkeeping settle.
        tokio::time::sleep(Duration::from_secs(5)).await;
        println!(
            "| {round}: all served in {served:.1?} | {:.1} MB | {:.2} MB |",
            rss_mb(),
            live_mb()
        );
    }
}
