//! Watches: one ordered, gap-free feed of changes to a key or a prefix, shared by the SSE and
//! WebSocket streams and by blocking reads.
//!
//! A [`Watcher`] delivers every change set with a revision at or after its `next` revision
//! that touches a watched key, each exactly once and in order. It first catches up from the
//! store's history window (a bounded chunk at a time, under the read lock), then takes what
//! the fan-out [`Hub`] hands its [`Subscription`]: only the sets it matches, and all of those
//! pending at once, so a watcher that is behind sends them in one write. A watcher whose
//! queue overflowed (its client stopped reading) catches up from history again, and if the
//! history no longer reaches back it is sent `compacted` and ends. So no watcher can slow a
//! writer or hold more than a bounded amount of memory.

mod hub;
mod index;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use keel_raft::StateReader;
use keel_state::{validate_key, KeyEventKind, ListQuery, ReadError, TaskEvent};
use keel_wire::{KeyValue as WireKeyValue, TaskWatchEvent, WatchEvent, WatchEventType};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

pub(crate) use hub::{Doorbell, Encoding, Hub, Published, Subscription};

use crate::respond::envelope;
use crate::ApiError;

/// Change sets read from the history per lock hold while catching up.
const CATCH_UP_CHUNK: usize = 256;
/// The idle interval between progress messages unless the client asks for another.
pub(crate) const DEFAULT_PROGRESS: Duration = Duration::from_secs(10);
/// Shortest progress interval a client may ask for.
const MIN_PROGRESS: Duration = Duration::from_millis(100);

/// Resolves once the server starts shutting down.
pub(crate) async fn closed(closing: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: the server is stopping too.
    let _ = closing.wait_for(|c| *c).await;
}

/// What a watch covers.
#[derive(Clone, Debug)]
pub(crate) enum Filter {
    /// One key.
    Key(String),
    /// Every key starting with the prefix (empty: every key).
    Prefix(String),
    /// Every task of one queue.
    Queue(String),
}

impl Filter {
    /// Builds a filter from exactly one of `key`, `prefix` and `queue`, validated.
    pub(crate) fn new(
        key: Option<String>,
        prefix: Option<String>,
        queue: Option<String>,
    ) -> Result<Filter, ApiError> {
        match (key, prefix, queue) {
            (Some(k), None, None) => {
                validate_key(&k)?;
                Ok(Filter::Key(k))
            }
            (None, Some(p), None) => {
                if !p.is_empty() {
                    validate_key(&p)?;
                }
                Ok(Filter::Prefix(p))
            }
            (None, None, Some(q)) => {
                crate::queue::validate_name(&q)?;
                Ok(Filter::Queue(q))
            }
            _ => Err(ApiError::query("give exactly one of key, prefix and queue")),
        }
    }

    /// Whether a change to `key` concerns this watch.
    pub(crate) fn matches(&self, key: &str) -> bool {
        match self {
            Filter::Key(k) => k == key,
            Filter::Prefix(p) => key.starts_with(p.as_str()),
            Filter::Queue(_) => false,
        }
    }

    /// Whether a task's change concerns this watch.
    pub(crate) fn matches_task(&self, e: &TaskEvent) -> bool {
        matches!(self, Filter::Queue(q) if *q == e.queue)
    }
}

/// Where a watch starts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Start {
    /// Only changes after the current revision. The first message is a progress message
    /// naming that revision, so the client knows where the watch starts.
    Now,
    /// Every change with a revision at or after this one.
    From(u64),
    /// A snapshot of the current state, then every later change.
    Initial,
}

/// What a watch asks for.
#[derive(Clone, Debug)]
pub(crate) struct WatchSpec {
    pub(crate) filter: Filter,
    pub(crate) start: Start,
    pub(crate) prev_value: bool,
    pub(crate) progress: Duration,
}

impl WatchSpec {
    /// Parses the progress interval (a duration string; default 10 s; at least 100 ms).
    pub(crate) fn progress_interval(text: Option<&str>) -> Result<Duration, ApiError> {
        let Some(text) = text else {
            return Ok(DEFAULT_PROGRESS);
        };
        let d = crate::parse_duration(text)
            .map_err(|e| ApiError::query(format!("progress {text:?}: {e}")))?;
        if d < MIN_PROGRESS {
            return Err(ApiError::query(format!(
                "progress must be at least {} ms",
                MIN_PROGRESS.as_millis()
            )));
        }
        Ok(d)
    }
}

