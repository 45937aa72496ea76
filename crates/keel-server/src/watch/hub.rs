//! The fan-out hub: hands each applied change set to exactly the watches whose filter it
//! matches, so that a change costs nothing for the watches it does not concern.
//!
//! One task follows the state machine's broadcast of applied change sets. For each set it
//! looks up the watched keys and prefixes of its events in an index (a hash map of keys, and
//! one of prefixes probed at each registered prefix length), appends the set to each
//! matching [`Subscription`]'s queue and rings that subscription's [`Doorbell`]. A watcher
//! woken by its doorbell takes everything queued at once and writes it with one send, so a
//! watcher that is behind catches up in one write rather than one per change.
//!
//! The hub hands changes out in rounds: a round is everything applied while the previous
//! one was being delivered (and at least `batch` after its start), so under a fast writer a
//! watcher wakes once for many changes; the first change after a quiet spell goes out at
//! once. While writes are coming in, the doorbells of a round are rung a slice at a time with
//! a yield in between, so that thousands of woken watchers never queue in front of every step
//! of the next write. A round is delivered when all but 1 % of the subscriptions it rang
//! have taken their sets, or when none has for [`STALL`] (clients that read slowly hold
//! nobody back). While a round is overdue, [`Hub::admit`] holds new writes, so the watchers'
//! lag stays bounded.
//!
//! A subscription's queue is bounded: a watcher that does not take its sets (its client has
//! stopped reading) is marked overflowed and its queue emptied; it then catches up from the
//! store's history, as it does when the hub itself falls behind the broadcast. Nothing is
//! lost either way, only read from another place.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use keel_raft::StateReader;
use keel_state::ChangeSet;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::{broadcast, watch, Notify};
use tokio::time::Instant;

use super::index::Index;
use super::{closed, Filter};

/// Change sets a subscription may hold before it is marked overflowed.
const QUEUE_LIMIT: usize = 256;
/// Dispatched change sets kept so that a watcher catching up from the history shares their
/// encodings.
const RECENT: usize = 1024;
/// Doorbells rung before the hub lets the woken watchers (and everyone else) run.
const RING_SLICE: usize = 16;
/// Most change sets handed out in one round.
const ROUND_LIMIT: usize = 4096;
/// Longest the hub waits for a round to be taken before it starts the next.
const ROUND_CAP: Duration = Duration::from_secs(1);
/// A round in which no subscription took anything for this long counts as delivered.
const STALL: Duration = Duration::from_millis(10);
/// Age of an undelivered round after which writes wait for it (see [`Hub::admit`]).
const ADMIT_AFTER: Duration = Duration::from_millis(100);

/// An applied change set as the hub hands it out, with room for its encodings, made at most
/// once and shared by every stream that sends it whole.
#[derive(Debug)]
pub(crate) struct Published {
    pub(crate) set: Arc<ChangeSet>,
    encoded: [OnceLock<Bytes>; Encoding::COUNT],
}

/// The ways a whole change set is encoded for a stream.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Encoding {
    /// An SSE `change` message without previous values.
    Sse,
    /// An SSE `change` message with previous values.
    SsePrev,
    /// The JSON array of a WebSocket message's events, without previous values.
    WsEvents,
    /// The same with previous values.
    WsEventsPrev,
}

impl Encoding {
    const COUNT: usize = 4;
}

impl Published {
    pub(crate) fn new(set: Arc<ChangeSet>) -> Published {
        Published {
            set,
            encoded: Default::default(),
        }
    }

    /// The set's encoding `e`, rendered by the first caller.
    pub(crate) fn encoded(&self, e: Encoding, render: impl FnOnce() -> Bytes) -> Bytes {
        self.encoded[e as usize].get_or_init(render).clone()
    }
}

/// Wakes whoever serves one or more subscriptions (an SSE stream, a WebSocket, a blocking
/// read). A ring while nobody waits is kept until the next wait.
#[derive(Debug, Default)]
pub(crate) struct Doorbell(Notify);

impl Doorbell {
    /// Waits for the next ring (returns at once if it rang since the last wait).
    pub(crate) async fn rung(&self) {
        self.0.notified().await;
    }

    fn ring(&self) {
        self.0.notify_one();
    }
}

/// What a subscription had queued.
#[derive(Default)]
pub(crate) struct Taken {
    /// The matching change sets handed out since the last take, in revision order.
    pub(crate) sets: Vec<Arc<Published>>,
    /// Some were dropped (the queue was full, or the hub fell behind): read the history.
    pub(crate) overflowed: bool,
    /// The feed has ended (the state machine stopped).
    pub(crate) closed: bool,
}

#[derive(Default)]
struct Queue {
    sets: VecDeque<Arc<Published>>,
    overflowed: bool,
    closed: bool,
}

