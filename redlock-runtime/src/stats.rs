//! Waiting statistics in the Python library's format: a counter of waiters per stats name and
//! a registry of every stats key that ever had waiters.
//!
//! They live on the first master (the Python library also writes them to one master per
//! process); readers sum over all masters.

use std::sync::Arc;

use tokio::{runtime::Handle, task::JoinHandle};

use crate::{config::Shared, master::Master, scripts};

/// The list of every stats key that has had waiters (JSON strings, as Python's `json.dumps`).
pub const REGISTRY_KEY: &str = "ConfigurableLockKeys";

/// The waiting counter of a stats name: `Waiting.ConfigurableLock.<stats_name>`.
///
/// ```
/// assert_eq!(redlock_runtime::waiting_key("emails"), "Waiting.ConfigurableLock.emails");
/// ```
pub fn waiting_key(stats_name: &str) -> String {
    format!("Waiting.ConfigurableLock.{stats_name}")
}

/// Counts one waiter from creation until drop, whatever ends the wait: the lock acquired, the
/// deadline passed, the future cancelled or a panic.
pub(crate) struct WaitingStats {
    master: Arc<Master>,
    counter: Arc<str>,
    runtime: Handle,
    /// The increment, running on its own so that the wait is not delayed by it; yields whether
    /// it may have been applied (and so must be matched by a decrement).
    increment: Option<JoinHandle<bool>>,
}

impl WaitingStats {
    /// Starts counting a waiter for `stats_name`. Must be called inside a tokio runtime.
    pub(crate) fn begin(shared: &Shared, stats_name: &str) -> Self {
        let master = Arc::clone(&shared.masters[0]);
        let counter: Arc<str> = waiting_key(stats_name).into();
        let inserted = format!("Inserted.{counter}");
        let entry = json_string(&counter);
        let runtime = Handle::current();
        let increment = runtime.spawn({
            let (master, counter) = (Arc::clone(&master), Arc::clone(&counter));
            async move {
                let counter_key = Arc::clone(&counter);
                let reply = master
                    .call(|mut connection| async move {
                        scripts::STATS_BEGIN
                            .key(&*counter_key)
                            .key(inserted)
                            .key(REGISTRY_KEY)
                            .arg(entry)
                            .invoke_async::<i64>(&mut connection)
                            .await
                    })
                    .await;
                match reply {
                    Ok(_) => true,
                    Err(error) => {
                        tracing::warn!(master = %master.label, %counter, %error, "redlock: cannot count a waiter");
                        error.maybe_applied()
                    }
                }
            }
        });
        Self {
            master,
            counter,
            runtime,
            increment: Some(increment),
        }
    }
}

impl Drop for WaitingStats {
    fn drop(&mut self) {
        let Some(increment) = self.increment.take() else {
            return;
        };
        let (master, counter) = (Arc::clone(&self.master), Arc::clone(&self.counter));
        // The decrement waits for the increment, and then rides the same connection, so the
        // two always apply in order.
        self.runtime.spawn(async move {
            if !increment.await.unwrap_or(true) {
                return;
            }
            let counter = &counter;
            let reply = master
                .call(|mut connection| async move {
                    redis::cmd("DECRBY")
                        .arg(&**counter)
                        .arg(1)
                        .query_async::<i64>(&mut connection)
                        .await
                })
                .await;
            if let Err(error) = reply {
                tracing::warn!(master = %master.label, %counter, %error, "redlock: cannot uncount a waiter");
            }
        });
    }
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

#[cfg(test)]
mod tests {
    use super::json_string;

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
}
