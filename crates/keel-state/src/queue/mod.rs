//! Task queues: tasks with consecutive ids per queue, claimed by one worker at a time under a
//! lease, completed, failed (retried with backoff, or dead once their attempts are used up),
//! and kept inspectable by id and by state.
//!
//! Time enters only through the request's time ([`crate::writes::Writes::now_ms`]): a delayed
//! task is ready once a command applied at or after its `not_before` sees it, and a lease runs
//! out only when the leader proposes [`QueueCommand::ExpireLeases`] — so every replica decides
//! alike.

mod apply;
mod command;
pub(crate) mod snapshot;

use std::cmp::Reverse;

use bytes::Bytes;
use imbl::{OrdMap, OrdSet};
use serde::{Deserialize, Serialize};

pub(crate) use apply::{apply, check_claim, check_enqueue, complete, enqueue};
pub use command::{
    ClaimedTask, Enqueue, QueueCommand, QueueError, QueueOutcome, TaskChanged, MAX_BACKOFF_MS,
};

use crate::writes::Writes;
use crate::{Event, Revision};

/// A task's id: consecutive per queue from 1.
pub type TaskId = u64;

/// Where a task is in its life. Persisted (in commands): add variants only at the end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting to be claimed (ready, or not before a time).
    Pending,
    /// Claimed by a worker, under a lease.
    Running,
    /// Completed.
    Done,
    /// Failed on its last allowed attempt; kept with its payload until retried or deleted.
    Dead,
}

impl TaskState {
    /// Every state, in order.
    pub const ALL: [TaskState; 4] = [
        TaskState::Pending,
        TaskState::Running,
        TaskState::Done,
        TaskState::Dead,
    ];

    /// The state's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Dead => "dead",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The claim a running task is held under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The revision of the claim: it identifies the claim, and a token that names another is
    /// stale.
    pub token: Revision,
    /// The lease's length, in milliseconds (a new leader restarts it in full).
    pub lease_ms: u64,
    /// When the lease runs out, in the leader's clock.
    pub expires_at_ms: u64,
}

/// One task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Task {
    /// Its id in its queue.
    pub id: TaskId,
    /// The payload bytes.
    pub payload: Bytes,
    /// The payload's content type, as given at enqueue.
    pub content_type: Option<String>,
    /// Where it is in its life.
    pub state: TaskState,
    /// Higher is claimed first.
    pub priority: i64,
    /// Attempts allowed (0: unlimited).
    pub max_attempts: u32,
    /// Attempts made so far (claims).
    pub attempt: u32,
    /// When it was enqueued (ms since the Unix epoch).
    pub enqueued_at_ms: u64,
    /// Not claimable before this time.
    pub not_before_ms: u64,
    /// The claim it is held under while running.
    pub claim: Option<Claim>,
    /// The worker of the latest claim.
    pub worker: Option<String>,
    /// The error of the latest failure (or lease expiry).
    pub last_error: Option<String>,
    /// What the worker that completed it returned: JSON text.
    pub result: Option<Bytes>,
    /// When it became done or dead.
    pub finished_at_ms: Option<u64>,
    /// The key that makes a second enqueue return this task while it is unfinished.
    pub dedupe_key: Option<String>,
    /// The revision of its latest change.
    pub revision: Revision,
}

/// One queue: its tasks, and the indexes that find the next task to claim, the next lease to
/// run out and the oldest finished task in O(log n). Persistent maps, so cloning is O(1).
#[derive(Clone, Debug)]
pub struct Queue {
    next_id: TaskId,
    tasks: OrdMap<TaskId, Task>,
    /// Pending tasks ready to be claimed, best first: highest priority, then oldest id.
    ready: OrdSet<(Reverse<i64>, TaskId)>,
    /// Pending tasks not claimable yet, by the time they become so.
    delayed: OrdSet<(u64, TaskId)>,
    /// Running tasks by lease deadline.
    running: OrdSet<(u64, TaskId)>,
    /// Done tasks by the time they finished.
    done: OrdSet<(u64, TaskId)>,
    /// Task ids by state, for listings and counts.
    by_state: [OrdSet<TaskId>; 4],
    /// Unfinished tasks by dedupe key.
    dedupe: OrdMap<String, TaskId>,
}

