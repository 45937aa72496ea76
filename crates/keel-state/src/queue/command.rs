//! Queue commands (enqueue, claim, complete, fail, extend, retry, delete, purge, and the
//! leader's lease expiry, lease refresh and retention), their outcomes and refusals. How
//! each is applied is in [`super::apply`].

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Task, TaskId, TaskState};
use crate::Revision;

/// The longest pause the default backoff puts between a failure and the next attempt.
pub const MAX_BACKOFF_MS: u64 = 5 * 60 * 1000;
/// The default backoff's first pause.
pub(crate) const FIRST_BACKOFF_MS: u64 = 1000;

/// A task to enqueue. Persisted (inside [`QueueCommand::Enqueue`] and transactions): fields
/// are never reordered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enqueue {
    /// The queue (created by its first task).
    pub queue: String,
    /// The payload bytes.
    pub payload: Bytes,
    /// The payload's content type.
    pub content_type: Option<String>,
    /// Not claimable until this long after the request's time.
    pub delay_ms: u64,
    /// Attempts allowed (0: unlimited).
    pub max_attempts: u32,
    /// Higher is claimed first.
    pub priority: i64,
    /// While an unfinished task has this key, enqueueing again returns that task.
    pub dedupe_key: Option<String>,
    /// Refuse when the queue already holds this many tasks (the proposing node's limit,
    /// carried in the command so that every replica applies the same one).
    pub max_tasks: u64,
}

impl Enqueue {
    pub(crate) fn size_hint(&self) -> usize {
        self.queue.len()
            + self.payload.len()
            + self.content_type.as_ref().map_or(0, String::len)
            + self.dedupe_key.as_ref().map_or(0, String::len)
            + 32
    }
}

/// A change to queues. Persisted: add variants only at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueCommand {
    /// Add a task.
    Enqueue(Enqueue),
    /// Claim up to `max` ready tasks, best first, under a lease.
    Claim {
        /// The queue.
        queue: String,
        /// Who claims (for inspection).
        worker: String,
        /// The lease's length.
        lease_ms: u64,
        /// At most this many tasks.
        max: u32,
    },
    /// Mark a running task done.
    Complete {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// The claim it is held under.
        claim: Revision,
        /// What the worker returns: JSON text.
        result: Option<Bytes>,
    },
    /// Record a running task's failure: pending again after `retry_in_ms` (default: a backoff
    /// doubling from 1 s to 5 min), or dead when its attempts are used up.
    Fail {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// The claim it is held under.
        claim: Revision,
        /// What went wrong.
        error: String,
        /// When to try again.
        retry_in_ms: Option<u64>,
    },
    /// Give a running task's lease a new deadline, `lease_ms` from the request's time.
    Extend {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// The claim it is held under.
        claim: Revision,
        /// The new lease's length.
        lease_ms: u64,
    },
    /// Make a done or dead task pending again, its attempts reset.
    Retry {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// Delete a task that is not running.
    Delete {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// Delete up to `max` tasks of a queue in `state` (done or dead), lowest ids first.
    Purge {
        /// The queue.
        queue: String,
        /// Done or dead.
        state: TaskState,
        /// At most this many (a purge of more is several commands).
        max: u32,
    },
    /// Put back those of `tasks` whose lease has run out at the request's time. Proposed by
    /// the leader when it sees deadlines pass; a task extended or finished meanwhile stays.
    ExpireLeases {
        /// Candidates: (queue, task).
        tasks: Vec<(String, TaskId)>,
    },
    /// Give every running task its full lease again, from the request's time. Proposed by a
    /// new leader, so that a failover never takes tasks from live workers.
    RefreshLeases,
    /// Delete up to `max` done tasks that finished `retention_ms` or more before the
    /// request's time, oldest first. Proposed by the leader.
    DropDone {
        /// How long done tasks are kept.
        retention_ms: u64,
        /// At most this many.
        max: u32,
    },
}

impl QueueCommand {
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            QueueCommand::Enqueue(e) => e.size_hint(),
            QueueCommand::Complete { queue, result, .. } => {
                queue.len() + result.as_ref().map_or(0, Bytes::len) + 16
            }
            QueueCommand::Fail { queue, error, .. } => queue.len() + error.len() + 24,
            QueueCommand::Claim { queue, worker, .. } => queue.len() + worker.len() + 16,
            QueueCommand::Extend { queue, .. }
            | QueueCommand::Retry { queue, .. }
            | QueueCommand::Delete { queue, .. }
            | QueueCommand::Purge { queue, .. } => queue.len() + 16,
            QueueCommand::ExpireLeases { tasks } => tasks.iter().map(|(q, _)| q.len() + 8).sum(),
            QueueCommand::RefreshLeases | QueueCommand::DropDone { .. } => 16,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            QueueCommand::Enqueue(_) => "queue_enqueue",
            QueueCommand::Claim { .. } => "queue_claim",
            QueueCommand::Complete { .. } => "queue_complete",
            QueueCommand::Fail { .. } => "queue_fail",
            QueueCommand::Extend { .. } => "queue_extend",
            QueueCommand::Retry { .. } => "queue_retry",
            QueueCommand::Delete { .. } => "queue_delete",
            QueueCommand::Purge { .. } => "queue_purge",
            QueueCommand::ExpireLeases { .. } => "queue_expire_leases",
            QueueCommand::RefreshLeases => "queue_refresh_leases",
            QueueCommand::DropDone { .. } => "queue_drop_done",
        }
    }
}

