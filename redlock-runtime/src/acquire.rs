//! One acquisition attempt of the Redlock algorithm, and the undo of a failed one.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use crate::{
    MasterFailure,
    background::Ticket,
    config::Shared,
    master::Master,
    quorum::{Verdict, fan_out},
    rt,
    scripts::{self, ScriptCall},
};

/// The lock key, as the Python library names it (pottery prefixes `redlock:`).
pub(crate) fn lock_key(name: &str) -> String {
    const PREFIX: &str = "redlock:ConfigurableLock.";
    let mut key = String::with_capacity(PREFIX.len() + name.len());
    key.push_str(PREFIX);
    key.push_str(name);
    key
}

/// A key of ours beside `key`, in the same Redis Cluster hash slot, so that one script may
/// touch both. Redis hashes only a key's hash tag (the text between its first `{` and the
/// first `}` after it, when not empty): appending keeps `key`'s tag, and wrapping `key` in
/// braces makes all of it the tag. Written straight into a command's buffer, or displayed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Companion<'a> {
    key: &'a str,
    /// Whether `key` has a hash tag of its own.
    tagged: bool,
    suffix: &'static str,
}

pub(crate) fn companion_key<'a>(key: &'a str, suffix: &'static str) -> Companion<'a> {
    Companion {
        key,
        tagged: hash_tag(key).is_some(),
        suffix,
    }
}

impl Companion<'_> {
    fn parts(&self) -> [&str; 4] {
        if self.tagged {
            ["", self.key, ":", self.suffix]
        } else {
            ["{", self.key, "}:", self.suffix]
        }
    }
}

impl std::fmt::Display for Companion<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.parts().iter().try_for_each(|part| f.write_str(part))
    }
}

impl redis::ToRedisArgs for Companion<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        use std::io::Write;
        let mut arg = out.writer_for_next_arg();
        for part in self.parts() {
            // Writing into the command's memory buffer cannot fail.
            let _ = arg.write_all(part.as_bytes());
        }
    }
}

/// Whether [`companion_key`] lands in `key`'s slot: not when `key` has no hash tag yet holds a
/// `}` (as in `a}b` or `a{}b`), which would cut the wrapped tag short.
pub(crate) fn companions_share_slot(key: &str) -> bool {
    hash_tag(key).is_some() || !key.contains('}')
}

/// The hash tag of a key, as Redis Cluster reads it.
fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let after = &key[open + 1..];
    let close = after.find('}')?;
    (close > 0).then(|| &after[..close])
}

/// The clock-drift allowance of the Redlock spec: 1% of the TTL plus 2 ms.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// How long a waiter keeps its place in a queue without an attempt: a waiter that was killed
/// leaves the queue (and the live-waiter counts) this long after its last sign of life.
pub(crate) const WAITER_LEASE: Duration = Duration::from_secs(3);

/// The keys of one lock: the Python library's lock key, and ours beside it (see
/// [`companion_key`]: `{<lock key>}:<suffix>` for names without braces), made when used.
#[derive(Debug)]
pub(crate) struct LockKeys {
    pub(crate) lock: Arc<str>,
    /// Whether the lock key has a hash tag of its own (see [`Companion`]).
    tagged: bool,
}

/// How long a release reserves the lock for the first waiter of the queue: long enough for
/// its attempt to arrive, short enough that a waiter that died meanwhile blocks no one long.
pub(crate) const RESERVATION: Duration = Duration::from_secs(1);

impl LockKeys {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        let lock = lock_key(name);
        Arc::new(Self {
            tagged: hash_tag(&lock).is_some(),
            lock: lock.into(),
        })
    }

    fn companion(&self, suffix: &'static str) -> Companion<'_> {
        Companion {
            key: &self.lock,
            tagged: self.tagged,
            suffix,
        }
    }

    /// The waiters in ticket order.
    pub(crate) fn queue(&self) -> Companion<'_> {
        self.companion("queue")
    }

    /// When each waiter's place expires.
    pub(crate) fn leases(&self) -> Companion<'_> {
        self.companion("leases")
    }

    /// Where a release is announced.
    pub(crate) fn channel(&self) -> Companion<'_> {
        self.companion("released")
    }

    /// The fencing-token counter (created only when a holder asks for a token).
    pub(crate) fn fence(&self) -> Companion<'_> {
        self.companion("fence")
    }

    /// A call of a script that acts only if the lock holds `value`: `KEYS` = lock, fence,
    /// queue, leases; `ARGV[1]` = `value`, more arguments to follow.
    pub(crate) fn owned_call(&self, script: &'static redis::Script, value: &str) -> ScriptCall {
        ScriptCall::new(script, 4)
            .arg(&*self.lock)
            .arg(self.fence())
            .arg(self.queue())
            .arg(self.leases())
            .arg(value)
    }
}

