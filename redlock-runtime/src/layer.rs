//! `RedlockLayer`: the attribute's semantics for any `tower::Service` (feature `tower`). Each
//! request runs under a lock named from the request, so that a job queue's workers or an HTTP
//! service's instances on several machines never run the same critical section twice at once.

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use tower_layer::Layer;
use tower_service::Service;

use crate::{
    LockError, Redlock, Timeout, guard::log_failed_release, request::DEFAULT_AUTO_RELEASE_TIME,
};

/// Wraps a service so that each request runs under a distributed lock named from the request.
///
/// As with `#[redlock]`: `timeout` -1 (skip when held), 0 (wait until acquired, the default)
/// or N seconds; when the lock is not acquired the request gets the service's error
/// (`S::Error: From<LockError>`), or with [`silent`](Self::silent) the response it builds
/// when another client holds the lock (a backend failure is still an error: `silent` never
/// hides an outage). The watchdog renews the lock while the request runs; with
/// [`abort_on_lost`](Self::abort_on_lost) a request whose lock is lost is dropped at its next
/// `.await` and gets `LockError::Lost`.
///
/// ```no_run
/// use std::convert::Infallible;
///
/// use redlock_runtime::{LockError, Redlock, layer::RedlockLayer};
/// use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
///
/// struct Job {
///     id: u64,
/// }
///
/// # async fn run() -> Result<(), LockError> {
/// let redlock = Redlock::new(["redis://127.0.0.1:6379"])?;
/// let mut worker = ServiceBuilder::new()
///     // A job that another worker runs now is acknowledged as "skipped", not run twice.
///     .layer(
///         RedlockLayer::new(redlock, |job: &Job| format!("job:{}", job.id))
///             .timeout(-1)
///             .silent(|_job: Job| "skipped"),
///     )
///     .service(service_fn(|job: Job| async move {
///         // ... the job's work ...
///         Ok::<_, LockError>("done")
///     }));
/// let outcome = worker.ready().await?.call(Job { id: 7 }).await?;
/// # Ok(()) }
/// ```
pub struct RedlockLayer<K, F = NotSilent> {
    redlock: Redlock,
    name: Arc<K>,
    options: Options,
    silent: Arc<F>,
}

/// The options of each request's lock (see the `LockRequest` builders of the same names).
#[derive(Debug, Clone)]
struct Options {
    /// An invalid timeout is the error of every request (as `LockRequest::timeout` defers it).
    timeout: Result<Timeout, LockError>,
    auto_release_time: Duration,
    abort_on_lost: bool,
    stats_name: Option<String>,
    stats: bool,
    auto_extend: bool,
    min_hold: Duration,
    permits: usize,
}

/// A layer without [`RedlockLayer::silent`]: a held lock is the service's error.
#[derive(Debug, Clone, Copy, Default)]
pub struct NotSilent;

impl<K> RedlockLayer<K> {
    /// A layer that locks each request under the name `name(&request)`, waiting until acquired,
    /// with the default TTL (10 s, renewed while the request runs).
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |path: &String| format!("resource:{path}"));
    /// # }
    /// ```
    pub fn new(redlock: Redlock, name: K) -> Self {
        Self {
            redlock,
            name: Arc::new(name),
            options: Options {
                timeout: Ok(Timeout::Forever),
                auto_release_time: DEFAULT_AUTO_RELEASE_TIME,
                abort_on_lost: false,
                stats_name: None,
                stats: true,
                auto_extend: true,
                min_hold: Duration::ZERO,
                permits: 1,
            },
            silent: Arc::new(NotSilent),
        }
    }
}

impl<K, F> RedlockLayer<K, F> {
    /// How long a request waits for the lock: `-1` skips when held, `0` waits until acquired,
    /// `N` waits up to N seconds (or a [`Timeout`], or a `Duration`). Anything else (below -1,
    /// not finite) is `LockError::InvalidTimeout` for every request, as for a lock request.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("order:{id}")).timeout(2.5);
    /// # }
    /// ```
    pub fn timeout<T>(mut self, timeout: T) -> Self
    where
        T: TryInto<Timeout>,
        LockError: From<T::Error>,
    {
        self.options.timeout = timeout.try_into().map_err(LockError::from);
        self
    }