/// A task handed to a worker by a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// The task.
    pub id: TaskId,
    /// Its payload.
    pub payload: Bytes,
    /// The payload's content type.
    pub content_type: Option<String>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The claim token: complete, fail and extend must name it.
    pub claim: Revision,
    /// When the lease runs out.
    pub lease_expires_at_ms: u64,
    /// When the task was enqueued.
    pub enqueued_at_ms: u64,
}

/// A task's state after a command changed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskChanged {
    /// The store revision afterwards.
    pub revision: Revision,
    /// The task's state.
    pub state: TaskState,
    /// The task's attempts so far.
    pub attempt: u32,
    /// Pending: when it becomes claimable.
    pub not_before_ms: u64,
    /// Running: when its lease runs out.
    pub lease_expires_at_ms: Option<u64>,
}

impl TaskChanged {
    pub(crate) fn of(task: &Task, revision: Revision) -> Self {
        TaskChanged {
            revision,
            state: task.state,
            attempt: task.attempt,
            not_before_ms: task.not_before_ms,
            lease_expires_at_ms: task.claim.as_ref().map(|c| c.expires_at_ms),
        }
    }
}

/// What a queue command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueueOutcome {
    /// A task was enqueued, or (`created` false) an unfinished one with the same dedupe key
    /// was found.
    Enqueued {
        /// The task.
        id: TaskId,
        /// The store revision afterwards.
        revision: Revision,
        /// Whether a new task was created.
        created: bool,
    },
    /// Tasks were claimed (possibly none).
    Claimed {
        /// The tasks, best first.
        tasks: Vec<ClaimedTask>,
        /// The store revision afterwards.
        revision: Revision,
    },
    /// A task was completed, failed, extended or retried.
    Changed(TaskChanged),
    /// Tasks were deleted.
    Deleted {
        /// How many.
        deleted: u64,
        /// The store revision afterwards.
        revision: Revision,
    },
    /// Leases ran out: these tasks were put back (or made dead).
    Expired {
        /// (queue, task) of each.
        tasks: Vec<(String, TaskId)>,
        /// The store revision afterwards.
        revision: Revision,
    },
    /// Every running task's lease was restarted.
    Refreshed {
        /// How many running tasks there are.
        tasks: u64,
    },
}

/// Why a queue command (or a transaction's queue operation) was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum QueueError {
    /// No such task (or no such queue).
    #[error("task {id} not found in queue {queue:?}")]
    TaskNotFound {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// The claim named is not the task's current one: its lease ran out and it was put back
    /// or given to another worker, or it is finished.
    #[error("the claim on task {id} of queue {queue:?} was lost (the task was put back, claimed again or finished)")]
    ClaimLost {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// The task is running, so it cannot be deleted.
    #[error("task {id} of queue {queue:?} is running; fail or complete it first")]
    TaskRunning {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
    },
    /// Only a done or dead task can be retried.
    #[error("task {id} of queue {queue:?} is {}; only done or dead tasks can be retried", state.as_str())]
    NotFinished {
        /// The queue.
        queue: String,
        /// The task.
        id: TaskId,
        /// Its state.
        state: TaskState,
    },
    /// The queue holds as many tasks as allowed.
    #[error("queue {queue:?} holds {limit} tasks, its limit")]
    QueueFull {
        /// The queue.
        queue: String,
        /// The limit.
        limit: u64,
    },
    /// A lease of zero, a claim of zero tasks, or a purge of unfinished tasks.
    #[error("invalid queue command: {0}")]
    Invalid(String),
}