/// Two queues are equal when their tasks are: which pending tasks sit in `ready` and which
/// in `delayed` depends on when a command last looked, not on the state.
impl PartialEq for Queue {
    fn eq(&self, other: &Self) -> bool {
        self.next_id == other.next_id && self.tasks == other.tasks
    }
}

impl Eq for Queue {}

/// What a queue holds, counted by state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Pending tasks (ready or delayed).
    pub pending: u64,
    /// Running tasks.
    pub running: u64,
    /// Done tasks (until retention removes them).
    pub done: u64,
    /// Dead tasks.
    pub dead: u64,
}

/// An empty queue, whose first task gets id 1.
impl Default for Queue {
    fn default() -> Self {
        Queue {
            next_id: 1,
            tasks: OrdMap::new(),
            ready: OrdSet::new(),
            delayed: OrdSet::new(),
            running: OrdSet::new(),
            done: OrdSet::new(),
            by_state: Default::default(),
            dedupe: OrdMap::new(),
        }
    }
}

impl Queue {
    /// The id the next enqueue gets.
    pub fn next_id(&self) -> TaskId {
        self.next_id
    }

    /// A task by id.
    pub fn task(&self, id: TaskId) -> Option<&Task> {
        self.tasks.get(&id)
    }

    /// How many tasks it holds, in any state.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Whether it holds no task.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Counts by state.
    pub fn counts(&self) -> QueueCounts {
        let n = |s: TaskState| self.by_state[s.index()].len() as u64;
        QueueCounts {
            pending: n(TaskState::Pending),
            running: n(TaskState::Running),
            done: n(TaskState::Done),
            dead: n(TaskState::Dead),
        }
    }

    /// The oldest pending task (the lowest id: ids grow with enqueue time).
    pub fn oldest_pending(&self) -> Option<&Task> {
        let id = self.by_state[TaskState::Pending.index()].get_min()?;
        self.tasks.get(id)
    }

    /// Tasks with an id above `after`, in id order, optionally only those in `state`: at
    /// most `limit`, and whether more follow.
    pub fn list(
        &self,
        state: Option<TaskState>,
        after: TaskId,
        limit: usize,
    ) -> (Vec<&Task>, bool) {
        let from = std::ops::Bound::Excluded(after);
        let mut out: Vec<&Task> = match state {
            None => self
                .tasks
                .range((from, std::ops::Bound::Unbounded))
                .take(limit.saturating_add(1))
                .map(|(_, t)| t)
                .collect(),
            Some(s) => self.by_state[s.index()]
                .range((from, std::ops::Bound::Unbounded))
                .take(limit.saturating_add(1))
                .filter_map(|id| self.tasks.get(id))
                .collect(),
        };
        let more = out.len() > limit;
        out.truncate(limit);
        (out, more)
    }

    /// Whether a task is ready to be claimed at `now_ms`.
    pub fn has_ready(&self, now_ms: u64) -> bool {
        !self.ready.is_empty() || self.delayed.get_min().is_some_and(|&(t, _)| t <= now_ms)
    }

    /// When the next delayed task becomes ready, if any is waiting.
    pub fn next_ready_at(&self) -> Option<u64> {
        self.delayed.get_min().map(|&(t, _)| t)
    }

    /// The earliest lease deadline of a running task.
    pub fn next_lease_deadline(&self) -> Option<u64> {
        self.running.get_min().map(|&(t, _)| t)
    }