/// What [`Inbox::push`] did.
struct Pushed {
    /// Nothing was pending before: ring the doorbell.
    fresh: bool,
    /// The queue was full: it was emptied and marked overflowed.
    overflowed: bool,
}

impl Pushed {
    const NOTHING: Pushed = Pushed {
        fresh: false,
        overflowed: false,
    };
}

struct Inbox {
    doorbell: Arc<Doorbell>,
    /// Set when something was queued and not yet taken (checked without the lock).
    pending: AtomicBool,
    /// The round in which it was last rung.
    rung_in: AtomicU64,
    queue: Mutex<Queue>,
}

impl Inbox {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `p` unless it is already the last one queued (a set with several matching
    /// events is handed out once). A fresh inbox (nothing pending before) is rung (once
    /// however many sets the round brings) and counted in `round`.
    fn push(&self, p: &Arc<Published>, round: u64) -> Pushed {
        let mut q = self.queue();
        if q.overflowed || q.sets.back().is_some_and(|b| Arc::ptr_eq(b, p)) {
            return Pushed::NOTHING;
        }
        let overflowed = q.sets.len() >= QUEUE_LIMIT;
        if overflowed {
            q.sets.clear();
            q.overflowed = true;
        } else {
            q.sets.push_back(p.clone());
        }
        let fresh = !self.pending.swap(true, Ordering::AcqRel);
        if fresh {
            self.rung_in.store(round, Ordering::Release);
        }
        Pushed { fresh, overflowed }
    }

    fn mark(&self, f: impl FnOnce(&mut Queue)) {
        let mut q = self.queue();
        f(&mut q);
        q.sets.clear();
        self.pending.store(true, Ordering::Release);
    }
}

/// The round being delivered: the subscriptions rung in it that have not taken their sets.
#[derive(Default)]
struct Round {
    id: AtomicU64,
    /// When it was handed out, in microseconds since the hub started; zero once delivered.
    started_us: AtomicU64,
    /// Rung when a round has been delivered (for writes waiting in [`Hub::admit`]).
    ended: Notify,
    /// May dip below zero for a moment (a take can count before the hub adds its ring).
    outstanding: AtomicIsize,
    /// At or below this many outstanding, the round counts as delivered.
    enough: AtomicIsize,
    delivered: Notify,
}

impl Round {
    /// A subscription rung in round `rung_in` took its sets (or left).
    fn taken(&self, rung_in: u64) {
        if rung_in == self.id.load(Ordering::Acquire)
            && self.outstanding.fetch_sub(1, Ordering::AcqRel) - 1
                <= self.enough.load(Ordering::Acquire)
        {
            self.delivered.notify_one();
        }
    }
}

/// The hub's metrics, registered once.
struct HubMetrics {
    /// Change sets per round.
    round_sets: metrics::Histogram,
    /// From the start of a round until it counts as delivered.
    round_seconds: metrics::Histogram,
    /// Handing a round out: queueing its sets and ringing the doorbells.
    dispatch_seconds: metrics::Histogram,
    /// Subscriptions whose queue overflowed (they read the history instead).
    overflows: metrics::Counter,
    /// Doorbells rung: wake-ups of streams and blocking reads for changes they match.
    wakeups: metrics::Counter,
    /// How long writes waited for an overdue round.
    admit_wait_seconds: metrics::Histogram,
}

/// The fan-out hub. See the module documentation.
pub(crate) struct Hub {
    epoch: Instant,
    metrics: HubMetrics,
    round: Round,
    registry: Mutex<Index<Arc<Inbox>>>,
    /// The last change sets handed out, oldest first.
    recent: Mutex<VecDeque<Arc<Published>>>,
    /// Every change set up to this revision has been handed to the subscriptions it
    /// concerns (or they were marked overflowed).
    dispatched: AtomicU64,
}

impl Hub {
    /// Starts the hub's task, which follows `reader`'s applied changes until `closing`
    /// becomes true or the feed ends. `batch` is the shortest time between the starts of two
    /// rounds (zero: none).
    pub(crate) fn spawn(
        reader: &StateReader,
        batch: Duration,
        closing: watch::Receiver<bool>,
    ) -> Arc<Hub> {
        // Follow the feed first, then read where it starts: no set falls in between.
        let changes = reader.subscribe();
        let hub = Arc::new(Hub {
            epoch: Instant::now(),
            metrics: HubMetrics {
                round_sets: metrics::histogram!("keel_watch_round_sets"),
                round_seconds: metrics::histogram!("keel_watch_round_seconds"),
                dispatch_seconds: metrics::histogram!("keel_watch_dispatch_seconds"),
                overflows: metrics::counter!("keel_watch_overflows_total"),
                wakeups: metrics::counter!("keel_watch_wakeups_total"),
                admit_wait_seconds: metrics::histogram!("keel_watch_admit_wait_seconds"),
            },
            round: Round::default(),
            registry: Mutex::default(),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            dispatched: AtomicU64::new(reader.read(|s| s.revision())),
        });
        tokio::spawn(hub.clone().run(changes, batch, closing));
        hub
    }

