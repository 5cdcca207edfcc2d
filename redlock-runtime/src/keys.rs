//! The keys of a lock: the Python library's lock key, and ours beside it in the same Redis
//! Cluster hash slot (queue, leases, release channel, foreign waiters, fencing counter), with
//! the lifetimes of a queue place, of a grant and of a window for foreign waiters.
//!
//! Distinct names never share a key. The Python library's keys are the lock name after
//! `redlock:ConfigurableLock.`, the stats name after `Waiting.ConfigurableLock.`, that after
//! `Inserted.`, and `ConfigurableLockKeys`: no two of them meet, their prefixes differ. Ours all begin with `{`,
//! which none of those does, and name the key they belong to whole, so that no name reaches
//! them (see [`Companion`]).

use std::{sync::Arc, time::Duration};

/// The lock key, as the Python library names it (pottery prefixes `redlock:`).
pub(crate) fn lock_key(name: &str) -> String {
    const PREFIX: &str = "redlock:ConfigurableLock.";
    let mut key = String::with_capacity(PREFIX.len() + name.len());
    key.push_str(PREFIX);
    key.push_str(name);
    key
}

/// The waiting counter of a stats name: `Waiting.ConfigurableLock.<stats_name>`.
///
/// ```
/// assert_eq!(redlock_runtime::waiting_key("emails"), "Waiting.ConfigurableLock.emails");
/// ```
pub fn waiting_key(stats_name: &str) -> String {
    format!("{COUNTER_PREFIX}{stats_name}")
}

pub(crate) const COUNTER_PREFIX: &str = "Waiting.ConfigurableLock.";

/// The waiting counter of a stats name, as [`waiting_key`] names it, written straight into a
/// command's buffer (a release names it, and allocates nothing for it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Counter<'a>(pub(crate) &'a str);

impl<'a> Counter<'a> {
    /// A key of ours beside the counter (see [`companion_key`]); the prefix holds no braces,
    /// so the counter's hash tag is the stats name's.
    pub(crate) fn companion(self, suffix: &'static str) -> Companion<'a> {
        Companion {
            prefix: COUNTER_PREFIX,
            key: self.0,
            tag: hash_tag(self.0),
            suffix,
        }
    }
}

impl redis::ToRedisArgs for Counter<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        write_parts(out, &[COUNTER_PREFIX, self.0]);
    }
}

/// Writes one argument made of `parts` into a command's buffer.
fn write_parts<W: ?Sized + redis::RedisWrite>(out: &mut W, parts: &[&str]) {
    use std::io::Write;
    let mut arg = out.writer_for_next_arg();
    for part in parts {
        // Writing into the command's memory buffer cannot fail.
        let _ = arg.write_all(part.as_bytes());
    }
}

/// A key of ours beside `key`, in the same Redis Cluster hash slot, so that one script may
/// touch both. Redis hashes only a key's hash tag (the text between its first `{` and the
/// first `}` after it, when not empty). A key without a tag is wrapped in braces, which makes
/// all of it the tag: `{<key>}:<suffix>`. A key with tag `t` gives `{t}:<suffix>:<key>`: the
/// same tag, then the whole key. Either way the companion begins with `{` (no lock or
/// statistics key does), and its suffix and key can be read back from it, so two keys never
/// share a companion and no name's key is another's companion. Written straight into a
/// command's buffer, or displayed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Companion<'a> {
    /// Written before `key` (a constant prefix of the key, without braces).
    prefix: &'static str,
    key: &'a str,
    /// The hash tag of `prefix` + `key`, if it has one.
    tag: Option<&'a str>,
    suffix: &'static str,
}

pub(crate) fn companion_key<'a>(key: &'a str, suffix: &'static str) -> Companion<'a> {
    Companion {
        prefix: "",
        key,
        tag: hash_tag(key),
        suffix,
    }
}