/// One message of a watch stream.
#[derive(Debug)]
pub(crate) enum Message {
    /// The watched keys as of `revision` (`initial`).
    Snapshot {
        revision: u64,
        items: Vec<WireKeyValue>,
    },
    /// Every watched change of one revision: the events of `set` that match the filter
    /// (render them with [`Watcher::events`]).
    Change {
        set: Arc<Published>,
        /// Every event of the set matches, so every watcher with the same options sends the
        /// same message (and may share its encoding).
        whole: bool,
    },
    /// Idle: everything up to `revision` has been delivered.
    Progress { revision: u64 },
    /// History no longer reaches back to where the watch must resume; the watch ends.
    Compacted { compact_revision: u64 },
}

/// A live watch. See the module documentation for its guarantees.
pub(crate) struct Watcher {
    spec: WatchSpec,
    reader: StateReader,
    subscription: Subscription,
    doorbell: Arc<Doorbell>,
    /// The next revision to deliver: everything before it has been delivered or does not
    /// concern this watch.
    next: u64,
    /// Whether to read the history before taking what the hub hands out.
    catching_up: bool,
    backlog: VecDeque<Arc<Published>>,
    /// Sent before anything else: the snapshot (`initial`) or the starting revision (now).
    first: Option<Message>,
    last_sent: Instant,
    ended: bool,
}

impl Watcher {
    /// Starts a watch, announced by `doorbell` whenever it may have something to send (one
    /// doorbell may serve many watches). Subscribes to the hub before reading the state, so
    /// that nothing applied in between can be missed (a change seen twice is skipped by
    /// revision).
    pub(crate) fn open(
        hub: &Arc<Hub>,
        reader: StateReader,
        spec: WatchSpec,
        doorbell: Arc<Doorbell>,
    ) -> Watcher {
        let subscription = hub.subscribe(spec.filter.clone(), doorbell.clone());
        let (next, first) = reader.read(|s| match spec.start {
            Start::Now => {
                let revision = s.revision();
                (revision + 1, Some(Message::Progress { revision }))
            }
            Start::From(r) => (r.max(1), None),
            Start::Initial => {
                let revision = s.revision();
                (revision + 1, Some(snapshot(s, &spec.filter)))
            }
        });
        Watcher {
            spec,
            reader,
            subscription,
            doorbell,
            next,
            catching_up: true,
            backlog: VecDeque::new(),
            first,
            last_sent: Instant::now(),
            ended: false,
        }
    }

    /// Whether the watch has ended (after `compacted`, or when the feed stopped).
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// When this watch owes a progress message if nothing else is sent before.
    pub(crate) fn progress_due(&self) -> Instant {
        self.last_sent + self.spec.progress
    }

    /// Whether [`Watcher::ready`] may have something now (cheap: no lock).
    pub(crate) fn may_be_ready(&self, now: Instant) -> bool {
        !self.ended
            && (self.first.is_some()
                || self.catching_up
                || !self.backlog.is_empty()
                || self.subscription.pending()
                || now >= self.progress_due())
    }

    /// Appends to `out` every message ready now, at most `max`, without waiting; a
    /// progress message if nothing else was due and the stream has been idle long enough.
    pub(crate) fn ready(&mut self, out: &mut Vec<Message>, max: usize) {
        let before = out.len();
        if self.ended {
            return;
        }
        if let Some(first) = self.first.take() {
            out.push(first);
        }
        // Everything the hub had handed out up to here is taken below.
        let mut dispatched = self.subscription.hub().dispatched();
        while out.len() - before < max {
            if let Some(set) = self.backlog.pop_front() {
                if let Some(m) = self.deliver(set) {
                    out.push(m);
                }
                continue;
            }
            if self.catching_up {
                match self.read_history() {
                    Ok(true) => continue,
                    Ok(false) => self.catching_up = false,
                    Err(compact_revision) => {
                        self.ended = true;
                        out.push(Message::Compacted { compact_revision });
                        return;
                    }
                }
                dispatched = self.subscription.hub().dispatched();
            }
            let taken = self.subscription.take();
            if taken.overflowed {
                // Dropped from the queue: the history has them.
                self.catching_up = true;
                continue;
            }
            if taken.sets.is_empty() {
                if taken.closed {
                    self.ended = true;
                }
                // Caught up: nothing up to `dispatched` concerns this watch any more.
                self.next = self.next.max(dispatched + 1);
                break;
            }
            self.backlog.extend(taken.sets);
        }
        let now = Instant::now();
        if out.len() > before {
            self.last_sent = now;
        } else if !self.ended && now >= self.progress_due() {
            out.push(Message::Progress {
                revision: self.next - 1,
            });
            self.last_sent = now;
        }
    }

