//! Task queues: enqueue, claim, complete, fail, extend, inspect. Times are RFC 3339 strings
//! in UTC with milliseconds (`"2026-12-07T19:00:00.123Z"`); payloads are `payload` when the
//! bytes are UTF-8 and `payload_base64` otherwise, as key values are.

use serde::{Deserialize, Serialize};

/// A task's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Waiting to be claimed (possibly not before `not_before`).
    Pending,
    /// Claimed by a worker, under a lease.
    Running,
    /// Completed.
    Done,
    /// Failed on its last allowed attempt; kept with its payload until retried or deleted.
    Dead,
}

impl TaskState {
    /// The state's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Done => "done",
            TaskState::Dead => "dead",
        }
    }
}

/// The claim token format: `{revision}-{id}`. Opaque to clients; the server checks that it
/// names the task it is used on.
pub fn claim_token(revision: u64, id: u64) -> String {
    format!("{revision}-{id}")
}

/// The (revision, task id) a claim token names, if it is one.
pub fn parse_claim_token(token: &str) -> Option<(u64, u64)> {
    let (revision, id) = token.split_once('-')?;
    Some((revision.parse().ok()?, id.parse().ok()?))
}

/// `POST /v1/queues/{queue}/tasks` → `201` (or `200` for a dedupe hit).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnqueueResponse {
    /// The task's id (for a dedupe hit: the unfinished task that holds the key).
    pub id: u64,
    /// The store revision after the enqueue.
    pub revision: u64,
}

/// A task handed to a worker by a claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// The task's id.
    pub id: u64,
    /// The payload as text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload as base64 (when it is not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The payload's content type, as enqueued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// This attempt's number (1 for the first).
    pub attempt: u32,
    /// The claim token: complete, fail and extend must give it.
    pub claim: String,
    /// When the lease runs out unless extended.
    pub lease_expires_at: String,
    /// When the task was enqueued.
    pub enqueued_at: String,
}

impl ClaimedTask {
    /// The payload's bytes.
    pub fn payload_bytes(&self) -> Result<Vec<u8>, String> {
        crate::decode_value(self.payload.as_deref(), self.payload_base64.as_deref())
    }
}

/// `POST /v1/queues/{queue}/claim` → `200` (`204` when nothing became ready in time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimResponse {
    /// The tasks claimed, best first.
    pub tasks: Vec<ClaimedTask>,
}

/// `POST …/tasks/{id}/complete`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteRequest {
    /// The claim token.
    pub claim: String,
    /// What the work produced: any JSON value of at most 64 KiB, returned as given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}

/// `POST …/tasks/{id}/fail`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRequest {
    /// The claim token.
    pub claim: String,
    /// What went wrong (kept as the task's `last_error`, at most 4 KiB).
    #[serde(default)]
    pub error: String,
    /// When to try again (e.g. `"30s"`); default: a backoff doubling from 1 s to 5 min.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in: Option<String>,
    /// The same in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

/// `POST …/tasks/{id}/extend`
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    /// The claim token.
    pub claim: String,
    /// The new lease, from now (e.g. `"60s"`); default: the server's `--queue-lease`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<String>,
    /// The same in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// The answer to complete, fail, extend and retry: the task's state afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskChangedResponse {
    /// The task.
    pub id: u64,
    /// Its state now.
    pub state: TaskState,
    /// Its attempts so far.
    pub attempt: u32,
    /// The store revision afterwards.
    pub revision: u64,
    /// Pending: when it becomes claimable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<String>,
    /// Running: when its lease runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<String>,
}

/// `GET /v1/queues/{queue}/tasks/{id}`: everything about a task (the payload with
/// `?payload=true`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    /// The task's id.
    pub id: u64,
    /// Its state.
    pub state: TaskState,
    /// Attempts made (claims).
    pub attempt: u32,
    /// Attempts allowed (0: unlimited).
    pub max_attempts: u32,
    /// Higher is claimed first.
    pub priority: i64,
    /// When it was enqueued.
    pub enqueued_at: String,
    /// Not claimable before this.
    pub not_before: String,
    /// Running: when its lease runs out.
    pub lease_expires_at: Option<String>,
    /// The worker of the latest claim.
    pub worker: Option<String>,
    /// The error of the latest failure (or `"lease expired"`).
    pub last_error: Option<String>,
    /// What the worker that completed it returned.
    pub result: Option<serde_json::Value>,
    /// Done or dead: when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The payload's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// Its dedupe key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dedupe_key: Option<String>,
    /// The payload's size in bytes.
    pub payload_size: u64,
    /// The payload as text (with `?payload=true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// The payload as base64 (with `?payload=true`, when it is not UTF-8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    /// The revision of the task's latest change.
    pub revision: u64,
}

/// `GET /v1/queues/{queue}/tasks`: tasks in id order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskList {
    /// The tasks.
    pub items: Vec<TaskInfo>,
    /// Whether more follow (ask again with `after` = the last id).
    pub more: bool,
}

/// One queue's counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Pending tasks (ready or delayed).
    pub pending: u64,
    /// Running tasks.
    pub running: u64,
    /// Done tasks (kept for `--queue-retention`).
    pub done: u64,
    /// Dead tasks.
    pub dead: u64,
    /// How long the oldest pending task has waited, in milliseconds.
    pub oldest_pending_age_ms: Option<u64>,
    /// The id the next task gets.
    pub next_id: u64,
}

/// `GET /v1/queues`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueList {
    /// Every queue, by name.
    pub queues: Vec<QueueInfo>,
}

/// `DELETE /v1/queues/{queue}/tasks/{id}` and `DELETE /v1/queues/{queue}?state=…`
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TasksDeletedResponse {
    /// How many tasks were deleted.
    pub deleted: u64,
    /// The store revision afterwards.
    pub revision: u64,
}
