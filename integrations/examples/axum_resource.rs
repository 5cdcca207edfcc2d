//! Requests for one resource serialized across servers: `cargo run -p redlock-integrations
//! --example axum_resource`.
//!
//! Two axum servers (each with its own client, as two processes on two machines would be)
//! take `PUT /resources/{id}` behind `RedlockLayer`, which locks `resource:<path>` for each
//! request and waits up to 10 s for it; a request that cannot get the lock in time answers
//! 409, one that meets an outage 503 (`status_of`). The example sends 10 concurrent updates of one resource, alternating between the two
//! servers, and shows that no two ever ran at once. Uses `REDLOCK_URLS` / `REDIS_URL` when
//! set, else a private `redis-server`.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    extract::{Path, Request, State},
    http::StatusCode,
    routing::put,
};
use locks::{LockError, Redlock, layer::RedlockLayer};
use redlock_runtime::test_util::env_or_private_server;
use tower::{BoxError, ServiceBuilder};

/// How many updates run now, and the most that ever ran at once (shared by both servers only
/// to show it here; across machines, the lock is what makes it 1).
#[derive(Default)]
struct Updates {
    running: AtomicU32,
    most_at_once: AtomicU32,
}

async fn update(State(updates): State<Arc<Updates>>, Path(id): Path<u32>) -> String {
    let now = updates.running.fetch_add(1, Ordering::SeqCst) + 1;
    updates.most_at_once.fetch_max(now, Ordering::SeqCst);
    // Read, modify, write the resource: the critical section.
    tokio::time::sleep(Duration::from_millis(20)).await;
    updates.running.fetch_sub(1, Ordering::SeqCst);
    format!("resource {id} updated")
}

/// The answer to a lock error: the layer's errors arrive as `BoxError`, so the `LockError`
/// inside is found with `downcast_ref`. Contention is the client's to retry (409); an outage
/// or a split vote is ours (503).
fn status_of(error: &BoxError) -> StatusCode {
    match error.downcast_ref::<LockError>() {
        Some(LockError::Timeout { .. }) => StatusCode::CONFLICT,
        Some(LockError::Unavailable { .. } | LockError::SplitVote { .. }) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// One server: the route behind the lock, on a free port; returns its address.
async fn serve(redlock: Redlock, updates: Arc<Updates>) -> std::io::Result<String> {
    let locked = ServiceBuilder::new()
        // A lock error (not acquired in time, masters down) becomes a response: axum needs
        // `HandleErrorLayer` for any layer whose service can fail.
        .layer(HandleErrorLayer::new(|error: BoxError| async move {
            (status_of(&error), error.to_string())
        }))
        .layer(
            RedlockLayer::new(redlock, |request: &Request| {
                format!("resource:{}", request.uri().path())
            })
            .timeout(10),
        )
        // The routes never fail (`Infallible`); the layer's errors are `BoxError`s.
        .map_err(BoxError::from);
    let app = Router::new()
        .route("/resources/{id}", put(update))
        .with_state(updates)
        .route_layer(locked);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?.to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(address)
}

/// A minimal HTTP/1.1 `PUT` with no body: the status line of the answer.
async fn put_request(address: &str, path: &str) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(address).await?;
    let request = format!(
        "PUT {path} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await?;
    Ok(answer.lines().next().unwrap_or_default().to_owned())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let Ok((urls, _private_server)) = env_or_private_server().map_err(|error| eprintln!("{error}"))
    else {
        std::process::exit(1);
    };
    let updates = Arc::new(Updates::default());
    let servers = [
        serve(Redlock::new(&urls)?, Arc::clone(&updates)).await?,
        serve(Redlock::new(&urls)?, Arc::clone(&updates)).await?,
    ];
    println!("two servers: {servers:?}");
    let requests: Vec<_> = (0..10)
        .map(|n| {
            let address = servers[n % 2].clone();
            tokio::spawn(async move { put_request(&address, "/resources/7").await })
        })
        .collect();
    for request in requests {
        println!("{}", request.await??);
    }
    let most = updates.most_at_once.load(Ordering::SeqCst);
    println!("updates of resource 7 running at once, at most: {most}");
    assert_eq!(most, 1, "the lock serializes the updates across servers");
    Ok(())
}