    fn registry(&self) -> MutexGuard<'_, Index<Arc<Inbox>>> {
        self.registry.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts handing every change set that matches `filter` to a new subscription, which
    /// `doorbell` announces. Subscribe before reading the state a watch starts from: a set
    /// applied in between then reaches the subscription (and is skipped by revision if the
    /// state already had it).
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        filter: Filter,
        doorbell: Arc<Doorbell>,
    ) -> Subscription {
        let inbox = Arc::new(Inbox {
            doorbell,
            pending: AtomicBool::new(false),
            rung_in: AtomicU64::new(0),
            queue: Mutex::default(),
        });
        let id = self.registry().insert(&filter, inbox.clone());
        Subscription {
            hub: self.clone(),
            filter,
            id,
            inbox,
        }
    }

    /// The handed-out form of `set`: the one the hub made if it still has it (so its
    /// encodings are shared), else a new one.
    pub(crate) fn published(&self, set: &Arc<ChangeSet>) -> Arc<Published> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        let found = recent.front().and_then(|first| {
            let i = set.revision.checked_sub(first.set.revision)?;
            recent
                .get(usize::try_from(i).ok()?)
                .filter(|p| p.set.revision == set.revision)
                .cloned()
        });
        found.unwrap_or_else(|| Arc::new(Published::new(set.clone())))
    }

    /// Every change set up to the returned revision has been handed out. Read it before
    /// [`Subscription::take`]: once the take finds nothing more (and no overflow), the
    /// subscription has seen every change it concerns up to that revision.
    pub(crate) fn dispatched(&self) -> u64 {
        self.dispatched.load(Ordering::Acquire)
    }

    async fn run(
        self: Arc<Self>,
        mut changes: broadcast::Receiver<Arc<ChangeSet>>,
        batch: Duration,
        mut closing: watch::Receiver<bool>,
    ) {
        let mut round: Vec<Arc<ChangeSet>> = Vec::new();
        loop {
            // Changes already waiting: the writers are busy, and the watchers woken must leave
            // them room. After a quiet spell every watcher is woken at once.
            let busy = !changes.is_empty();
            let first = tokio::select! {
                received = changes.recv() => received,
                _ = closed(&mut closing) => Err(RecvError::Closed),
            };
            match first {
                Ok(set) => round.push(set),
                Err(RecvError::Lagged(_)) => {
                    self.mark_all(|q| q.overflowed = true);
                    continue;
                }
                Err(RecvError::Closed) => break,
            }
            let mut lagged = false;
            while round.len() < ROUND_LIMIT {
                match changes.try_recv() {
                    Ok(set) => round.push(set),
                    Err(TryRecvError::Lagged(_)) => {
                        lagged = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            self.round
                .started_us
                .store(self.micros(started).max(1), Ordering::Release);
            self.metrics.round_sets.record(round.len() as f64);
            self.dispatch(&mut round, if busy { RING_SLICE } else { usize::MAX })
                .await;
            self.metrics
                .dispatch_seconds
                .record(started.elapsed().as_secs_f64());
            if lagged {
                self.mark_all(|q| q.overflowed = true);
            }
            // What is applied while this round is being delivered makes the next round.
            self.wait_delivered(started + ROUND_CAP, &mut closing).await;
            self.metrics
                .round_seconds
                .record(started.elapsed().as_secs_f64());
            self.round.started_us.store(0, Ordering::Release);
            self.round.ended.notify_waiters();
            if !batch.is_zero() {
                tokio::time::sleep_until(started + batch).await;
            }
        }
        self.mark_all(|q| q.closed = true);
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX)
    }

    /// Admission of a write: waits while the round being delivered is overdue (older than
    /// [`ADMIT_AFTER`]), until it has been delivered or given up on. So a writer can never
    /// run ahead of the watchers it feeds by more than about a round: their lag stays
    /// bounded instead of growing until they must re-read from the history or lose their
    /// place. Returns at once whenever the fan-out keeps up, which is always unless thousands
    /// of watchers follow a fast writer.
    pub(crate) async fn admit(&self) {
        loop {
            let ended = self.round.ended.notified();
            let started = self.round.started_us.load(Ordering::Acquire);
            if started == 0 {
                return;
            }
            let started = self.epoch + Duration::from_micros(started);
            if started.elapsed() < ADMIT_AFTER {
                return;
            }
            let waited = Instant::now();
            let given_up = tokio::select! {
                _ = ended => false,
                _ = tokio::time::sleep_until(started + ROUND_CAP) => true,
            };
            self.metrics
                .admit_wait_seconds
                .record(waited.elapsed().as_secs_f64());
            if given_up {
                return;
            }
        }
    }

    /// Waits until all but a few of the subscriptions rung in this round have taken their
    /// sets, or until none has taken anything for [`STALL`] (the rest are held up by clients
    /// that read slowly or not at all, and must not hold everyone back), at most until `cap`.
    async fn wait_delivered(&self, cap: Instant, closing: &mut watch::Receiver<bool>) {
        let round = &self.round;
        let outstanding = || round.outstanding.load(Ordering::Acquire);
        let mut seen = outstanding();
        let mut check = Instant::now() + STALL;
        while outstanding() > round.enough.load(Ordering::Acquire) {
            tokio::select! {
                _ = round.delivered.notified() => {}
                _ = tokio::time::sleep_until(check.min(cap)) => {
                    let now = outstanding();
                    if now == seen || Instant::now() >= cap {
                        return;
                    }
                    (seen, check) = (now, Instant::now() + STALL);
                }
                _ = closed(closing) => return,
            }
        }
    }

    /// Hands every set of `sets` to the subscriptions it concerns, then rings each of them
    /// once, `slice` at a time, letting the watchers it woke (and the rest of the server, the
    /// write path above all) run in between: thousands of watchers woken at once would queue
    /// in front of every step of the next write.
    async fn dispatch(&self, sets: &mut Vec<Arc<ChangeSet>>, slice: usize) {
        let published: Vec<Arc<Published>> = sets
            .drain(..)
            .map(|s| Arc::new(Published::new(s)))
            .collect();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            for p in &published {
                if recent.len() >= RECENT {
                    recent.pop_front();
                }
                recent.push_back(p.clone());
            }
        }
        let round = &self.round;
        let id = round.id.fetch_add(1, Ordering::AcqRel) + 1;
        round.outstanding.store(0, Ordering::Release);
        round.enough.store(0, Ordering::Release);
        let mut to_ring: Vec<Arc<Doorbell>> = Vec::new();
        for p in &published {
            // One hold of the registry per set, so that subscribing never waits for a round.
            let registry = self.registry();
            let keys = p.set.key_events().flat_map(|e| registry.matching(&e.key));
            let tasks = p
                .set
                .task_events()
                .flat_map(|e| registry.matching_queue(&e.queue));
            for inbox in keys.chain(tasks) {
                let pushed = inbox.push(p, id);
                if pushed.overflowed {
                    self.metrics.overflows.increment(1);
                }
                if pushed.fresh {
                    round.outstanding.fetch_add(1, Ordering::AcqRel);
                    to_ring.push(inbox.doorbell.clone());
                }
            }
            drop(registry);
            self.dispatched.fetch_max(p.set.revision, Ordering::Release);
        }
        self.metrics.wakeups.increment(to_ring.len() as u64);
        // The slowest 1 % (clients that read slowly) do not hold the round back.
        round
            .enough
            .store((to_ring.len() / 100) as isize, Ordering::Release);
        for slice in to_ring.chunks(slice) {
            for doorbell in slice {
                doorbell.ring();
            }
            if slice.len() == to_ring.len() {
                break;
            }
            tokio::task::yield_now().await;
        }
    }

    fn mark_all(&self, f: impl Fn(&mut Queue)) {
        let inboxes: Vec<Arc<Inbox>> = self.registry().all().cloned().collect();
        for inbox in inboxes {
            inbox.mark(&f);
            inbox.doorbell.ring();
        }
    }
}

/// A watch's place in the hub: what the hub has handed it and not yet taken. Dropping it
/// leaves the hub.
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    filter: Filter,
    id: u64,
    inbox: Arc<Inbox>,
}

impl Subscription {
    /// Whether anything was queued since the last take (cheap: no lock).
    pub(crate) fn pending(&self) -> bool {
        self.inbox.pending.load(Ordering::Acquire)
    }

    /// Takes everything queued.
    pub(crate) fn take(&self) -> Taken {
        if !self.pending() {
            return Taken::default();
        }
        let mut q = self.inbox.queue();
        if self.inbox.pending.swap(false, Ordering::AcqRel) {
            self.hub
                .round
                .taken(self.inbox.rung_in.load(Ordering::Acquire));
        }
        Taken {
            sets: q.sets.drain(..).collect(),
            overflowed: std::mem::take(&mut q.overflowed),
            closed: q.closed,
        }
    }

    /// The hub this subscription belongs to.
    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.registry().remove(&self.filter, self.id);
        if self.inbox.pending.swap(false, Ordering::AcqRel) {
            self.hub
                .round
                .taken(self.inbox.rung_in.load(Ordering::Acquire));
        }
    }
}
