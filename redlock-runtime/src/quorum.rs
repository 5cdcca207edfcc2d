//! Where the quorum is decided: one request fanned out to every master in parallel, a decision
//! as soon as the outcome is certain, and the stragglers finished in the background.

use std::{future::Future, pin::Pin, sync::Arc};

use futures_util::{StreamExt, stream::FuturesUnordered};

use crate::master::{CallError, Master};

type Reply<T> = (usize, Result<T, CallError>);
type Pending<T> = FuturesUnordered<Pin<Box<dyn Future<Output = Reply<T>> + Send>>>;

/// What a tally says after each reply.
pub(crate) enum Verdict {
    /// More replies are needed.
    Undecided,
    /// The outcome is certain; replies still in flight do not matter to the caller.
    Decided,
}

/// Sends `request` to every master at once and feeds each reply to `tally` until it decides.
///
/// Returns the requests still in flight at the decision: the caller hands them to
/// [`Stragglers::finish_in_background`] rather than dropping them, which could cancel a command
/// before it is written and leave its fate unknown.
pub(crate) async fn fan_out<T, R, Fut>(
    masters: &[Arc<Master>],
    request: R,
    mut tally: impl FnMut(usize, Result<T, CallError>) -> Verdict,
) -> Stragglers<T>
where
    R: Fn(Arc<Master>) -> Fut,
    Fut: Future<Output = Result<T, CallError>> + Send + 'static,
{
    // One master: nothing runs in parallel, so nothing is boxed or queued.
    if let [master] = masters {
        tally(0, request(Arc::clone(master)).await);
        return Stragglers(None);
    }
    let mut pending: Pending<T> = masters
        .iter()
        .enumerate()
        .map(|(index, master)| {
            let reply = request(Arc::clone(master));
            Box::pin(async move { (index, reply.await) }) as Pin<Box<_>>
        })
        .collect();
    while let Some((index, reply)) = pending.next().await {
        if let Verdict::Decided = tally(index, reply) {
            break;
        }
    }
    Stragglers(Some(pending))
}

/// Requests still in flight after a decision.
pub(crate) struct Stragglers<T>(Option<Pending<T>>);

impl<T: Send + 'static> Stragglers<T> {
    /// Lets the late requests finish in a background task that hands each reply to `on_reply`.
    pub(crate) fn finish_in_background(
        self,
        mut on_reply: impl FnMut(usize, Result<T, CallError>) + Send + 'static,
    ) {
        let Self(Some(mut pending)) = self else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        // On the caller's runtime: the requests' timers belong to it. Should it shut down first,
        // the late replies go unheard and a late `SET` expires with its TTL.
        let work = crate::rt::Work::start();
        tokio::spawn(async move {
            let _work = work;
            while let Some((index, reply)) = pending.next().await {
                on_reply(index, reply);
            }
        });
    }
}
