//! Waiting statistics in the Python library's format (a counter of waiters per stats name and
//! a registry of every stats key that ever had waiters), made crash-safe by a live set of
//! entries, one per process and stats name, weighted by the waiters each counts, that expire
//! unless refreshed; and the reader that reports contended locks. The sum of the weights also
//! tells the acquire script how many of the counted waiters are foreign (see `acquire.lua`).
//!
//! Writers use the first master (the Python library also writes to one master per process);
//! the reader sums over all masters.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;
use uuid::Uuid;

use crate::{
    LockError,
    backend::Backend,
    keys::{COUNTER_PREFIX, PLACE_TTL, companion_key, waiting_key},
    master::{CallError, Master},
    rt,
    scripts::{self, ScriptCall},
};

/// The list of every stats key that has had waiters (JSON strings, as Python's `json.dumps`).
pub const REGISTRY_KEY: &str = "ConfigurableLockKeys";

/// A contended lock, as the reader reports it.
///
/// ```no_run
/// # async fn run(redlock: redlock_runtime::Redlock) -> Result<(), redlock_runtime::LockError> {
/// for contended in redlock.waiting().await? {
///     println!("{}: {} waiting", contended.stats_name, contended.waiters);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contended {
    /// The stats name (the lock name unless a `stats_name` was given).
    pub stats_name: String,
    /// Processes or tasks waiting now, summed over all masters, Python waiters included.
    pub waiters: i64,
}

/// What `stats.lua` does (its `ARGV[1]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// Make this process's entry count so many waiters (zero: count them out); register the
    /// stats name once.
    Set(u64),
    /// Uncount the dead, and return the count.
    Read,
}

/// Runs the stats script for one operation on one master; `entry` is empty for a read.
async fn stats_call(
    master: &Arc<Master>,
    counter: &str,
    op: Op,
    entry: &str,
) -> Result<i64, CallError> {
    let place_ttl_ms = u64::try_from(PLACE_TTL.as_millis()).unwrap_or(u64::MAX);
    let inserted = format!("Inserted.{counter}");
    // Borrowed by the request, which a broken connection may send twice.
    let inserted = &inserted;
    // In a cluster the registry keys lie in other slots than the counter: the script keeps to
    // the counter's slot and the registry is written after it, with the Python library's own
    // two commands (`SET NX` keeps it free of duplicates).
    let register_apart = master.is_cluster;
    let (op_name, waiters) = match op {
        Op::Set(waiters) => ("set", waiters),
        Op::Read => ("read", 0),
    };
    master
        .call(|mut connection| async move {
            let (live, weights, ours) = (
                companion_key(counter, "live"),
                companion_key(counter, "weights"),
                companion_key(counter, "ours"),
            );
            let call = if register_apart {
                ScriptCall::new(&scripts::STATS, &[&counter, &live, &weights, &ours])
            } else {
                ScriptCall::new(
                    &scripts::STATS,
                    &[&counter, &live, &weights, &ours, inserted, &REGISTRY_KEY],
                )
            };
            let count = call
                .arg(op_name)
                .arg(entry)
                .arg(place_ttl_ms)
                .arg(json_string(counter))
                .arg(waiters)
                .invoke::<i64>(&mut connection)
                .await?;
            if register_apart && waiters > 0 {
                let first: Option<String> = redis::cmd("SET")
                    .arg(inserted)
                    .arg(1)
                    .arg("NX")
                    .query_async(&mut connection)
                    .await?;
                if first.is_some() {
                    redis::cmd("RPUSH")
                        .arg(REGISTRY_KEY)
                        .arg(json_string(counter))
                        .query_async::<()>(&mut connection)
                        .await?;
                }
            }
            Ok(count)
        })
        .await
}

/// The waiters of one client, by stats name. Each name is counted in Redis by one entry of
/// this process, which a task of its own keeps in step with the count here and alive: the
/// Redis work of waiting statistics grows with waiting processes, not with waiting tasks.
#[derive(Debug, Default)]
pub(crate) struct Waiters(Mutex<HashMap<Arc<str>, Count>>);

#[derive(Debug)]
struct Count {
    waiters: u64,
    /// Wakes the task that writes the count.
    changed: Arc<Notify>,
    /// Held from a waiter's end until the count written includes it: the process finishes
    /// counting its waiters out before it exits.
    counting_out: Option<rt::Work>,
}

impl Waiters {
    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Count>> {
        rt::lock(&self.0)
    }
}