    /// The lock's TTL (at least 3 ms; default 10 s), renewed every third of it while the
    /// request runs.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("order:{id}"))
    ///     .auto_release_time(std::time::Duration::from_secs(5));
    /// # }
    /// ```
    pub fn auto_release_time(mut self, ttl: Duration) -> Self {
        self.options.auto_release_time = ttl;
        self
    }

    /// The name under which every request's waiters are counted (see
    /// [`LockRequest::stats_name`](crate::LockRequest::stats_name)). Default: each lock's
    /// name, which keeps three keys in Redis for good per contended name: give locks named
    /// per id one stats name, or turn statistics off.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer =
    ///     RedlockLayer::new(redlock, |id: &u64| format!("document:{id}")).stats_name("documents");
    /// # }
    /// ```
    pub fn stats_name(mut self, stats_name: impl Into<String>) -> Self {
        self.options.stats_name = Some(stats_name.into());
        self
    }

    /// Whether waiters are counted in the waiting statistics (default `true`; see
    /// [`LockRequest::stats`](crate::LockRequest::stats)).
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("document:{id}")).stats(false);
    /// # }
    /// ```
    pub fn stats(mut self, stats: bool) -> Self {
        self.options.stats = stats;
        self
    }

    /// Whether the lock is renewed while the request runs (default `true`; see
    /// [`LockRequest::auto_extend`](crate::LockRequest::auto_extend)).
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("order:{id}"))
    ///     .auto_release_time(std::time::Duration::from_secs(60))
    ///     .auto_extend(false);
    /// # }
    /// ```
    pub fn auto_extend(mut self, auto_extend: bool) -> Self {
        self.options.auto_extend = auto_extend;
        self
    }

    /// Keep each request's lock at least this long after it is taken (see
    /// [`LockRequest::min_hold`](crate::LockRequest::min_hold)): duplicates of a request that
    /// arrive within it skip or wait, even after the first one was answered.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("webhook:{id}"))
    ///     .timeout(-1)
    ///     .min_hold(std::time::Duration::from_secs(5));
    /// # }
    /// ```
    pub fn min_hold(mut self, min_hold: Duration) -> Self {
        self.options.min_hold = min_hold;
        self
    }

    /// Let up to `permits` requests of one name run at once, fleet-wide: each request takes a
    /// permit of the semaphore of that name (see
    /// [`Redlock::semaphore`](crate::Redlock::semaphore)). Default 1: a lock. Outside 1 to 64,
    /// `LockError::InvalidPermits` for every request.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// // At most 10 calls to the partner API at once, across every replica.
    /// let layer = RedlockLayer::new(redlock, |_: &String| "partner-api".to_owned()).permits(10);
    /// # }
    /// ```
    pub fn permits(mut self, permits: usize) -> Self {
        self.options.permits = permits;
        self
    }

    /// Drop a request whose lock is lost at its next `.await`, and answer it
    /// `Err(LockError::Lost)` (converted): its work must not go on unlocked.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("order:{id}")).abort_on_lost();
    /// # }
    /// ```
    pub fn abort_on_lost(mut self) -> Self {
        self.options.abort_on_lost = true;
        self
    }

    /// When another client holds the lock (its `timeout` ended), answer the request with
    /// `skipped(request)` instead of an error: the `silent` of `#[redlock]`. For a job queue,
    /// an acknowledgement, so that the duplicate is not retried.
    ///
    /// ```no_run
    /// # use redlock_runtime::{Redlock, layer::RedlockLayer};
    /// # fn run(redlock: Redlock) {
    /// let layer = RedlockLayer::new(redlock, |id: &u64| format!("order:{id}"))
    ///     .timeout(-1)
    ///     .silent(|id: u64| format!("order {id} is being handled elsewhere"));
    /// # }
    /// ```
    pub fn silent<S>(self, skipped: S) -> RedlockLayer<K, S> {
        RedlockLayer {
            redlock: self.redlock,
            name: self.name,
            options: self.options,
            silent: Arc::new(skipped),
        }
    }
}