/// A request that waits: its place in the lock's queue, the same on every master.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) id: Arc<str>,
    /// When the wait started (ms since the Unix epoch): earlier tickets go first.
    pub(crate) ticket: f64,
}

/// The result of one attempt round over all masters.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// A quorum accepted our value; the lock is ours until `valid_until`.
    Acquired { valid_until: Instant },
    /// A quorum is impossible because enough masters answered that another client holds it
    /// (or that earlier waiters go first).
    Busy {
        /// The shortest remaining TTL of the holder among the refusals (zero: free, but
        /// another waiter's turn).
        expires_in: Duration,
        /// How many waiters are ahead of us (the fewest among the refusals).
        ahead: u64,
    },
    /// A quorum is impossible because masters failed (or answered too late to leave validity).
    Unavailable(Vec<MasterFailure>),
}

/// Tries once to set the lock to `value` on a quorum of masters, undoing any partial success.
/// Without `waiter`, a plain `SET NX PX`; with one, the queued attempt of `acquire.lua`.
pub(crate) async fn attempt(
    shared: &Shared,
    keys: &Arc<LockKeys>,
    value: &Arc<str>,
    ttl: Duration,
    waiter: Option<&Waiter>,
) -> Attempt {
    let masters = &shared.masters;
    let quorum = shared.quorum();
    // Masters that may hold our value: must be undone if the attempt fails.
    let mut maybe_set = vec![false; masters.len()];
    let (mut granted, mut refused) = (0, 0);
    let (mut expires_in, mut ahead) = (u64::MAX, u64::MAX);
    let mut failures = Vec::new();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let (waiter_id, ticket): (Arc<str>, f64) = match waiter {
        Some(waiter) => (Arc::clone(&waiter.id), waiter.ticket),
        None => ("".into(), 0.0),
    };
    let lease_ms = WAITER_LEASE.as_millis() as u64;
    let started = Instant::now();

    let stragglers = fan_out(
        masters,
        |master| {
            let (keys, value, waiter_id) =
                (Arc::clone(keys), Arc::clone(value), Arc::clone(&waiter_id));
            async move {
                master
                    .call(|mut connection| async move {
                        if waiter_id.is_empty() {
                            // Not queued: exactly the Python library's `SET NX PX`.
                            let set: Option<String> = redis::Cmd::with_capacity(6, 256)
                                .arg("SET")
                                .arg(&*keys.lock)
                                .arg(&*value)
                                .arg("NX")
                                .arg("PX")
                                .arg(ttl_ms)
                                .query_async(&mut connection)
                                .await?;
                            return Ok((u8::from(set.is_some()), 0, 0));
                        }
                        ScriptCall::new(&scripts::ACQUIRE, 3)
                            .arg(&*keys.lock)
                            .arg(keys.queue())
                            .arg(keys.leases())
                            .arg(&*value)
                            .arg(ttl_ms)
                            .arg(&*waiter_id)
                            .arg(ticket)
                            .arg(lease_ms)
                            .invoke::<(u8, u64, u64)>(&mut connection)
                            .await
                    })
                    .await
            }
        },
        |index, reply| {
            match reply {
                Ok((1, _, _)) => {
                    granted += 1;
                    maybe_set[index] = true;
                }
                Ok((_, holder_ttl, rank)) => {
                    refused += 1;
                    expires_in = expires_in.min(holder_ttl);
                    ahead = ahead.min(rank);
                }
                Err(error) => {
                    maybe_set[index] = error.maybe_applied();
                    failures.push(masters[index].failure(&error));
                }
            }
            let impossible = refused + failures.len() > masters.len() - quorum;
            if granted >= quorum || impossible {
                Verdict::Decided
            } else {
                Verdict::Undecided
            }
        },
    )
    .await;

    let elapsed = started.elapsed();
    let validity = ttl
        .checked_sub(elapsed + drift(ttl))
        .filter(|validity| !validity.is_zero());
    if granted >= quorum {
        if let Some(validity) = validity {
            // A late `SET` on a minority holds our value too; the guard's release deletes it.
            stragglers.finish_in_background(|_, _| {});
            return Attempt::Acquired {
                valid_until: started + validity,
            };
        }
        failures.push(MasterFailure {
            misconfigured: false,
            master: format!("{granted} of {} masters", masters.len()),
            error: format!("granted after {elapsed:?}, leaving no validity of a {ttl:?} TTL"),
        });
    }
    // Failed: undo every master that may hold our value, including late replies.
    for (master, _) in masters.iter().zip(&maybe_set).filter(|(_, set)| **set) {
        spawn_undo(shared.background.start(&keys.lock), master, keys, value);
    }
    // The stragglers' ticket keeps this process's next attempt on the key waiting for them.
    let late = (
        masters.clone(),
        Arc::clone(keys),
        Arc::clone(value),
        Arc::clone(&shared.background),
        shared.background.start(&keys.lock),
    );
    stragglers.finish_in_background(move |index, reply| {
        let (masters, keys, value, background, _stragglers) = &late;
        let maybe_set = match reply {
            Ok((granted, _, _)) => granted == 1,
            Err(error) => error.maybe_applied(),
        };
        if maybe_set {
            spawn_undo(background.start(&keys.lock), &masters[index], keys, value);
        }
    });
    if granted >= quorum || failures.len() > masters.len() - quorum {
        Attempt::Unavailable(failures)
    } else {
        Attempt::Busy {
            expires_in: Duration::from_millis(expires_in),
            ahead,
        }
    }
}

