//! One acquisition attempt of the Redlock algorithm, and the undo of a failed one.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use crate::{
    MasterFailure, MasterVote, Vote,
    backend::Backend,
    background::{BackgroundReleases, Ticket},
    keys::{Counter, LockKeys},
    master::{CallError, Handle, Master},
    quorum::{Holder, Refusal, Stragglers, Tally, Verdict, fan_out, validity},
    rt,
    scripts::{self, QueuedReply},
    wake::master_bit,
};

/// A waiting request's place in the lock's queue, the same on every master.
#[derive(Debug)]
pub(crate) struct Place {
    pub(crate) id: Arc<str>,
    /// When the wait started (ms since the Unix epoch): earlier tickets go first.
    pub(crate) ticket: f64,
    /// The stats name whose waiting counter foreign waiters of this lock count themselves in
    /// (the request's, as both libraries name it by default).
    pub(crate) stats_name: Arc<str>,
}

/// What a queued attempt learns when it is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Standing {
    /// How long until an attempt may succeed: the holder's remaining TTL (of a grant to the
    /// first waiter: until it lapses unless extended), at most the polling interval while
    /// foreign waiters wait or hold (zero: the lock is free, but another waiter's turn).
    pub(crate) expires_in: Duration,
    /// How many releases come before our turn (the holder's, and the waiters' ahead of us).
    pub(crate) releases: u64,
    /// Whether the next grant goes to the waiter just ahead of us: if that waiter lets it
    /// lapse (killed, paused), the lock is ours.
    pub(crate) next_in_line: bool,
    /// Digests of the holder's value on the masters that refused, combined (0: free there):
    /// see `scripts::QueuedReply`.
    pub(crate) holder: u64,
    /// Whether a script took the holder for a foreign one, which may release unannounced.
    pub(crate) foreign: bool,
}

/// The result of one attempt round over all masters.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// A quorum accepted our value; the lock is ours until `valid_until`.
    Acquired { valid_until: Instant },
    /// A quorum is impossible because masters answered that another client holds it (or
    /// that earlier waiters go first): on a quorum (`certain`), or on too few for a quorum
    /// but enough with the masters that failed or were not heard. A queued attempt learns the
    /// most hopeful standing among the refusals (the shortest TTL, the fewest waiters ahead);
    /// a plain `SET` nothing.
    /// `leads`: see [`Tally::leads`].
    Busy {
        standing: Option<Standing>,
        certain: bool,
        leads: bool,
        votes: Vec<MasterVote>,
    },
    /// A quorum is impossible, yet no other client can hold the lock: contenders that tried
    /// at the same moment split the votes (plain attempts only: each names the value it found).
    /// `leads`: see [`Tally::leads`].
    Split { leads: bool, votes: Vec<MasterVote> },
    /// A quorum is impossible because masters failed (or answered too late to leave validity).
    /// When masters inside their restart grace alone made it impossible, `votes_at` is when
    /// enough of them will vote again.
    Unavailable {
        failures: Vec<MasterFailure>,
        votes_at: Option<Instant>,
    },
}

/// One master's answer to an attempt.
#[derive(Debug)]
enum Answer {
    Granted,
    /// Granted, but fewer replicas than `Config::wait_for_replicas` confirmed it in time.
    Unreplicated {
        replicas: u64,
    },
    Refused {
        standing: Option<Standing>,
        holder: Holder,
    },
}

