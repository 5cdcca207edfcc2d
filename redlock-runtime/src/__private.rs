//! What `#[redlock]` expansions call: every decision lives here, so expansions stay thin.

use std::{marker::PhantomData, panic::Location, sync::OnceLock, time::Duration};

use crate::{
    LockError, LockGuard, Redlock, Timeout, blocking,
    guard::log_failed_release,
    throttle::{Throttle, Verdict},
};

pub use crate::Timeout::{After, Forever, Skip};

/// The options of one `#[redlock(...)]`, evaluated at each call.
#[derive(Debug)]
pub struct LockSpec {
    pub name: String,
    pub timeout: Timeout,
    pub auto_release_time: Duration,
    pub stats_name: Option<String>,
    /// Renew the lock while the body runs.
    pub auto_extend: bool,
    /// Keep waiting statistics.
    pub stats: bool,
    /// A holder asking again gets a nested guard.
    pub reentrant: bool,
    /// Kept at least this long after it is taken (zero: none).
    pub min_hold: Duration,
    /// How many holders at once: 1 (a lock) or a semaphore's permits.
    pub permits: usize,
}

/// Whatever a `client = …` option may name: an async or blocking client, by value, by
/// reference, or behind a `LazyLock` / `Arc` / `Box`.
#[diagnostic::on_unimplemented(
    message = "`client = …` must name a `Redlock` or a `blocking::Redlock`, not `{Self}`",
    label = "expected a `Redlock`, a `blocking::Redlock`, or a reference, `LazyLock`, `Arc` or `Box` of one"
)]
pub trait Client {
    fn redlock(&self) -> &Redlock;
}

impl Client for Redlock {
    fn redlock(&self) -> &Redlock {
        self
    }
}

impl Client for blocking::Redlock {
    fn redlock(&self) -> &Redlock {
        self.as_async()
    }
}

impl<C: Client + ?Sized> Client for &C {
    fn redlock(&self) -> &Redlock {
        (**self).redlock()
    }
}

impl<C: Client, F: FnOnce() -> C> Client for std::sync::LazyLock<C, F> {
    fn redlock(&self) -> &Redlock {
        (**self).redlock()
    }
}

impl<C: Client + ?Sized> Client for std::sync::Arc<C> {
    fn redlock(&self) -> &Redlock {
        (**self).redlock()
    }
}

impl<C: Client + ?Sized> Client for Box<C> {
    fn redlock(&self) -> &Redlock {
        (**self).redlock()
    }
}

/// The client of a `client = …` option.
pub fn client<C: Client + ?Sized>(client: &C) -> Result<&Redlock, LockError> {
    Ok(client.redlock())
}

/// The process-wide client of functions without a `client` option: `Redlock::from_env()`,
/// created on first use.
pub fn default_client() -> Result<&'static Redlock, LockError> {
    static CLIENT: OnceLock<Result<Redlock, LockError>> = OnceLock::new();
    CLIENT
        .get_or_init(Redlock::from_env)
        .as_ref()
        .map_err(Clone::clone)
}

fn request(client: &Redlock, spec: LockSpec) -> crate::LockRequest {
    let request = client
        .semaphore(spec.name, spec.permits)
        .timeout(spec.timeout)
        .auto_release_time(spec.auto_release_time)
        .auto_extend(spec.auto_extend)
        .stats(spec.stats)
        .reentrant(spec.reentrant)
        .min_hold(spec.min_hold);
    match spec.stats_name {
        Some(stats_name) => request.stats_name(stats_name),
        None => request,
    }
}

/// Acquires the lock of an `async fn`.
pub async fn acquire(
    client: Result<&Redlock, LockError>,
    spec: LockSpec,
) -> Result<LockGuard, LockError> {
    request(client?, spec).await
}

/// Acquires the lock of a plain `fn`, through the blocking API.
pub fn acquire_blocking(
    client: Result<&Redlock, LockError>,
    spec: LockSpec,
) -> Result<blocking::LockGuard, LockError> {
    blocking::LockRequest::from(request(client?, spec)).acquire()
}

