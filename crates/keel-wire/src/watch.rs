//! Watches: server-sent events and WebSocket messages.

use serde::{Deserialize, Serialize};

use crate::{decode_value, ErrorDetail, KeyValue, TaskState};

/// Whether a watched key was written or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WatchEventType {
    /// Created or overwritten.
    Put,
    /// Deleted.
    Delete,
}

/// One key's change in a watch message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchEvent {
    /// `put` or `delete`.
    #[serde(rename = "type")]
    pub kind: WatchEventType,
    /// The key.
    pub key: String,
    /// The new value, when it is UTF-8 (absent for a delete).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The new value in standard base64, when it is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_base64: Option<String>,
    /// Revision at which the key was created (0 for a delete).
    pub create_revision: u64,
    /// The revision of this change.
    pub mod_revision: u64,
    /// Writes since creation (0 for a delete).
    pub version: u64,
    /// Attached lease.
    #[serde(default)]
    pub lease: Option<u64>,
    /// With `prev_value=true`: the value before the change, when it was UTF-8 (absent if the
    /// key did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value: Option<String>,
    /// With `prev_value=true`: the value before the change in base64, when not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_value_base64: Option<String>,
}

impl WatchEvent {
    /// The new value's bytes (empty for a delete).
    pub fn value_bytes(&self) -> Result<Vec<u8>, String> {
        decode_value(self.value.as_deref(), self.value_base64.as_deref())
    }
}

/// What happened to a task, in a queue watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskEventKind {
    /// Enqueued (pending).
    Enqueued,
    /// Claimed by a worker (running).
    Claimed,
    /// Its lease was extended.
    Extended,
    /// Completed (done).
    Completed,
    /// Failed: pending again, or dead.
    Failed,
    /// Its lease ran out: pending again, or dead.
    LeaseExpired,
    /// Retried by hand: pending, attempts reset.
    Retried,
    /// Deleted (cancelled, purged or past retention).
    Deleted,
}

impl TaskEventKind {
    /// The kind's name on the wire.
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

/// One task's change in a queue watch (`queue=Q`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskWatchEvent {
    /// The queue.
    pub queue: String,
    /// The task.
    pub id: u64,
    /// What happened.
    pub kind: TaskEventKind,
    /// Its state afterwards; null once deleted.
    pub state: Option<TaskState>,
    /// Its attempts so far.
    pub attempt: u32,
}

/// SSE `event: change`: every event of one revision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchChange {
    /// The revision.
    pub revision: u64,
    /// The watched keys it changed, in the order the command changed them (empty in a queue
    /// watch).
    pub events: Vec<WatchEvent>,
    /// In a queue watch: the watched queue's tasks it changed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<TaskWatchEvent>,
}

/// SSE `event: snapshot` (`initial=true`): the watched keys as of `revision`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchSnapshot {
    /// The revision the keys were read at; changes follow from `revision + 1`.
    pub revision: u64,
    /// The keys, in order.
    pub items: Vec<KeyValue>,
}

/// SSE `event: progress`: every change up to `revision` has been delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchProgress {
    /// The store revision as far as this stream has seen it.
    pub revision: u64,
}

/// SSE `event: compacted`: the history no longer reaches back to the asked revision; the
/// stream ends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchCompacted {
    /// The oldest revision still in the history window.
    pub compact_revision: u64,
}

/// A WebSocket watch request, client to server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum WsRequest {
    /// Start a watch under a client-chosen id.
    Watch(WsWatch),
    /// Stop the watch with this id.
    Cancel {
        /// The watch's id.
        id: String,
    },
}

/// `{"op":"watch",…}`: exactly one of `key`, `prefix` and `queue`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WsWatch {
    /// The client's name for this watch, echoed in every message about it.
    pub id: String,
    /// Watch one key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Watch every key under a prefix (empty: all keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Watch a queue's tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Deliver every change with a revision at or after this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_revision: Option<u64>,
    /// First send the current state, then every later change.
    #[serde(default)]
    pub initial: bool,
    /// Include each key's value before the change.
    #[serde(default)]
    pub prev_value: bool,
    /// Idle interval between progress messages, as a duration string (default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<String>,
}

/// A WebSocket message, server to client: `id` and one kind of content.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WsMessage {
    /// The watch this message is about.
    pub id: String,
    /// A change's (or a snapshot's) revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    /// A change's events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<WatchEvent>>,
    /// A queue watch's change: its tasks' events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskWatchEvent>>,
    /// A snapshot's keys (`initial`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<Vec<KeyValue>>,
    /// Progress: every change up to this revision has been delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<u64>,
    /// The history no longer reaches back; the watch has ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compacted: Option<u64>,
    /// The watch was cancelled as asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled: Option<bool>,
    /// The request about this id failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn task_event_kinds_are_named_as_serde_writes_them() {
        use TaskEventKind::*;
        for k in [
            Enqueued,
            Claimed,
            Extended,
            Completed,
            Failed,
            LeaseExpired,
            Retried,
            Deleted,
        ] {
            let json = serde_json::to_value(k).expect("serialise");
            assert_eq!(json, serde_json::json!(k.as_str()));
        }
    }
}