/// Tries once to set the lock to `value` on a quorum of masters, undoing any partial success.
/// Without a `place` in the queue, a plain `SET NX PX`; with one, the queued attempt of
/// `acquire.lua`.
pub(crate) async fn attempt(
    backend: &Backend,
    keys: &Arc<LockKeys>,
    value: &Arc<str>,
    ttl: Duration,
    place: Option<&Place>,
) -> Attempt {
    let masters = &backend.masters;
    let ask = Ask {
        keys: Arc::clone(keys),
        value: Arc::clone(value),
        ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        place: place.map(|place| {
            (
                Arc::clone(&place.id),
                place.ticket,
                Arc::clone(&place.stats_name),
            )
        }),
        // With one master a refusal is certain; with several, a plain `SET` also reads the
        // value it found, to tell a holder's quorum from a split vote.
        read_holder: masters.len() > 1,
        spare: masters.len() > backend.quorum(),
        replicas: backend.config.wait_for_replicas,
        replicas_wait: backend.config.master_timeout / 2,
    };
    let grace = backend.config.restart_grace.for_ttl(ttl);
    let mut round = Round::new(masters, ttl, &ask);
    let started = Instant::now();
    let cut_short = UndoIfCutShort {
        backend,
        keys,
        value,
    };
    let stragglers = fan_out(
        masters,
        |master| {
            let ask = ask.clone();
            async move { ask.on(&master, grace).await }
        },
        |index, reply| round.note(index, reply),
    )
    .await;
    // Not cut short: the round's conclusion undoes what it must (it holds only references).
    std::mem::forget(cut_short);
    round.conclude(backend, keys, value, started, stragglers)
}

/// An attempt dropped before its round concluded (its request cancelled: a `select!` that
/// lost, a timeout around it; a semaphore's wait for another permit that was granted first):
/// the masters that received its `SET` may grant it, with the TTL and nobody to release it.
/// Undone on every master, behind the attempt on that master's connection.
struct UndoIfCutShort<'a> {
    backend: &'a Backend,
    keys: &'a Arc<LockKeys>,
    value: &'a Arc<str>,
}

impl Drop for UndoIfCutShort<'_> {
    fn drop(&mut self) {
        for master in &self.backend.masters {
            let ticket = self.backend.background.start(&self.keys.lock);
            spawn_undo(ticket, master, self.keys, self.value, true);
        }
    }
}

impl Round<'_> {
    /// The outcome of the round that began at `started`: granted with validity left, or
    /// failed and undone on every master that may hold our value, late replies included.
    fn conclude(
        self,
        backend: &Backend,
        keys: &Arc<LockKeys>,
        value: &Arc<str>,
        started: Instant,
        stragglers: Stragglers<Answer>,
    ) -> Attempt {
        let Self {
            masters,
            ttl,
            mut tally,
            maybe_set,
            standing,
            votes,
            grace_ends,
            ..
        } = self;
        let elapsed = started.elapsed();
        if tally.granted() {
            if let Some(validity) = validity(ttl, elapsed) {
                // A late `SET` on a minority holds our value too; the guard's release deletes it.
                stragglers.finish_in_background(|_, _| {});
                return Attempt::Acquired {
                    valid_until: started + validity,
                };
            }
            tally.failed(MasterFailure::new(
                format!("{} of {} masters", tally.yes_count(), masters.len()),
                format!("granted after {elapsed:?}, leaving no validity of a {ttl:?} TTL"),
                false,
            ));
        }
        // A holder that won the round announces its release; when none did, the head of the
        // queue is offered the lock by the undo.
        let offer = tally.granted() || tally.refusal() != Refusal::Held;
        undo_everywhere(backend, masters, &maybe_set, keys, value, offer, stragglers);
        if tally.granted() || tally.impossible_by_failures() {
            let votes_at = (!tally.granted())
                .then(|| tally.votes_again_at(grace_ends))
                .flatten();
            return Attempt::Unavailable {
                failures: tally.into_failures(),
                votes_at,
            };
        }
        let votes = masters
            .iter()
            .zip(votes)
            .map(|(master, vote)| MasterVote {
                master: master.label.clone(),
                vote,
            })
            .collect();
        let leads = tally.leads(value);
        match tally.refusal() {
            // A queued refusal may mean waiters ahead, not a holder: the wait sorts it out.
            Refusal::Split if standing.is_none() => Attempt::Split { leads, votes },
            refusal => Attempt::Busy {
                standing,
                certain: refusal == Refusal::Held,
                leads,
                votes,
            },
        }
    }
}

