//! Wake-ups on release. A release publishes on the lock's channel, in one message, the ids of
//! the waiters it granted the lock to, space-separated (one for a mutex; none when it granted
//! nobody: see `release.lua` and `grant` in `mutex.lua`). Each process keeps one subscriber
//! connection per master, shared by all its waiters, and subscribes to a lock's channel only
//! while someone in the process waits for it, so memory stays flat however many distinct
//! names are locked. Each waiter learns how many releases were announced, and which masters
//! granted it the lock.
//!
//! A holder that never announces (the Python library's, which releases with a plain `DEL`; a
//! crashed process, whose key expires) is seen through client-side caching instead: the head
//! of the queue, when the holder may be foreign (see `wait::queued`), asks its process's key
//! tracker (one RESP3 connection per master, `CLIENT TRACKING ON`) to read the lock's key, and
//! Redis sends an invalidation as soon as the key is deleted, expires or changes: counted in
//! [`Seen::unannounced`], it wakes the head at once rather than at its fallback timer. A Redis
//! Cluster, or a server that speaks no RESP3 (before Redis 6), has no tracker: the timers and
//! the head's polling remain.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use futures_util::StreamExt;
use redis::{
    AsyncConnectionConfig, PushInfo, PushKind, RedisError, Value, aio::MultiplexedConnection,
};
use tokio::sync::{mpsc, oneshot, watch};

use crate::{backoff::Backoff, master::Master, rt};

/// What a subscriber task is asked to do, in order.
enum Command {
    /// Subscribe, then confirm.
    Subscribe(Arc<str>, oneshot::Sender<()>),
    Unsubscribe(Arc<str>),
}

/// How many releases of a lock were announced while this process watched it: running counts,
/// which a waiter compares between two readings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Seen {
    pub(crate) releases: u64,
    /// Those that granted the lock to nobody: left free for foreign waiters, or with nobody
    /// left in the queue.
    pub(crate) to_nobody: u64,
    /// Releases that left the lock free while our waiter at the head of the queue may still
    /// be overtaken (see `OVERTAKE_FOR`): counted apart from `releases`, as they move nobody
    /// else up.
    pub(crate) offers: u64,
    /// Offers to another process's waiter: they wake a waiter next in line to it, which
    /// attempts when the offer lapses (a head that never takes it, killed or paused).
    pub(crate) offered_elsewhere: u64,
    /// Changes of the lock's key that the key tracker saw (a release nobody announced, an
    /// expiry, any write), on keys a waiter asked it to watch.
    pub(crate) unannounced: u64,
}

impl Seen {
    /// Every announcement counted: releases and offers, to us or to others.
    pub(crate) fn heard(&self) -> u64 {
        self.releases + self.offers + self.offered_elsewhere
    }
}

/// The channels some waiter of this process watches, each with a count of releases seen.
#[derive(Debug, Default)]
struct Registry(Mutex<HashMap<Arc<str>, Interest>>);

#[derive(Debug)]
struct Interest {
    releases: watch::Sender<Seen>,
    /// The waiters of this process for the lock, each with the masters (see [`master_bit`])
    /// that announced a grant to it.
    waiters: Vec<(Arc<str>, u64)>,
    /// Bumped each time the last waiter leaves: a delayed unsubscribe goes ahead only if no
    /// waiter came and went since it was planned.
    idle_epoch: u64,
}

/// How long a channel stays subscribed after its last waiter left: a worker that waits on
/// the same lock again and again does not pay a SUBSCRIBE and an UNSUBSCRIBE every time.
const LINGER: Duration = Duration::from_secs(2);

impl Registry {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Interest>> {
        rt::lock(&self.0)
    }
}

/// The wake-up service of one client: its subscriber tasks start on first use.
#[derive(Debug)]
pub(crate) struct ReleaseNotices {
    masters: Vec<Arc<Master>>,
    registry: Arc<Registry>,
    subscribers: OnceLock<Vec<mpsc::UnboundedSender<Command>>>,
    trackers: OnceLock<Vec<mpsc::UnboundedSender<Track>>>,
    confirm_within: Duration,
}