impl<K, F> Clone for RedlockLayer<K, F> {
    fn clone(&self) -> Self {
        Self {
            redlock: self.redlock.clone(),
            name: Arc::clone(&self.name),
            options: self.options.clone(),
            silent: Arc::clone(&self.silent),
        }
    }
}

impl<K, F> fmt::Debug for RedlockLayer<K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockLayer")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S, K, F> Layer<S> for RedlockLayer<K, F> {
    type Service = RedlockService<S, K, F>;

    fn layer(&self, inner: S) -> Self::Service {
        RedlockService {
            inner,
            layer: self.clone(),
        }
    }
}

/// What a held lock answers a request: an error, or with [`RedlockLayer::silent`] a response.
pub trait Skipped<Request, Response> {
    /// The response to `request`, or `None` to answer the `LockError::Timeout`.
    fn skipped(&self, request: Request) -> Option<Response>;
}

impl<Request, Response> Skipped<Request, Response> for NotSilent {
    fn skipped(&self, _request: Request) -> Option<Response> {
        None
    }
}

impl<Request, Response, F> Skipped<Request, Response> for F
where
    F: Fn(Request) -> Response,
{
    fn skipped(&self, request: Request) -> Option<Response> {
        Some(self(request))
    }
}

/// A service wrapped by [`RedlockLayer`].
pub struct RedlockService<S, K, F = NotSilent> {
    inner: S,
    layer: RedlockLayer<K, F>,
}

impl<S: Clone, K, F> Clone for RedlockService<S, K, F> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            layer: self.layer.clone(),
        }
    }
}

impl<S: fmt::Debug, K, F> fmt::Debug for RedlockService<S, K, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedlockService")
            .field("inner", &self.inner)
            .field("layer", &self.layer)
            .finish()
    }
}

impl<S, K, F, Request> Service<Request> for RedlockService<S, K, F>
where
    S: Service<Request> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: From<LockError>,
    S::Response: Send,
    S::Error: Send,
    Request: Send + 'static,
    K: Fn(&Request) -> String,
    F: Skipped<Request, S::Response> + Send + Sync + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The service that was polled ready serves this request; a clone waits for the next.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let layer = &self.layer;
        let options = &layer.options;
        let timeout = match &options.timeout {
            Ok(timeout) => *timeout,
            Err(error) => {
                let error = error.clone();
                return Box::pin(async move { Err(error.into()) });
            }
        };
        let mut lock = layer
            .redlock
            .semaphore((layer.name)(&request), options.permits)
            .timeout(timeout)
            .auto_release_time(options.auto_release_time)
            .stats(options.stats)
            .auto_extend(options.auto_extend)
            .min_hold(options.min_hold);
        if let Some(stats_name) = &options.stats_name {
            lock = lock.stats_name(stats_name.clone());
        }
        let (silent, abort_on_lost) = (Arc::clone(&layer.silent), options.abort_on_lost);
        Box::pin(async move {
            let guard = match lock.await {
                Ok(guard) => guard,
                Err(error @ LockError::Timeout { .. }) => {
                    return silent.skipped(request).ok_or_else(|| error.into());
                }
                Err(error) => return Err(error.into()),
            };
            let response = if abort_on_lost {
                tokio::select! {
                    biased;
                    response = inner.call(request) => response,
                    () = guard.lost() => Err(LockError::Lost { name: guard.name().to_owned() }.into()),
                }
            } else {
                inner.call(request).await
            };
            let name = guard.name().to_owned();
            if let Err(error) = guard.release().await {
                log_failed_release(&name, &error, "the request");
            }
            response
        })
    }
}
