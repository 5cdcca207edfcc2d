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
    scripts,
};

/// The lock key, as the Python library names it (pottery prefixes `redlock:`).
pub(crate) fn lock_key(name: &str) -> String {
    format!("redlock:ConfigurableLock.{name}")
}

/// The clock-drift allowance of the Redlock spec: 1% of the TTL plus 2 ms.
pub(crate) fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// The result of one attempt round over all masters.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// A quorum accepted our value; the lock is ours until `valid_until`.
    Acquired { valid_until: Instant },
    /// A quorum is impossible because enough masters answered that another client holds it.
    Busy,
    /// A quorum is impossible because masters failed (or answered too late to leave validity).
    Unavailable(Vec<MasterFailure>),
}

/// Tries once to set `key` to `value` on a quorum of masters, undoing any partial success.
pub(crate) async fn attempt(
    shared: &Shared,
    key: &Arc<str>,
    value: &Arc<str>,
    ttl: Duration,
) -> Attempt {
    let masters = &shared.masters;
    let quorum = shared.quorum();
    // Masters that may hold our value: must be undone if the attempt fails.
    let mut maybe_set = vec![false; masters.len()];
    let (mut granted, mut refused) = (0, 0);
    let mut failures = Vec::new();
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
    let started = Instant::now();

    let stragglers = fan_out(
        masters,
        |master| {
            let (key, value) = (Arc::clone(key), Arc::clone(value));
            async move {
                master
                    .call(|mut connection| async move {
                        redis::cmd("SET")
                            .arg(&*key)
                            .arg(&*value)
                            .arg("NX")
                            .arg("PX")
                            .arg(ttl_ms)
                            .query_async::<Option<String>>(&mut connection)
                            .await
                            .map(|ok| ok.is_some())
                    })
                    .await
            }
        },
        |index, reply| {
            match reply {
                Ok(true) => {
                    granted += 1;
                    maybe_set[index] = true;
                }
                Ok(false) => refused += 1,
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
            master: format!("{granted} of {} masters", masters.len()),
            error: format!("granted after {elapsed:?}, leaving no validity of a {ttl:?} TTL"),
        });
    }
    // Failed: undo every master that may hold our value, including late replies.
    for (master, _) in masters.iter().zip(&maybe_set).filter(|(_, set)| **set) {
        spawn_undo(shared.background.start(key), master, key, value);
    }
    // The stragglers' ticket keeps this process's next attempt on the key waiting for them.
    let late = (
        masters.clone(),
        Arc::clone(key),
        Arc::clone(value),
        Arc::clone(&shared.background),
        shared.background.start(key),
    );
    stragglers.finish_in_background(move |index, reply| {
        let (masters, key, value, background, _stragglers) = &late;
        let maybe_set = match reply {
            Ok(set) => set,
            Err(error) => error.maybe_applied(),
        };
        if maybe_set {
            spawn_undo(background.start(key), &masters[index], key, value);
        }
    });
    if granted >= quorum || failures.len() > masters.len() - quorum {
        Attempt::Unavailable(failures)
    } else {
        Attempt::Busy
    }
}

/// Deletes our value from one master in the background: the undo of a failed attempt. It rides
/// the same connection as the `SET`, so it cannot overtake it.
fn spawn_undo(ticket: Ticket, master: &Arc<Master>, key: &Arc<str>, value: &Arc<str>) {
    let (master, key, value) = (Arc::clone(master), Arc::clone(key), Arc::clone(value));
    tokio::spawn(async move {
        let _ticket = ticket;
        let (key, value) = (&key, &value);
        let undone = master
            .call(|mut connection| async move {
                scripts::RELEASE
                    .key(&**key)
                    .arg(&**value)
                    .invoke_async::<i64>(&mut connection)
                    .await
            })
            .await;
        if let Err(error) = undone {
            tracing::warn!(master = %master.label, %key, %error, "redlock: could not undo a failed attempt; the key expires with its TTL");
        }
    });
}