/// Counts one waiter from creation until drop, whatever ends the wait: the lock acquired, the
/// deadline passed, the future cancelled (also by its runtime shutting down) or a panic.
pub(crate) struct WaitingStats {
    waiters: Arc<Waiters>,
    stats_name: Arc<str>,
}

impl WaitingStats {
    /// Starts counting a waiter for `stats_name`, on the first master (the Python library
    /// also writes to one master).
    pub(crate) fn begin(waiters: &Arc<Waiters>, backend: &Backend, stats_name: &str) -> Self {
        let mut counts = waiters.lock();
        let stats_name = match counts.get_key_value(stats_name) {
            Some((stats_name, _)) => Arc::clone(stats_name),
            None => {
                let stats_name: Arc<str> = stats_name.into();
                let changed = Arc::new(Notify::new());
                counts.insert(
                    Arc::clone(&stats_name),
                    Count {
                        waiters: 0,
                        changed: Arc::clone(&changed),
                        counting_out: None,
                    },
                );
                rt::spawn(keep_counted(
                    Arc::clone(waiters),
                    Arc::clone(&backend.masters[0]),
                    Arc::clone(&stats_name),
                    changed,
                ));
                stats_name
            }
        };
        if let Some(count) = counts.get_mut(&stats_name) {
            count.waiters += 1;
            count.changed.notify_one();
        }
        drop(counts);
        Self {
            waiters: Arc::clone(waiters),
            stats_name,
        }
    }
}

impl Drop for WaitingStats {
    fn drop(&mut self) {
        let mut counts = self.waiters.lock();
        if let Some(count) = counts.get_mut(&self.stats_name) {
            count.waiters -= 1;
            count.counting_out.get_or_insert_with(rt::Work::start);
            count.changed.notify_one();
        }
    }
}

/// How long the count of a stats name may lag behind its waiters: a process counts a waiter
/// only once it has waited this long, and the changes meanwhile make one write, so that a
/// process whose waits come and go (a hot lock) writes its count a few times a second, not
/// twice per wait, and a wait shorter than this (most waits on a hot lock) is never written.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

/// The task that keeps this process's entry for `stats_name` in step with its waiters: it
/// writes the count after [`COALESCE`], then at most once per [`COALESCE`] while it changes,
/// and refreshes the entry while it counts anyone; it ends once the count written is zero and
/// nobody came.
async fn keep_counted(
    waiters: Arc<Waiters>,
    master: Arc<Master>,
    stats_name: Arc<str>,
    changed: Arc<Notify>,
) {
    let entry = Uuid::new_v4().hyphenated().to_string();
    let counter = waiting_key(&stats_name);
    // What the server counts for this entry: nothing until the first write.
    let mut written = 0;
    let mut refresh_at = tokio::time::Instant::now();
    tokio::time::sleep(COALESCE).await;
    loop {
        let (count, counting_out) = {
            let mut counts = waiters.lock();
            let Some(count) = counts.get_mut(&stats_name) else {
                return;
            };
            (count.waiters, count.counting_out.take())
        };
        let now = tokio::time::Instant::now();
        if written != count || (count > 0 && now >= refresh_at) {
            if let Err(error) = stats_call(&master, &counter, Op::Set(count), &entry).await {
                tracing::debug!(master = %master.label, %counter, count, %error, "redlock: waiting statistics not updated; a stale entry expires and the count is repaired");
            }
            written = count;
            refresh_at = now + PLACE_TTL / 3;
        }
        drop(counting_out);
        if count == 0 {
            let mut counts = waiters.lock();
            if counts
                .get(&stats_name)
                .is_some_and(|count| count.waiters == 0)
            {
                counts.remove(&stats_name);
                return;
            }
            continue;
        }
        tokio::select! {
            () = changed.notified() => tokio::time::sleep(COALESCE).await,
            () = tokio::time::sleep_until(refresh_at) => {}
        }
    }
}

/// Every contended lock with its live waiters (see `Redlock::waiting`).
pub(crate) async fn read(backend: &Backend) -> Result<Vec<Contended>, LockError> {
    let masters = &backend.masters;
    let mut failures = Vec::new();
    let mut counters: Vec<String> = Vec::new();
    for master in masters {
        let listed = master
            .call(|mut connection| async move {
                redis::cmd("LRANGE")
                    .arg(REGISTRY_KEY)
                    .arg(0)
                    .arg(-1)
                    .query_async::<Vec<String>>(&mut connection)
                    .await
            })
            .await;
        match listed {
            Ok(entries) => counters.extend(entries.iter().filter_map(|entry| json_unstring(entry))),
            Err(error) => failures.push(master.failure(&error)),
        }
    }
    if failures.len() == masters.len() {
        return Err(LockError::Unavailable {
            name: REGISTRY_KEY.into(),
            quorum: 1,
            masters: masters.len(),
            failures,
        });
    }
    counters.sort_unstable();
    counters.dedup();
    let mut contended = Vec::new();
    for counter in counters {
        let Some(stats_name) = counter.strip_prefix(COUNTER_PREFIX) else {
            continue;
        };
        let mut waiters = 0;
        for master in masters {
            // A read also uncounts the waiters whose entry expired.
            if let Ok(count) = stats_call(master, &counter, Op::Read, "").await {
                waiters += count;
            }
        }
        if waiters > 0 {
            contended.push(Contended {
                stats_name: stats_name.to_owned(),
                waiters,
            });
        }
    }
    Ok(contended)
}