/// After a failed round: undoes every master that may hold our `value`, those that replied
/// (`maybe_set`) at once and the stragglers when they reply; see `undo.lua` for `offer`.
fn undo_everywhere(
    backend: &Backend,
    masters: &[Arc<Master>],
    maybe_set: &[bool],
    keys: &Arc<LockKeys>,
    value: &Arc<str>,
    offer: bool,
    stragglers: Stragglers<Answer>,
) {
    for (master, _) in masters.iter().zip(maybe_set).filter(|(_, set)| **set) {
        spawn_undo(
            backend.background.start(&keys.lock),
            master,
            keys,
            value,
            offer,
        );
    }
    // The stragglers are issued: our next attempt cannot overtake them on any master. Until
    // a late grant's undo lands, our own old value refuses that attempt on that master only
    // (a slow master's vote), rather than every next attempt waiting for a paused master.
    let late = Late {
        masters: masters.to_vec(),
        keys: Arc::clone(keys),
        value: Arc::clone(value),
        background: Arc::clone(&backend.background),
        offer,
    };
    stragglers.finish_in_background(move |index, reply| {
        let maybe_set = match reply {
            Ok(answer) => matches!(answer, Answer::Granted | Answer::Unreplicated { .. }),
            Err(error) => error.maybe_applied(),
        };
        if maybe_set {
            late.undo(index);
        }
    });
}

/// What one attempt asks of each master.
#[derive(Clone)]
struct Ask {
    keys: Arc<LockKeys>,
    value: Arc<str>,
    ttl_ms: u64,
    /// The waiter's id, ticket and stats name, when it is queued.
    place: Option<(Arc<str>, f64, Arc<str>)>,
    /// Whether a plain `SET` reads the value that refused it.
    read_holder: bool,
    /// Whether a quorum can do without any one master's vote (see `Master::call_voting`).
    spare: bool,
    /// `Config::wait_for_replicas`, and how long a master waits for them.
    replicas: u32,
    replicas_wait: Duration,
}

impl Ask {
    /// The answer of `master` (see `Master::call_voting`: `grace` for the restart grace).
    async fn on(&self, master: &Arc<Master>, grace: Option<Duration>) -> Result<Answer, CallError> {
        // The counter lies in another slot of a cluster: foreign waiters are not seen there.
        let see_foreign = !master.is_cluster;
        // Borrowed by the request, which a broken connection may send twice.
        let sent = AtomicBool::new(false);
        let sent = &sent;
        // Redis ends a blocked `WAIT` in its cron (`hz` 10 by default): up to a tick late.
        let blocks = if self.replicas == 0 {
            Duration::ZERO
        } else {
            self.replicas_wait + Duration::from_millis(100)
        };
        master
            .call_voting(grace, blocks, self.spare, |mut connection| async move {
                self.once(&mut connection, sent, see_foreign).await
            })
            .await
    }

    /// One sending of the request on `connection`; `sent` tells whether it was sent before.
    async fn once(
        &self,
        connection: &mut Handle,
        sent: &AtomicBool,
        see_foreign: bool,
    ) -> redis::RedisResult<Answer> {
        let (keys, value) = (&self.keys, &self.value);
        let Some((id, ticket, stats_name)) = &self.place else {
            // Sent again, a refusal may be our own first `SET`: read it.
            let resent = sent.swap(true, Ordering::Relaxed);
            let read_holder = self.read_holder || resent;
            let answer = set_if_free(connection, keys, value, self.ttl_ms, read_holder).await?;
            return self.replicated(connection, answer).await;
        };
        let counter = see_foreign.then_some(Counter(stats_name));
        let call = scripts::queued_attempt(keys, counter, value, self.ttl_ms, id, *ticket);
        Ok(match call.invoke(connection).await? {
            QueuedReply::Granted => self.replicated(connection, Answer::Granted).await?,
            QueuedReply::Refused {
                wait_ms,
                releases,
                next_in_line,
                holder,
                foreign,
            } => Answer::Refused {
                standing: Some(Standing {
                    expires_in: Duration::from_millis(wait_ms),
                    releases,
                    next_in_line,
                    holder,
                    foreign,
                }),
                holder: Holder::Unnamed,
            },
        })
    }