/// A key for the tracker to watch until its next change: the lock's key, its release channel,
/// and the digest of the value the waiter saw (see `scripts::QueuedReply`).
#[derive(Debug)]
struct Track {
    key: Arc<str>,
    channel: Arc<str>,
    seen: u64,
}

/// One waiter's interest in a lock's releases; dropping it ends the interest.
#[derive(Debug)]
pub(crate) struct ReleaseWatch {
    notices: Arc<ReleaseNotices>,
    channel: Arc<str>,
    waiter: Arc<str>,
    releases: watch::Receiver<Seen>,
}

impl ReleaseNotices {
    /// `confirm_within`: how long a new waiter waits for its subscriptions before it attempts
    /// anyway.
    pub(crate) fn new(masters: Vec<Arc<Master>>, confirm_within: Duration) -> Self {
        Self {
            masters,
            registry: Arc::default(),
            subscribers: OnceLock::new(),
            trackers: OnceLock::new(),
            confirm_within,
        }
    }

    /// Starts watching `channel` for the releases and for the grants to `waiter`: subscribes
    /// on every master if no other waiter of this process already does, and waits (bounded)
    /// until the subscriptions are confirmed, so that the attempt that follows cannot miss a
    /// release.
    pub(crate) async fn watch(
        self: &Arc<Self>,
        channel: &Arc<str>,
        waiter: &Arc<str>,
    ) -> ReleaseWatch {
        let mut confirmations = Vec::new();
        let releases = {
            let mut registry = self.registry.lock();
            let interest = registry.entry(Arc::clone(channel)).or_insert_with(|| {
                for subscriber in self.subscribers() {
                    let (confirmed, confirmation) = oneshot::channel();
                    let _ = subscriber.send(Command::Subscribe(Arc::clone(channel), confirmed));
                    confirmations.push(confirmation);
                }
                Interest {
                    releases: watch::Sender::new(Seen::default()),
                    waiters: Vec::new(),
                    idle_epoch: 0,
                }
            });
            interest.waiters.push((Arc::clone(waiter), 0));
            interest.releases.subscribe()
        };
        let all_confirmed = futures_util::future::join_all(confirmations);
        let _ = tokio::time::timeout(self.confirm_within, all_confirmed).await;
        ReleaseWatch {
            notices: Arc::clone(self),
            channel: Arc::clone(channel),
            waiter: Arc::clone(waiter),
            releases,
        }
    }

    fn subscribers(&self) -> &[mpsc::UnboundedSender<Command>] {
        self.subscribers.get_or_init(|| {
            self.per_master(|index, master, commands, registry| {
                subscriber(index, master, commands, registry)
            })
        })
    }

    /// Starts one task per master, `task(index, master, commands, registry)`, and returns the
    /// senders of their commands.
    fn per_master<C, F, T>(&self, task: F) -> Vec<mpsc::UnboundedSender<C>>
    where
        F: Fn(usize, Arc<Master>, mpsc::UnboundedReceiver<C>, Arc<Registry>) -> T,
        T: std::future::Future<Output = ()> + Send + 'static,
    {
        self.masters
            .iter()
            .enumerate()
            .map(|(index, master)| {
                let (commands, received) = mpsc::unbounded_channel();
                crate::rt::spawn(task(
                    index,
                    Arc::clone(master),
                    received,
                    Arc::clone(&self.registry),
                ));
                commands
            })
            .collect()
    }
}

impl ReleaseNotices {
    /// Asks every master's key tracker to watch `key` (whose value had the digest `seen`) until
    /// it changes, and then to count an unannounced change on `channel` (see the module docs).
    fn track(&self, key: &Arc<str>, channel: &Arc<str>, seen: u64) {
        for tracker in self.trackers() {
            let _ = tracker.send(Track {
                key: Arc::clone(key),
                channel: Arc::clone(channel),
                seen,
            });
        }
    }