/// `text` as a JSON string the way Python's `json.dumps` writes it: quoted, with non-ASCII
/// characters escaped as `\uXXXX` (surrogate pairs beyond the BMP).
pub(crate) fn json_string(text: &str) -> String {
    let mut json = String::with_capacity(text.len() + 2);
    json.push('"');
    for c in text.chars() {
        match c {
            '"' => json.push_str("\\\""),
            '\\' => json.push_str("\\\\"),
            '\n' => json.push_str("\\n"),
            '\r' => json.push_str("\\r"),
            '\t' => json.push_str("\\t"),
            '\u{8}' => json.push_str("\\b"),
            '\u{c}' => json.push_str("\\f"),
            ' '..='~' => json.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    json.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    json.push('"');
    json
}

/// The text of a JSON string (the inverse of [`json_string`]); `None` where Python's
/// `json.loads` would not read a string either: an unescaped quote or control character, an
/// unknown escape, a `\u` without four hex digits. (A lone surrogate, which `json.loads`
/// reads, is `None` too: a Rust string cannot hold it.)
pub(crate) fn json_unstring(json: &str) -> Option<String> {
    let json = json.trim_matches([' ', '\t', '\n', '\r']);
    let inner = json.strip_prefix('"')?.strip_suffix('"')?;
    let mut units: Vec<u16> = Vec::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' || c < ' ' {
            return None;
        }
        if c != '\\' {
            units.extend(c.encode_utf16(&mut [0; 2]).iter());
            continue;
        }
        let unit = match chars.next()? {
            '"' => u16::from(b'"'),
            '\\' => u16::from(b'\\'),
            '/' => u16::from(b'/'),
            'b' => 0x8,
            'f' => 0xc,
            'n' => u16::from(b'\n'),
            'r' => u16::from(b'\r'),
            't' => u16::from(b'\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                if hex.len() != 4 || !hex.chars().all(|digit| digit.is_ascii_hexdigit()) {
                    return None;
                }
                u16::from_str_radix(&hex, 16).ok()?
            }
            _ => return None,
        };
        units.push(unit);
    }
    String::from_utf16(&units).ok()
}

#[cfg(test)]
mod tests {
    use super::{json_string, json_unstring};

    #[test]
    fn escapes_like_python_json_dumps() {
        // Expected values written by `json.dumps` of CPython 3.11.
        assert_eq!(
            json_string("Waiting.ConfigurableLock.a"),
            r#""Waiting.ConfigurableLock.a""#
        );
        assert_eq!(json_string("q\"b\\s"), r#""q\"b\\s""#);
        assert_eq!(json_string("žaba"), r#""\u017eaba""#);
        assert_eq!(json_string("😀\n\u{1}"), r#""\ud83d\ude00\n\u0001""#);
        assert_eq!(json_string("\u{7f}"), r#""\u007f""#);
    }

    #[test]
    fn reads_back_what_python_writes() {
        for text in [
            "Waiting.ConfigurableLock.a",
            "q\"b\\s",
            "žaba",
            "😀\n\u{1}",
            "\u{7f}",
        ] {
            assert_eq!(json_unstring(&json_string(text)).as_deref(), Some(text));
        }
        assert_eq!(json_unstring(r#""a\/b""#).as_deref(), Some("a/b"));
        assert_eq!(json_unstring("not json"), None);
        assert_eq!(
            json_unstring(" \"a\"\n").as_deref(),
            Some("a"),
            "JSON whitespace around"
        );
        // What Python's `json.loads` refuses.
        for refused in [
            r#""\u41""#,
            r#""\u+041""#,
            r#""\x41""#,
            r#""a"b""#,
            "\"tab\there\"",
            r#""\"#,
        ] {
            assert_eq!(json_unstring(refused), None, "{refused}");
        }
    }
}