    /// `answer`, once `Config::wait_for_replicas` replicas of the master confirmed the key
    /// (`WAIT`, on the connection that set it; the `PTTL` beside it routes the pair to the
    /// key's node in a cluster).
    async fn replicated(
        &self,
        connection: &mut Handle,
        answer: Answer,
    ) -> redis::RedisResult<Answer> {
        let replicas = self.replicas;
        if replicas == 0 || !matches!(answer, Answer::Granted) {
            return Ok(answer);
        }
        let within = u64::try_from(self.replicas_wait.as_millis()).unwrap_or(u64::MAX);
        let (_, confirmed): (i64, u64) = redis::pipe()
            .pttl(&*self.keys.lock)
            .cmd("WAIT")
            .arg(replicas)
            .arg(within.max(1))
            .query_async(connection)
            .await?;
        Ok(if confirmed >= u64::from(replicas) {
            answer
        } else {
            Answer::Unreplicated {
                replicas: confirmed,
            }
        })
    }
}

/// What the masters' answers of one round add up to, as they come.
struct Round<'a> {
    masters: &'a [Arc<Master>],
    ttl: Duration,
    replicas: u32,
    replicas_wait: Duration,
    tally: Tally,
    /// Masters that may hold our value: must be undone if the attempt fails.
    maybe_set: Vec<bool>,
    /// The most hopeful standing among the queued refusals.
    standing: Option<Standing>,
    votes: Vec<Vote>,
    /// When each master inside its restart grace votes again.
    grace_ends: Vec<Instant>,
}

impl<'a> Round<'a> {
    fn new(masters: &'a [Arc<Master>], ttl: Duration, ask: &Ask) -> Self {
        Self {
            masters,
            ttl,
            replicas: ask.replicas,
            replicas_wait: ask.replicas_wait,
            tally: Tally::new(masters.len()),
            maybe_set: vec![false; masters.len()],
            standing: None,
            votes: vec![Vote::Unheard; masters.len()],
            grace_ends: Vec::new(),
        }
    }

    /// Counts the reply of master `index`; the verdict tells whether the round is decided.
    fn note(&mut self, index: usize, reply: Result<Answer, CallError>) -> Verdict {
        match reply {
            Ok(Answer::Granted) => {
                self.tally.yes();
                self.maybe_set[index] = true;
                self.votes[index] = Vote::Ours;
            }
            Ok(Answer::Unreplicated {
                replicas: confirmed,
            }) => {
                self.maybe_set[index] = true;
                let (replicas, within) = (self.replicas, self.replicas_wait);
                let failure = MasterFailure::new(
                    self.masters[index].label.clone(),
                    format!(
                        "granted, but {confirmed} of {replicas} replicas confirmed it within \
                         {within:?} (Config::wait_for_replicas)"
                    ),
                    false,
                );
                self.votes[index] = Vote::Failed(failure.error.clone());
                self.tally.failed(failure);
            }
            Ok(Answer::Refused { standing, holder }) => {
                self.tally.refused_by(holder);
                self.standing = most_hopeful(self.standing, standing);
                self.votes[index] = Vote::Held;
            }
            Err(error) => {
                self.maybe_set[index] = error.maybe_applied();
                if let CallError::InGrace { left, .. } = &error {
                    let now = Instant::now();
                    // A grace beyond the clock ends after any wait.
                    let ends = now.checked_add(*left).unwrap_or(now + self.ttl);
                    self.grace_ends.push(ends);
                }
                let failure = self.masters[index].failure(&error);
                self.votes[index] = Vote::Failed(failure.error.clone());
                self.tally.failed(failure);
            }
        }
        self.tally.verdict()
    }
}