    fn trackers(&self) -> &[mpsc::UnboundedSender<Track>] {
        self.trackers.get_or_init(|| {
            self.per_master(|_, master, tracks, registry| tracker(master, tracks, registry))
        })
    }
}

impl ReleaseWatch {
    /// The releases announced so far (see [`Seen`]).
    pub(crate) fn releases_seen(&self) -> Seen {
        *self.releases.borrow()
    }

    /// The masters that announced a grant of the lock to this waiter (bit `i`: master `i`).
    pub(crate) fn grants(&self) -> u64 {
        let registry = self.notices.registry.lock();
        registry
            .get(&self.channel)
            .and_then(|interest| interest.waiters.iter().find(|(to, _)| *to == self.waiter))
            .map_or(0, |&(_, masters)| masters)
    }

    /// Watches the lock's `key`, whose holder had the digest `holder`, for a change that no
    /// release announces (see the module docs).
    pub(crate) fn watch_key(&self, key: &Arc<str>, holder: u64) {
        self.notices.track(key, &self.channel, holder);
    }

    /// Resolves at the next announced release.
    pub(crate) async fn next_release(&mut self) {
        if self.releases.changed().await.is_err() {
            // Cannot happen while this watch counts as a waiter; never spin if it does.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for ReleaseWatch {
    fn drop(&mut self) {
        let mut registry = self.notices.registry.lock();
        let Some(interest) = registry.get_mut(&self.channel) else {
            return;
        };
        if let Some(at) = interest
            .waiters
            .iter()
            .position(|(to, _)| *to == self.waiter)
        {
            interest.waiters.swap_remove(at);
        }
        if !interest.waiters.is_empty() {
            return;
        }
        interest.idle_epoch += 1;
        let epoch = interest.idle_epoch;
        drop(registry);
        // Weak: a client dropped meanwhile ends its subscribers now, not after the linger.
        let (notices, channel) = (Arc::downgrade(&self.notices), Arc::clone(&self.channel));
        crate::rt::spawn(async move {
            tokio::time::sleep(LINGER).await;
            if let Some(notices) = notices.upgrade() {
                notices.unsubscribe_if_idle(&channel, epoch);
            }
        });
    }
}

impl ReleaseNotices {
    /// Forgets `channel` and unsubscribes, unless a waiter came since the idle `epoch` began.
    fn unsubscribe_if_idle(&self, channel: &Arc<str>, epoch: u64) {
        let mut registry = self.registry.lock();
        let idle = registry
            .get(channel)
            .is_some_and(|interest| interest.waiters.is_empty() && interest.idle_epoch == epoch);
        if idle {
            registry.remove(channel);
            // Sent under the registry lock, so it is ordered with any new subscription.
            for subscriber in self.subscribers.get().into_iter().flatten() {
                let _ = subscriber.send(Command::Unsubscribe(Arc::clone(channel)));
            }
        }
    }
}

/// Master `index`'s bit in a set of masters (bit `i`: master `i`). Beyond 64 masters, none:
/// a grant there goes unseen, and the grantee's next attempt claims it.
pub(crate) fn master_bit(index: usize) -> u64 {
    u32::try_from(index)
        .ok()
        .and_then(|index| 1u64.checked_shl(index))
        .unwrap_or(0)
}

/// The waiters that one release message names: its space-separated ids (waiter ids are
/// UUIDs: they hold no space).
fn grantees(payload: &[u8]) -> impl Iterator<Item = &[u8]> {
    payload
        .split(|&byte| byte == b' ')
        .filter(|id| !id.is_empty())
}

/// What master `index` announced on a channel that `interest` watches: the grantees of a
/// release (none: left free), or an offer to the head of the queue (`-<id>`, see
/// [`Seen::offers`]).
fn announced(interest: &mut Interest, payload: &[u8], index: usize) {
    if let Some(head) = payload.strip_prefix(b"-") {
        let ours = interest.waiters.iter().any(|(id, _)| id.as_bytes() == head);
        interest.releases.send_modify(|seen| {
            if ours {
                seen.offers += 1;
            } else {
                seen.offered_elsewhere += 1;
            }
        });
        return;
    }
    for grantee in grantees(payload) {
        let mut waiters = interest.waiters.iter_mut();
        if let Some((_, masters)) = waiters.find(|(to, _)| to.as_bytes() == grantee) {
            *masters |= master_bit(index);
        }
    }
    // After the grants are noted: the waiters they wake see them.
    interest.releases.send_modify(|seen| {
        seen.releases += 1;
        seen.to_nobody += u64::from(payload.is_empty());
    });
}

/// One master's subscriber connection (master `index` of the client): carries out the commands
/// in order, routes each message to the waiters of its channel, and reconnects
/// (resubscribing) when it breaks.
async fn subscriber(
    index: usize,
    master: Arc<Master>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    registry: Arc<Registry>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    // Once the client is gone nobody waits: no reconnection (its server may be gone too).
    while !commands.is_closed() {
        let pubsub = match master.pubsub().await {
            Ok(pubsub) => pubsub,
            Err(error) => {
                master.warn(
                    "cannot open the release subscriber; waiters fall back to timers",
                    &error.to_string(),
                );
                // Keep the queue moving: a waiter must never wait on a subscription that cannot happen.
                let deadline = tokio::time::sleep(backoff.next());
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        command = commands.recv() => match command {
                            None => return,
                            Some(Command::Subscribe(_, confirmed)) => { let _ = confirmed.send(()); }
                            Some(Command::Unsubscribe(_)) => {}
                        },
                    }
                }
                continue;
            }
        };
        backoff.reset();
        let (mut sink, mut messages) = pubsub.split();
        let watched: Vec<Arc<str>> = registry.lock().keys().cloned().collect();
        let mut healthy = watched.is_empty()
            || sink
                .subscribe(watched.iter().map(|c| &**c).collect::<Vec<_>>())
                .await
                .is_ok();
        while healthy {
            tokio::select! {
                command = commands.recv() => match command {
                    None => return,
                    Some(Command::Subscribe(channel, confirmed)) => {
                        healthy = sink.subscribe(&*channel).await.is_ok();
                        let _ = confirmed.send(());
                    }
                    Some(Command::Unsubscribe(channel)) => {
                        healthy = sink.unsubscribe(&*channel).await.is_ok();
                    }
                },
                message = messages.next() => match message {
                    None => healthy = false,
                    Some(message) => {
                        let channel = message.get_channel_name();
                        if let Some(interest) = registry.lock().get_mut(channel) {
                            announced(interest, message.get_payload_bytes(), index);
                        }
                    }
                },
            }
        }
        tracing::debug!(master = %master.label, "redlock: release subscriber disconnected; reconnecting");
    }
}