/// Runs the body of an `abort_on_lost` function: its result, or `Err(LockError::Lost)` (the
/// body future dropped at its next `.await`) as soon as the guard learns the lock is lost.
pub async fn abort_on_lost<R, F>(guard: &LockGuard, body: F) -> R
where
    F: std::future::Future<Output = R>,
    R: LostResult,
{
    tokio::select! {
        biased;
        output = body => output,
        () = guard.lost() => R::lock_error(LockError::Lost { name: guard.name().to_owned() }),
    }
}

/// Releases after the body of an `async fn`. The body's result stands: a release that fails
/// cannot undo work already done, so it is reported as a `tracing` error.
pub async fn release(guard: LockGuard) {
    let name = guard.name().to_owned();
    if let Err(error) = guard.release().await {
        log_failed_release(&name, &error, "the body");
    }
}

/// Releases after the body of a plain `fn`; see [`release`].
pub fn release_blocking(guard: blocking::LockGuard) {
    let name = guard.name().to_owned();
    if let Err(error) = guard.release() {
        log_failed_release(&name, &error, "the body");
    }
}

/// The return value of a `silent` function whose lock was not acquired.
#[diagnostic::on_unimplemented(
    message = "`silent` returns `{Self}::default()` when the lock is not acquired, but `{Self}` does not implement `Default`",
    label = "`silent` needs a return type (or `Ok` type) that implements `Default`",
    note = "remove `silent` and return `Result<_, E>` with `E: From<LockError>`, or implement `Default`"
)]
pub trait SilentDefault {
    fn silent_default() -> Self;
}

impl<T: Default> SilentDefault for T {
    fn silent_default() -> Self {
        T::default()
    }
}

/// A return type that can say the lock was not taken: `Result<T, E>` with `E: From<LockError>`,
/// however it is spelled (`io::Result<T>`, `type JobResult<T> = Result<T, JobError>`…).
#[diagnostic::on_unimplemented(
    message = "this `timeout` can end without the lock, but the function returns `{Self}`, which cannot say so",
    label = "can end without the lock",
    note = "return `Result<_, E>` with `E: From<LockError>`, add `silent` to return `Default::default()` instead, or use `timeout = 0` to wait until acquired"
)]
pub trait LockResult {
    fn lock_error(error: LockError) -> Self;
}

impl<T, E: From<LockError>> LockResult for Result<T, E> {
    fn lock_error(error: LockError) -> Self {
        Err(E::from(error))
    }
}

/// A return type that `abort_on_lost` can end with `Err(LockError::Lost)`: see [`LockResult`].
#[diagnostic::on_unimplemented(
    message = "`abort_on_lost` returns `Err(LockError::Lost)`, but the function returns `{Self}`, which cannot say so",
    label = "needs a `Result` return type",
    note = "return `Result<_, E>` with `E: From<LockError>`"
)]
pub trait LostResult: LockResult {}

impl<T, E: From<LockError>> LostResult for Result<T, E> {}

/// Not acquired, not `silent`, a timeout that can end: the error, converted.
pub fn fail<R: LockResult>(error: LockError) -> R {
    R::lock_error(error)
}

/// The return type of a `#[redlock]` function, so that the expansion decides by type (aliases
/// resolved), not by spelling, what a failure to take the lock returns: method resolution
/// tries the impls on `Returns<R>` ([`ReturnsResult`], [`SilentResult`]: any `Result`)
/// before those on `&Returns<R>` ([`ReturnsOther`], [`SilentOther`]: any other type).
#[derive(Debug)]
pub struct Returns<R>(PhantomData<fn() -> R>);

impl<R> Returns<R> {
    pub const NEW: Self = Self(PhantomData);
}

/// Not acquired while waiting forever, a `Result`: the error, converted (see [`unrecoverable`]).
/// The bound is the method's, so that any `Result` takes this impl and one whose error type
/// cannot take a `LockError` is a compile error, not a panic.
pub trait ReturnsResult<T, E> {
    fn forever_failure(&self, error: LockError) -> Result<T, E>
    where
        E: From<LockError>;
}