    /// Running tasks whose lease has run out at `now_ms`, earliest first, at most `limit`.
    pub fn expired_leases(&self, now_ms: u64, limit: usize) -> Vec<TaskId> {
        self.running
            .iter()
            .take_while(|&&(t, _)| t <= now_ms)
            .take(limit)
            .map(|&(_, id)| id)
            .collect()
    }

    /// When the oldest done task finished.
    pub fn oldest_done_at(&self) -> Option<u64> {
        self.done.get_min().map(|&(t, _)| t)
    }

    // ---- changes: every change to a task goes through these, so the indexes follow ----

    /// Removes a task, by its place, from the indexes of its current state.
    fn unindex(&mut self, at: Place) {
        self.by_state[at.state.index()].remove(&at.id);
        match at.state {
            TaskState::Pending => {
                self.ready.remove(&(Reverse(at.priority), at.id));
                self.delayed.remove(&(at.not_before_ms, at.id));
            }
            TaskState::Running => {
                if let Some(expires) = at.expires_at_ms {
                    self.running.remove(&(expires, at.id));
                }
            }
            TaskState::Done => {
                if let Some(finished) = at.finished_at_ms {
                    self.done.remove(&(finished, at.id));
                }
            }
            TaskState::Dead => {}
        }
    }

    /// Adds a task to the indexes of its state; a pending task is ready if its time has
    /// come at `now_ms`.
    fn index(&mut self, task: &Task, now_ms: u64) {
        self.by_state[task.state.index()].insert(task.id);
        match task.state {
            TaskState::Pending if task.not_before_ms <= now_ms => {
                self.ready.insert((Reverse(task.priority), task.id));
            }
            TaskState::Pending => {
                self.delayed.insert((task.not_before_ms, task.id));
            }
            TaskState::Running => {
                if let Some(c) = &task.claim {
                    self.running.insert((c.expires_at_ms, task.id));
                }
            }
            TaskState::Done => {
                if let Some(at) = task.finished_at_ms {
                    self.done.insert((at, task.id));
                }
            }
            TaskState::Dead => {}
        }
        let unfinished = matches!(task.state, TaskState::Pending | TaskState::Running);
        if let Some(k) = &task.dedupe_key {
            if unfinished {
                self.dedupe.insert(k.clone(), task.id);
            } else if self.dedupe.get(k) == Some(&task.id) {
                self.dedupe.remove(k);
            }
        }
    }

    /// Inserts or replaces a task, keeping the indexes.
    fn put(&mut self, task: Task, now_ms: u64) {
        if let Some(old) = self.tasks.get(&task.id).map(Place::of) {
            self.unindex(old);
        }
        self.index(&task, now_ms);
        self.tasks.insert(task.id, task);
    }

    /// Removes a task, keeping the indexes.
    fn remove(&mut self, id: TaskId) -> Option<Task> {
        let task = self.tasks.remove(&id)?;
        self.unindex(Place::of(&task));
        if let Some(k) = &task.dedupe_key {
            if self.dedupe.get(k) == Some(&id) {
                self.dedupe.remove(k);
            }
        }
        Some(task)
    }

    /// Moves delayed tasks whose time has come at `now_ms` to the ready index.
    fn promote(&mut self, now_ms: u64) {
        while let Some(&(t, id)) = self.delayed.get_min() {
            if t > now_ms {
                break;
            }
            self.delayed.remove(&(t, id));
            if let Some(task) = self.tasks.get(&id) {
                self.ready.insert((Reverse(task.priority), id));
            }
        }
    }

    /// The best ready task at `now_ms`: highest priority, then oldest id.
    fn next_ready(&mut self, now_ms: u64) -> Option<TaskId> {
        self.promote(now_ms);
        self.ready.get_min().map(|&(_, id)| id)
    }

    /// The unfinished task holding a dedupe key.
    fn deduped(&self, key: &str) -> Option<TaskId> {
        self.dedupe.get(key).copied()
    }
}