/// Deletes our value from one master in the background: the undo of a failed attempt. It rides
/// the same connection as the `SET`, so it cannot overtake it.
fn spawn_undo(ticket: Ticket, master: &Arc<Master>, keys: &Arc<LockKeys>, value: &Arc<str>) {
    let (master, keys, value) = (Arc::clone(master), Arc::clone(keys), Arc::clone(value));
    rt::spawn_background(async move {
        let _ticket = ticket;
        let (keys, value) = (&keys, &value);
        let undone = master
            .call(|mut connection| async move {
                keys.owned_call(&scripts::RELEASE, value)
                    .arg(keys.channel())
                    .arg(RESERVATION.as_millis() as u64)
                    .invoke::<i64>(&mut connection)
                    .await
            })
            .await;
        if let Err(error) = undone {
            tracing::warn!(master = %master.label, key = %keys.lock, %error, "redlock: could not undo a failed attempt; the key expires with its TTL");
        }
    });
}

/// Removes a waiter that gave up from the queue on every master, in the background.
pub(crate) fn spawn_leave_queue(shared: &Shared, keys: &Arc<LockKeys>, waiter_id: &Arc<str>) {
    for master in &shared.masters {
        let (master, keys, id) = (Arc::clone(master), Arc::clone(keys), Arc::clone(waiter_id));
        rt::spawn_background(async move {
            let (keys, id) = (&keys, &id);
            let left = master
                .call(|mut connection| async move {
                    ScriptCall::new(&scripts::LEAVE_QUEUE, 3)
                        .arg(&*keys.lock)
                        .arg(keys.queue())
                        .arg(keys.leases())
                        .arg(&**id)
                        .arg(keys.channel())
                        .arg(RESERVATION.as_millis() as u64)
                        .invoke::<i64>(&mut connection)
                        .await
                })
                .await;
            if let Err(error) = left {
                tracing::debug!(master = %master.label, %error, "redlock: could not leave the queue; the place expires with its lease");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::{companion_key, companions_share_slot};
    use redis::ToRedisArgs;

    #[test]
    fn companion_keys_keep_the_lock_key_slot() {
        for (key, expected) in [
            (
                "redlock:ConfigurableLock.job",
                "{redlock:ConfigurableLock.job}:queue",
            ),
            (
                "redlock:ConfigurableLock.a{b}c",
                "redlock:ConfigurableLock.a{b}c:queue",
            ),
            (
                "redlock:ConfigurableLock.open{",
                "{redlock:ConfigurableLock.open{}:queue",
            ),
        ] {
            let companion = companion_key(key, "queue");
            assert_eq!(companion.to_string(), expected);
            assert_eq!(
                companion.to_redis_args(),
                vec![expected.as_bytes().to_vec()]
            );
            assert!(companions_share_slot(key), "{key}");
        }
        assert!(!companions_share_slot("redlock:ConfigurableLock.a}b"));
        assert!(!companions_share_slot("redlock:ConfigurableLock.a{}b"));
    }
}