/// One master's key tracker: reads the keys it is asked to watch on its RESP3 connection with
/// `CLIENT TRACKING ON`, and counts the invalidations Redis sends for them as unannounced
/// changes of their locks; reconnects when the connection breaks. Ends (and the waiters keep
/// their timers) where the master has no tracking: a Redis Cluster, a server before Redis 6.
async fn tracker(
    master: Arc<Master>,
    mut tracks: mpsc::UnboundedReceiver<Track>,
    registry: Arc<Registry>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    while !tracks.is_closed() {
        let Some(client) = master.tracking_client().await else {
            return;
        };
        let (connection, mut pushes) = match connect_tracking(client).await {
            Ok(connected) => connected,
            Err(error) if error.is_io_error() || error.is_timeout() => {
                tracing::debug!(master = %master.label, %error, "redlock: cannot open the key tracker; retrying");
                // Keys asked for meanwhile are not watched: their waiters keep their timers.
                let deadline = tokio::time::sleep(backoff.next());
                tokio::pin!(deadline);
                loop {
                    tokio::select! {
                        () = &mut deadline => break,
                        track = tracks.recv() => if track.is_none() { return },
                    }
                }
                continue;
            }
            Err(error) => {
                tracing::debug!(master = %master.label, %error, "redlock: no key tracking on this master (RESP3 and CLIENT TRACKING need Redis 6); waiters of foreign holders poll");
                return;
            }
        };
        backoff.reset();
        // The keys watched, each with the release channel of its lock.
        let mut watched: HashMap<Arc<str>, Arc<str>> = HashMap::new();
        loop {
            tokio::select! {
                track = tracks.recv() => {
                    let Some(track) = track else { return };
                    watched.insert(Arc::clone(&track.key), Arc::clone(&track.channel));
                    crate::rt::spawn(read_tracked(connection.clone(), track, Arc::clone(&registry)));
                }
                push = pushes.recv() => match push {
                    Some(PushInfo { kind: PushKind::Invalidate, data }) => {
                        for key in invalidated_keys(&data, &watched) {
                            if let Some(channel) = watched.remove(&*key) {
                                count_unannounced(&registry, &channel);
                            }
                        }
                    }
                    Some(PushInfo { kind: PushKind::Disconnection, .. }) | None => break,
                    Some(_) => {}
                },
            }
        }
        // The changes made while no connection tracked them went unseen: every waiter that
        // watched a key attempts once.
        for (_, channel) in watched.drain() {
            count_unannounced(&registry, &channel);
        }
        tracing::debug!(master = %master.label, "redlock: key tracker disconnected; reconnecting");
    }
}