impl Companion<'_> {
    fn parts(&self) -> [&str; 7] {
        match self.tag {
            Some(tag) => ["{", tag, "}:", self.suffix, ":", self.prefix, self.key],
            None => ["{", self.prefix, self.key, "}:", self.suffix, "", ""],
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
        write_parts(out, &self.parts());
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

/// How long a waiter keeps its place in a queue without an attempt: a waiter that was killed
/// leaves the queue (and the live-waiter counts) this long after its last sign of life.
pub(crate) const PLACE_TTL: Duration = Duration::from_secs(3);

/// The keys of one lock: the Python library's lock key, and ours beside it (see
/// [`Companion`]: `{<lock key>}:<suffix>` for names without a hash tag), made when used.
/// A permit of a semaphore is a lock of its own (see [`LockKeys::permit`]).
#[derive(Debug)]
pub(crate) struct LockKeys {
    pub(crate) lock: Arc<str>,
    /// For a semaphore's permit after the first: the semaphore's lock key, whose fencing
    /// counter every permit shares.
    semaphore: Option<Arc<str>>,
}

/// How long a release grants the lock to the first waiter of the queue before the grantee
/// extends it: long enough for the announcement to reach it and its extension to arrive, even
/// on a loaded machine; short enough that a waiter that died meanwhile stalls the lock only
/// this long (see `queue.lua`). It also bounds the validity a grantee may count on before its
/// extension is confirmed (see `wait/schedule.rs`). A waiter only slow to hear of it loses this turn,
/// not its place.
pub(crate) const GRANT: Duration = Duration::from_millis(250);

/// How long the head of a lock's queue may be overtaken (bounded barging, as Go's
/// `sync.Mutex`): while a waiter has been the head for less than this (since the grant that
/// made it the head, or since it started waiting if that came later), a release leaves the
/// lock free and offers it to the head, and the releaser's next request or a newcomer may take
/// it at once: no handoff between processes per acquisition while the lock is hot. Once the
/// head has waited this long, the next release hands the lock to it, and the others follow in
/// queue order. So a waiter waits at most this much per waiter ahead of it, beyond their
/// holds and handoffs; holds longer than this are handed over in strict order. Times are the
/// releasers' and the waiters' wall clocks, as the queue's order is: a skewed client clock
/// shifts this bound by the skew.
///
/// ```
/// assert_eq!(redlock_runtime::OVERTAKE_FOR, std::time::Duration::from_millis(5));
/// ```
pub const OVERTAKE_FOR: Duration = Duration::from_millis(5);

/// How long a release leaves the lock free for foreign waiters (the Python library's, which
/// poll every 0–200 ms and never join our queue) when it is their turn (see `acquire.lua`).
pub(crate) const FOREIGN_WINDOW: Duration = Duration::from_millis(250);

/// How often the head of our queue polls while foreign waiters wait or hold the lock, since
/// foreign holders release without announcing it.
pub(crate) const FOREIGN_POLL: Duration = Duration::from_millis(10);

impl LockKeys {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            lock: lock_key(name).into(),
            semaphore: None,
        })
    }

    /// The keys of permit `index` of the semaphore `name`: each permit is a lock, so that no
    /// more than one client holds it on a quorum (see README "Semaphores"). The first permit is
    /// the lock `name` itself (a semaphore of 1 is that lock); permit `i` is the lock key
    /// `{<lock key>}:permit:<i>`, in the lock key's Redis Cluster slot, beginning with `{` and
    /// ending with the index, so that no lock name and no other permit reaches it. A permit's
    /// key does not depend on how many permits there are: while a fleet changes `permits`
    /// from 3 to 2, at most 3 hold.
    pub(crate) fn permit(name: &str, index: usize) -> Arc<Self> {
        if index == 0 {
            return Self::new(name);
        }
        let semaphore: Arc<str> = lock_key(name).into();
        let lock = format!("{}:{index}", companion_key(&semaphore, "permit"));
        Arc::new(Self {
            lock: lock.into(),
            semaphore: Some(semaphore),
        })
    }

    fn companion(&self, suffix: &'static str) -> Companion<'_> {
        companion_key(&self.lock, suffix)
    }

    /// The waiters in ticket order.
    pub(crate) fn queue(&self) -> Companion<'_> {
        self.companion("queue")
    }

    /// When each waiter's place expires.
    pub(crate) fn expiries(&self) -> Companion<'_> {
        // Named `leases` in Redis since the first release: kept for mixed-version fleets.
        self.companion("leases")
    }

    /// Where a release is announced.
    pub(crate) fn channel(&self) -> Companion<'_> {
        self.companion("released")
    }

    /// The state of the lock's foreign waiters: their turns and windows (see `acquire.lua`).
    pub(crate) fn foreign(&self) -> Companion<'_> {
        self.companion("foreign")
    }

    /// Who heads the queue and since when, while it may be overtaken (see [`OVERTAKE_FOR`]):
    /// a hash that expires with that time.
    pub(crate) fn head(&self) -> Companion<'_> {
        self.companion("head")
    }

    /// The fencing-token counter (created only when a holder asks for a token); one per
    /// semaphore, so that its tokens increase across the holders of all its permits.
    pub(crate) fn fence(&self) -> Companion<'_> {
        companion_key(self.semaphore.as_deref().unwrap_or(&self.lock), "fence")
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::{Counter, LockKeys, companion_key, companions_share_slot, lock_key, waiting_key};
    use redis::ToRedisArgs;

    /// Every key that a lock name and a stats name give, each with what it is.
    fn keys_of(name: &str) -> Vec<(String, String)> {
        let lock = LockKeys::new(name);
        let counter = waiting_key(name);
        let mut keys = vec![
            ("lock".to_owned(), lock_key(name)),
            ("queue".into(), lock.queue().to_string()),
            ("leases".into(), lock.expiries().to_string()),
            ("released".into(), lock.channel().to_string()),
            ("foreign".into(), lock.foreign().to_string()),
            ("head".into(), lock.head().to_string()),
            ("fence".into(), lock.fence().to_string()),
            ("counter".into(), counter.clone()),
            ("inserted".into(), format!("Inserted.{counter}")),
        ];
        for suffix in ["live", "weights", "ours"] {
            keys.push((suffix.into(), companion_key(&counter, suffix).to_string()));
        }
        // The keys of a semaphore's permits (the first is the lock's), but its shared
        // fencing counter (the lock's, above).
        for index in [1, 2, 12] {
            let permit = LockKeys::permit(name, index);
            let kind = |what: &str| format!("permit {index} {what}");
            keys.push((kind("lock"), permit.lock.to_string()));
            keys.push((kind("queue"), permit.queue().to_string()));
            keys.push((kind("leases"), permit.expiries().to_string()));
            keys.push((kind("released"), permit.channel().to_string()));
            keys.push((kind("foreign"), permit.foreign().to_string()));
            keys.push((kind("head"), permit.head().to_string()));
            assert_eq!(permit.fence().to_string(), lock.fence().to_string());
        }
        keys
    }

    #[test]
    fn distinct_names_never_share_a_key() {
        // Names made of the pieces that could make one key look like another.
        const PIECES: [&str; 19] = [
            "{",
            "}",
            ":",
            "{}",
            "queue",
            "fence",
            "ours",
            "leases",
            "live",
            "j",
            "redlock:ConfigurableLock.",
            "Waiting.ConfigurableLock.",
            "Inserted.",
            "é",
            "\0",
            "ConfigurableLockKeys",
            "permit",
            "1",
            "2",
        ];
        let mut rng = fastrand::Rng::with_seed(26);
        let mut owners: HashMap<String, (String, String)> = HashMap::new();
        // The registry of the statistics (`stats::REGISTRY_KEY`).
        owners.insert(
            "ConfigurableLockKeys".to_owned(),
            ("registry".into(), String::new()),
        );
        let mut names: Vec<String> = [
            "j{1}",
            "j{1}:queue",
            "j{1}:fence",
            "s{t}",
            "s{t}:ours",
            "p:1",
            "p",
            "p:permit:1",
        ]
        .map(str::to_owned)
        .to_vec();
        names.extend((0..3_000).map(|_| {
            (0..rng.usize(1..7))
                .map(|_| PIECES[rng.usize(..PIECES.len())])
                .collect::<String>()
        }));
        names.sort();
        names.dedup();
        for name in &names {
            for (kind, key) in keys_of(name) {
                let owner = (kind.clone(), name.clone());
                if let Some(other) = owners.insert(key.clone(), owner.clone())
                    && other != owner
                {
                    panic!(
                        "`{key}` is the {} of {:?} and the {kind} of {name:?}",
                        other.0, other.1
                    );
                }
            }
        }
    }

    #[test]
    fn companion_keys_keep_the_lock_key_slot() {
        for (key, expected) in [
            (
                "redlock:ConfigurableLock.job",
                "{redlock:ConfigurableLock.job}:queue",
            ),
            (
                "redlock:ConfigurableLock.a{b}c",
                "{b}:queue:redlock:ConfigurableLock.a{b}c",
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
        // The waiting counter and ours beside it, written without allocating.
        for (stats_name, ours) in [
            ("jobs", "{Waiting.ConfigurableLock.jobs}:ours"),
            ("shard{7}", "{7}:ours:Waiting.ConfigurableLock.shard{7}"),
        ] {
            assert_eq!(
                Counter(stats_name).to_redis_args(),
                vec![waiting_key(stats_name).into_bytes()]
            );
            assert_eq!(Counter(stats_name).companion("ours").to_string(), ours);
            assert_eq!(
                Counter(stats_name).companion("ours").to_string(),
                companion_key(&waiting_key(stats_name), "ours").to_string()
            );
        }
        // A semaphore's permits after the first, in its lock key's slot.
        for (name, index, permit) in [
            ("job", 2, "{redlock:ConfigurableLock.job}:permit:2"),
            ("a{b}c", 1, "{b}:permit:redlock:ConfigurableLock.a{b}c:1"),
        ] {
            assert_eq!(&*LockKeys::permit(name, index).lock, permit);
        }
        assert_eq!(&*LockKeys::permit("job", 0).lock, lock_key("job"));
        assert!(!companions_share_slot("redlock:ConfigurableLock.a}b"));
        assert!(!companions_share_slot("redlock:ConfigurableLock.a{}b"));
    }
}
