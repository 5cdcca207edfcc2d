//! `RedlockLayer` around a `tower::Service`, against real `redis-server`s: two workers that
//! each get every job never run one job twice at once, a skipped duplicate is answered (not
//! an error), a held lock without `silent` is the service's error, and a lost lock ends the
//! request.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use locks::{LockError, Redlock, layer::RedlockLayer, lock_key};
use redlock_runtime::test_util::Masters;
use tower::{BoxError, Service, ServiceBuilder, ServiceExt, service_fn};

#[derive(Debug, Clone, Copy)]
struct Job {
    id: u32,
}

/// What the job bodies saw: how many ran at once per job, at most, and how many ran.
#[derive(Default)]
struct Seen {
    inside: Mutex<Vec<u32>>,
    most_at_once: AtomicU32,
    ran: AtomicU32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_never_run_a_job_twice_at_once_and_acknowledge_the_duplicate() {
    let masters = Masters::start(3);
    let seen = Arc::new(Seen {
        inside: Mutex::new(vec![0; 20]),
        ..Seen::default()
    });
    // Two workers, each with a client of its own (as two processes), each given every job.
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let seen = Arc::clone(&seen);
            ServiceBuilder::new()
                .layer(
                    RedlockLayer::new(Redlock::new(masters.urls()).unwrap(), |job: &Job| {
                        format!("job:{}", job.id)
                    })
                    .timeout(-1)
                    .silent(|_job: Job| "skipped"),
                )
                .service(service_fn(move |job: Job| {
                    let seen = Arc::clone(&seen);
                    async move {
                        let at_once = {
                            let mut inside = seen.inside.lock().unwrap();
                            inside[job.id as usize] += 1;
                            inside[job.id as usize]
                        };
                        seen.most_at_once.fetch_max(at_once, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        seen.inside.lock().unwrap()[job.id as usize] -= 1;
                        seen.ran.fetch_add(1, Ordering::SeqCst);
                        Ok::<_, BoxError>("done")
                    }
                }))
        })
        .collect();
    let calls = workers.into_iter().flat_map(|worker| {
        (0..20).map(move |id| {
            let mut worker = worker.clone();
            tokio::spawn(async move { worker.ready().await?.call(Job { id }).await })
        })
    });
    let mut answers = Vec::new();
    for call in calls.collect::<Vec<_>>() {
        answers.push(call.await.unwrap().expect("every job answered"));
    }
    assert_eq!(seen.most_at_once.load(Ordering::SeqCst), 1);
    let done = answers.iter().filter(|answer| **answer == "done").count();
    assert_eq!(done as u32, seen.ran.load(Ordering::SeqCst));
    assert!(done >= 20, "each job ran at least once: {done}");
    assert_eq!(answers.len(), 40, "the skipped duplicates are answered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_the_services_error_without_silent() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(RedlockLayer::new(redlock.clone(), |id: &u32| format!("order:{id}")).timeout(-1))
        .service(service_fn(|id: u32| async move { Ok::<_, BoxError>(id) }));
    assert_eq!(service.ready().await.unwrap().call(1).await.unwrap(), 1);
    let held = Redlock::new(masters.urls())
        .unwrap()
        .lock("order:1")
        .await
        .unwrap();
    let refused = service.ready().await.unwrap().call(1).await.unwrap_err();
    assert!(
        matches!(
            refused.downcast_ref::<LockError>(),
            Some(LockError::Timeout { .. })
        ),
        "{refused}"
    );
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_on_lost_ends_a_request_whose_lock_is_lost() {
    let masters = Masters::start(1);
    let redlock = Redlock::new(masters.urls()).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(
            RedlockLayer::new(redlock, |id: &u32| format!("export:{id}"))
                // Renewed every 100 ms: the renewal after the theft finds it.
                .auto_release_time(Duration::from_millis(300))
                .abort_on_lost(),
        )
        .service(service_fn(|_id: u32| async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok::<_, BoxError>("finished")
        }));
    let request = tokio::spawn(async move { service.ready().await?.call(9).await });
    // Once the request holds the lock, another writer replaces the key.
    let key = lock_key("export:9");
    let mut connection = masters[0].connection();
    loop {
        let value: Option<String> = redis::cmd("GET").arg(&key).query(&mut connection).unwrap();
        if value.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let () = redis::cmd("SET")
        .arg(&key)
        .arg("intruder")
        .query(&mut connection)
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(30), request)
        .await
        .expect("the request ends long before its body would")
        .unwrap();
    let error = answer.unwrap_err();
    assert!(
        matches!(
            error.downcast_ref::<LockError>(),
            Some(LockError::Lost { .. })
        ),
        "{error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_timeout_is_each_requests_typed_error_not_a_panic() {
    // No server needed: the request fails before any I/O.
    let redlock = Redlock::new(["redis://127.0.0.1:1"]).unwrap();
    let mut service = ServiceBuilder::new()
        .layer(RedlockLayer::new(redlock, |job: &Job| format!("job:{}", job.id)).timeout(-2))
        .service(service_fn(|_job: Job| async { Ok::<_, LockError>("ran") }));
    for id in 0..2 {
        let err = service
            .ready()
            .await
            .unwrap()
            .call(Job { id })
            .await
            .unwrap_err();
        assert!(matches!(err, LockError::InvalidTimeout { .. }), "{err}");
    }
}