/// A RESP3 connection that tracks the keys it reads, and the invalidations it receives.
async fn connect_tracking(
    client: Result<redis::Client, RedisError>,
) -> Result<(MultiplexedConnection, mpsc::UnboundedReceiver<PushInfo>), RedisError> {
    let (pushed, pushes) = mpsc::unbounded_channel();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_push_sender(pushed);
    let mut connection = client?
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    redis::cmd("CLIENT")
        .arg("TRACKING")
        .arg("ON")
        .query_async::<()>(&mut connection)
        .await?;
    Ok((connection, pushes))
}

/// Reads `track`'s key, which tracks it until its next change; a value other than the one
/// the waiter saw changed already, unannounced: counted at once.
async fn read_tracked(
    mut connection: MultiplexedConnection,
    track: Track,
    registry: Arc<Registry>,
) {
    let read: Result<Option<Vec<u8>>, _> = redis::cmd("GET")
        .arg(&*track.key)
        .query_async(&mut connection)
        .await;
    if let Ok(value) = read {
        let now = value.map_or(0, |value| crate::scripts::digest(&value));
        if now != track.seen {
            count_unannounced(&registry, &track.channel);
        }
    }
}

/// The watched keys that an invalidation names: all of them for a flush (`null`).
fn invalidated_keys(data: &[Value], watched: &HashMap<Arc<str>, Arc<str>>) -> Vec<Arc<str>> {
    match data.first() {
        Some(Value::Array(keys)) => keys
            .iter()
            .filter_map(|key| match key {
                Value::BulkString(key) => std::str::from_utf8(key).ok().map(Arc::from),
                _ => None,
            })
            .collect(),
        _ => watched.keys().cloned().collect(),
    }
}

fn count_unannounced(registry: &Registry, channel: &Arc<str>) {
    if let Some(interest) = registry.lock().get(channel) {
        interest.releases.send_modify(|seen| seen.unannounced += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::grantees;

    #[test]
    fn a_release_message_names_each_grantee_once_and_none_when_empty() {
        let named: Vec<&[u8]> = grantees(b"a1 b2 c3").collect();
        assert_eq!(named, [&b"a1"[..], b"b2", b"c3"]);
        // The mutex's message: one id.
        assert_eq!(grantees(b"a1").collect::<Vec<_>>(), [&b"a1"[..]]);
        // Left to foreign waiters, or nobody queued: no grantee.
        assert_eq!(grantees(b"").count(), 0);
    }
}