/// Exactly the Python library's attempt: `SET key value NX PX ttl`; with `read_holder`,
/// pipelined with a `GET` (one round trip) that tells whose value refused us.
async fn set_if_free(
    connection: &mut Handle,
    keys: &LockKeys,
    value: &str,
    ttl_ms: u64,
    read_holder: bool,
) -> redis::RedisResult<Answer> {
    let mut set = redis::Cmd::with_capacity(6, 256);
    set.arg("SET")
        .arg(&*keys.lock)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms);
    if !read_holder {
        let set: Option<String> = set.query_async(connection).await?;
        return Ok(match set {
            Some(_) => Answer::Granted,
            None => Answer::Refused {
                standing: None,
                holder: Holder::Unnamed,
            },
        });
    }
    let (set, found): (Option<String>, Option<String>) = redis::pipe()
        .add_command(set)
        .get(&*keys.lock)
        .query_async(connection)
        .await?;
    Ok(match (set, found) {
        (Some(_), _) => Answer::Granted,
        // Our own value: this `SET` was sent twice (its connection broke), the first took it.
        (None, Some(found)) if found == value => Answer::Granted,
        (None, found) => Answer::Refused {
            standing: None,
            holder: found.map_or(Holder::Nobody, Holder::Value),
        },
    })
}

/// The more hopeful of two standings: the shorter TTL, the fewer releases before our turn,
/// next in line on either master (waking early costs one attempt).
fn most_hopeful(known: Option<Standing>, learned: Option<Standing>) -> Option<Standing> {
    match (known, learned) {
        (Some(known), Some(learned)) => Some(Standing {
            expires_in: known.expires_in.min(learned.expires_in),
            releases: known.releases.min(learned.releases),
            next_in_line: known.next_in_line || learned.next_in_line,
            holder: known.holder ^ learned.holder,
            foreign: known.foreign || learned.foreign,
        }),
        (known, learned) => known.or(learned),
    }
}

/// What a failed attempt needs to undo the `SET`s that arrive after its decision.
struct Late {
    masters: Vec<Arc<Master>>,
    keys: Arc<LockKeys>,
    value: Arc<str>,
    background: Arc<BackgroundReleases>,
    offer: bool,
}

impl Late {
    fn undo(&self, index: usize) {
        let ticket = self.background.start(&self.keys.lock);
        let master = &self.masters[index];
        spawn_undo(ticket, master, &self.keys, &self.value, self.offer);
    }
}

/// Deletes our value from one master in the background: the undo of a failed attempt. It rides
/// the same connection as the `SET`, so it cannot overtake it.
fn spawn_undo(
    ticket: Ticket,
    master: &Arc<Master>,
    keys: &Arc<LockKeys>,
    value: &Arc<str>,
    offer: bool,
) {
    let (master, keys, value) = (Arc::clone(master), Arc::clone(keys), Arc::clone(value));
    BackgroundReleases::spawn(ticket, async move {
        let (keys, value) = (&keys, &value);
        let undone = master
            .call(|mut connection| async move {
                scripts::undo(keys, value, offer)
                    .invoke::<i64>(&mut connection)
                    .await
            })
            .await;
        if let Err(error) = undone {
            master.warn(
                "could not undo a failed attempt; the key expires with its TTL",
                &error.to_string(),
            );
        }
    });
}

/// Removes a waiter from the queue on every master, in the background, except on the masters
/// in `granted` (see `wake::master_bit`), whose grant to it took it out already. On the others,
/// a grant to it is passed on to the next waiter, unless `granted` is not empty: the waiter
/// holds the lock with that value.
pub(crate) fn spawn_leave_queue(
    backend: &Backend,
    keys: &Arc<LockKeys>,
    waiter_id: &Arc<str>,
    granted: u64,
) {
    let keeps_its_grant = granted != 0;
    for (index, master) in backend.masters.iter().enumerate() {
        if granted & master_bit(index) != 0 {
            continue;
        }
        let (master, keys, id) = (Arc::clone(master), Arc::clone(keys), Arc::clone(waiter_id));
        rt::spawn_background(async move {
            let (keys, id) = (&keys, &id);
            let left = master
                .call(|mut connection| async move {
                    scripts::leave_queue(keys, id, keeps_its_grant)
                        .invoke::<i64>(&mut connection)
                        .await
                })
                .await;
            if let Err(error) = left {
                tracing::debug!(master = %master.label, %error, "redlock: could not leave the queue; the place expires with its TTL");
            }
        });
    }
}