    /// Waits until there is something to send, then appends it (at most `max` messages);
    /// appends nothing once the watch has ended or the server is closing.
    pub(crate) async fn next_batch(
        &mut self,
        out: &mut Vec<Message>,
        max: usize,
        closing: &mut watch::Receiver<bool>,
        progress_timer: &mut Pin<Box<Sleep>>,
    ) {
        loop {
            self.ready(out, max);
            if !out.is_empty() || self.ended {
                return;
            }
            // The deadline only moves later as messages go out: let the timer fire early
            // and re-arm it then, rather than move it for every message.
            let due = self.progress_due();
            if progress_timer.is_elapsed() || progress_timer.deadline() > due {
                progress_timer.as_mut().reset(due);
            }
            tokio::select! {
                _ = self.doorbell.rung() => {}
                _ = progress_timer.as_mut() => {}
                _ = closed(closing) => {
                    self.ended = true;
                    return;
                }
            }
        }
    }

    /// Moves past `set`; the message for it if it is new and touches a watched key (or a
    /// task of the watched queue).
    fn deliver(&mut self, set: Arc<Published>) -> Option<Message> {
        if set.set.revision < self.next {
            return None;
        }
        self.next = set.set.revision + 1;
        if let Filter::Queue(_) = self.spec.filter {
            // A queue watch's message is its own: the shared encodings of a whole set are
            // of its key events.
            let matching = set
                .set
                .task_events()
                .any(|e| self.spec.filter.matches_task(e));
            return matching.then_some(Message::Change { set, whole: false });
        }
        let (mut keys, mut matching) = (0, 0);
        for e in set.set.key_events() {
            keys += 1;
            matching += usize::from(self.spec.filter.matches(&e.key));
        }
        (matching > 0).then_some(Message::Change {
            set,
            whole: matching == keys,
        })
    }

    /// The wire events of `set` that this watch covers.
    pub(crate) fn events(&self, set: &keel_state::ChangeSet) -> Vec<WatchEvent> {
        set.key_events()
            .filter(|e| self.spec.filter.matches(&e.key))
            .map(|e| wire_event(e, set.revision, self.spec.prev_value))
            .collect()
    }

    /// The task events of `set` that this watch covers (a queue watch's).
    pub(crate) fn tasks(&self, set: &keel_state::ChangeSet) -> Vec<TaskWatchEvent> {
        set.task_events()
            .filter(|e| self.spec.filter.matches_task(e))
            .map(wire_task_event)
            .collect()
    }

    /// Whether events carry the previous value.
    pub(crate) fn prev_value(&self) -> bool {
        self.spec.prev_value
    }

    /// Reads up to a chunk of change sets from `next` on into the backlog. `Ok(false)` once
    /// there is nothing more (caught up); `Err(compact_revision)` if the history has moved on.
    fn read_history(&mut self) -> Result<bool, u64> {
        let after = self.next - 1;
        let chunk = self.reader.read(|s| match s.changes_after(after) {
            Ok(sets) => Ok(sets.take(CATCH_UP_CHUNK).cloned().collect::<Vec<_>>()),
            Err(ReadError::Compacted {
                compact_revision, ..
            }) => Err(compact_revision),
            // A start ahead of the store: nothing to catch up on yet.
            Err(ReadError::FutureRevision { .. }) => Ok(Vec::new()),
        })?;
        let more = !chunk.is_empty();
        let hub = self.subscription.hub();
        self.backlog
            .extend(chunk.iter().map(|set| hub.published(set)));
        Ok(more)
    }
}