impl<T, E> ReturnsResult<T, E> for Returns<Result<T, E>> {
    fn forever_failure(&self, error: LockError) -> Result<T, E>
    where
        E: From<LockError>,
    {
        Err(E::from(error))
    }
}

/// Not acquired while waiting forever, any other type: [`unrecoverable`].
pub trait ReturnsOther<R> {
    fn forever_failure(&self, error: LockError) -> R;
}

impl<R> ReturnsOther<R> for &Returns<R> {
    fn forever_failure(&self, error: LockError) -> R {
        unrecoverable(error)
    }
}

/// Not acquired, `silent`, a `Result`: [`skip_or_fail`]. The bounds are the method's, as for
/// [`ReturnsResult`]: an `Ok` type without a default is reported by [`SilentDefault`].
pub trait SilentResult<T, E> {
    fn silent_failure(&self, error: LockError) -> Result<T, E>
    where
        T: SilentDefault,
        E: From<LockError>;
}

impl<T, E> SilentResult<T, E> for Returns<Result<T, E>> {
    fn silent_failure(&self, error: LockError) -> Result<T, E>
    where
        T: SilentDefault,
        E: From<LockError>,
    {
        skip_or_fail(error)
    }
}

/// Not acquired, `silent`, any other type: [`skip`]. Its bound is the method's, so that this
/// impl is always found and a type without a default is reported by [`SilentDefault`].
pub trait SilentOther<R> {
    fn silent_failure(&self, error: LockError) -> R
    where
        R: SilentDefault;
}

impl<R> SilentOther<R> for &Returns<R> {
    fn silent_failure(&self, error: LockError) -> R
    where
        R: SilentDefault,
    {
        skip(error)
    }
}

/// Not acquired, `Result` return, `silent`: `Ok(T::default())` when another client holds the
/// lock; any other failure is still returned, so that `silent` never hides an outage.
pub fn skip_or_fail<T: SilentDefault, E: From<LockError>>(error: LockError) -> Result<T, E> {
    match error {
        LockError::Timeout { .. } => Ok(T::silent_default()),
        other => Err(E::from(other)),
    }
}

/// Not acquired, other return type, `silent`: `T::default()`; failures other than "held by
/// another client" are reported as `tracing` errors, and the body never runs unlocked. A
/// function called in a loop during an outage fails on every call: each of its call sites
/// (one per attributed function) logs each distinct failure once per 10 s, with how many were
/// not logged meanwhile (DEBUG in between).
#[track_caller]
pub fn skip<T: SilentDefault>(error: LockError) -> T {
    static LOGGED: Throttle<(&Location<'static>, String)> = Throttle::new();
    if !matches!(error, LockError::Timeout { .. }) {
        // The error's kind: its details (masters, durations) change with every attempt.
        let what = format!("{:?}", std::mem::discriminant(&error));
        match LOGGED.admit((Location::caller(), what)) {
            Verdict::First => {
                tracing::error!(%error, "redlock: lock not acquired; the body is skipped");
            }
            Verdict::Again { repeats } => {
                tracing::error!(%error, skipped_since_last_error = repeats, "redlock: lock not acquired; the body is skipped");
            }
            Verdict::Quiet => {
                tracing::debug!(%error, "redlock: lock not acquired; the body is skipped");
            }
        }
    }
    T::silent_default()
}

/// Not acquired with `timeout = 0` and a return type that cannot carry an error: waiting
/// forever retried every backend failure for the outage timeout, so only a misconfiguration
/// (an empty formatted name, an invalid `REDLOCK_URLS`, a wrong password…) or an outage longer
/// than that gets here. The body must not run unlocked, and the error must not go unheard.
pub fn unrecoverable<T>(error: LockError) -> T {
    panic!(
        "#[redlock]: cannot take the lock, and this function's return type cannot report it: {error}"
    )
}