/// Where a task sits in its queue's indexes: what removing it from them needs, copied out so
/// that replacing a task never clones the old one.
#[derive(Clone, Copy)]
struct Place {
    id: TaskId,
    state: TaskState,
    priority: i64,
    not_before_ms: u64,
    expires_at_ms: Option<u64>,
    finished_at_ms: Option<u64>,
}

impl Place {
    fn of(t: &Task) -> Place {
        Place {
            id: t.id,
            state: t.state,
            priority: t.priority,
            not_before_ms: t.not_before_ms,
            expires_at_ms: t.claim.as_ref().map(|c| c.expires_at_ms),
            finished_at_ms: t.finished_at_ms,
        }
    }
}

/// Every queue, by name. A queue exists from its first task and is kept (with its next id, so
/// that ids are never reused) when its tasks are gone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Queues {
    by_name: OrdMap<String, Queue>,
}

impl Queues {
    pub(crate) fn get(&self, name: &str) -> Option<&Queue> {
        self.by_name.get(name)
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &Queue)> {
        self.by_name.iter()
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Queue> {
        self.by_name.get_mut(name)
    }

    fn get_or_create(&mut self, name: &str) -> &mut Queue {
        self.by_name.entry(name.to_owned()).or_default()
    }

    /// The earliest lease deadline of any running task.
    pub(crate) fn next_lease_deadline(&self) -> Option<u64> {
        self.by_name
            .values()
            .filter_map(Queue::next_lease_deadline)
            .min()
    }

    /// The earliest time a done task finished.
    pub(crate) fn oldest_done_at(&self) -> Option<u64> {
        self.by_name
            .values()
            .filter_map(Queue::oldest_done_at)
            .min()
    }

    /// Running tasks whose lease has run out at `now_ms`, at most `limit`.
    pub(crate) fn expired_leases(&self, now_ms: u64, limit: usize) -> Vec<(String, TaskId)> {
        let mut out = Vec::new();
        for (name, q) in &self.by_name {
            let left = limit - out.len();
            if left == 0 {
                break;
            }
            out.extend(
                q.expired_leases(now_ms, left)
                    .into_iter()
                    .map(|id| (name.clone(), id)),
            );
        }
        out
    }
}

/// What happened to a task, as the change feed tells it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskEventKind {
    /// Enqueued (pending).
    Enqueued,
    /// Claimed by a worker (running).
    Claimed,
    /// Its lease was extended (still running).
    Extended,
    /// Completed (done).
    Completed,
    /// Failed: pending again for a retry, or dead.
    Failed,
    /// Its lease ran out: pending again, or dead if that was its last attempt.
    LeaseExpired,
    /// Retried by hand: pending again, attempts reset.
    Retried,
    /// Deleted (cancelled, purged or removed after retention).
    Deleted,
}

impl TaskEventKind {
    /// The kind's name in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskEventKind::Enqueued => "enqueued",
            TaskEventKind::Claimed => "claimed",
            TaskEventKind::Extended => "extended",
            TaskEventKind::Completed => "completed",
            TaskEventKind::Failed => "failed",
            TaskEventKind::LeaseExpired => "lease_expired",
            TaskEventKind::Retried => "retried",
            TaskEventKind::Deleted => "deleted",
        }
    }
}

/// One task's change on the change feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEvent {
    /// The queue.
    pub queue: String,
    /// The task.
    pub id: TaskId,
    /// What happened.
    pub kind: TaskEventKind,
    /// Its state afterwards (`None`: deleted).
    pub state: Option<TaskState>,
    /// Its attempts so far.
    pub attempt: u32,
}

/// Records a task change on the feed.
fn event(w: &mut Writes, queue: &str, task: &Task, kind: TaskEventKind, deleted: bool) {
    w.events.push(Event::Task(TaskEvent {
        queue: queue.to_owned(),
        id: task.id,
        kind,
        state: (!deleted).then_some(task.state),
        attempt: task.attempt,
    }));
}