/// The watched keys as they are now.
fn snapshot(s: &keel_state::Store, filter: &Filter) -> Message {
    let items = match filter {
        Filter::Key(k) => s
            .get(k, None)
            .ok()
            .flatten()
            .map(|kv| vec![envelope(k, &kv, true)])
            .unwrap_or_default(),
        Filter::Prefix(p) => s
            .list(&ListQuery {
                prefix: p.clone(),
                after: None,
                limit: usize::MAX,
                revision: None,
            })
            .map(|page| {
                page.items
                    .iter()
                    .map(|(k, kv)| envelope(k, kv, true))
                    .collect()
            })
            .unwrap_or_default(),
        // `initial` is refused for queue watches when they are asked for.
        Filter::Queue(_) => Vec::new(),
    };
    Message::Snapshot {
        revision: s.revision(),
        items,
    }
}

fn wire_task_event(e: &TaskEvent) -> TaskWatchEvent {
    use keel_state::TaskEventKind as K;
    use keel_wire::TaskEventKind as W;
    let kind = match e.kind {
        K::Enqueued => W::Enqueued,
        K::Claimed => W::Claimed,
        K::Extended => W::Extended,
        K::Completed => W::Completed,
        K::Failed => W::Failed,
        K::LeaseExpired => W::LeaseExpired,
        K::Retried => W::Retried,
        K::Deleted => W::Deleted,
    };
    TaskWatchEvent {
        queue: e.queue.clone(),
        id: e.id,
        kind,
        state: e.state.map(crate::queue::wire_state),
        attempt: e.attempt,
    }
}

fn wire_event(e: &keel_state::KeyEvent, revision: u64, prev_value: bool) -> WatchEvent {
    let (prev_value, prev_value_base64) = match (&e.prev, prev_value) {
        (Some(prev), true) => keel_wire::encode_value(&prev.value),
        _ => (None, None),
    };
    match (e.kind, &e.kv) {
        (KeyEventKind::Put, Some(kv)) => {
            let (value, value_base64) = keel_wire::encode_value(&kv.value);
            WatchEvent {
                kind: WatchEventType::Put,
                key: e.key.clone(),
                value,
                value_base64,
                create_revision: kv.create_revision,
                mod_revision: kv.mod_revision,
                version: kv.version,
                lease: kv.lease,
                prev_value,
                prev_value_base64,
            }
        }
        _ => WatchEvent {
            kind: WatchEventType::Delete,
            key: e.key.clone(),
            value: None,
            value_base64: None,
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: None,
            prev_value,
            prev_value_base64,
        },
    }
}

/// Longest a blocking read may wait.
pub(crate) const MAX_WAIT: Duration = Duration::from_secs(600);

/// Blocking reads: waits until a key matching `filter` changes after revision `after`
/// (default: the current revision), at most `wait`, or until the server shuts down. Returns
/// at once if such a change has already happened. Exact however old `after` is: the store
/// answers from the key's `mod_revision` or tombstone (a key), or from the history and,
/// beyond it, the keys and tombstones under the prefix (see `Store::prefix_changed_after`);
/// the hub hands the read only the changes it matches, so an unrelated write never wakes it.
pub(crate) async fn wait_for_change(
    hub: &Arc<Hub>,
    reader: &StateReader,
    filter: &Filter,
    after: Option<u64>,
    wait: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let doorbell = Arc::new(Doorbell::default());
    let subscription = hub.subscribe(filter.clone(), doorbell.clone());
    let changed_since = |after: u64| {
        reader.read(|s| match filter {
            Filter::Key(key) => s.key_changed_after(key, after),
            Filter::Prefix(prefix) => s.prefix_changed_after(prefix, after),
            // Blocking reads are of keys; a queue filter never reaches here.
            Filter::Queue(_) => false,
        })
    };
    let after = after.unwrap_or_else(|| reader.read(|s| s.revision()));
    if changed_since(after) {
        return;
    }
    let deadline = Instant::now() + wait.min(MAX_WAIT);
    loop {
        tokio::select! {
            _ = doorbell.rung() => {
                let taken = subscription.take();
                if taken.closed
                    || taken.sets.iter().any(|p| p.set.revision > after)
                    || (taken.overflowed && changed_since(after))
                {
                    return;
                }
            }
            _ = tokio::time::sleep_until(deadline) => return,
            _ = closed(&mut closing) => return,
        }
    }
}
