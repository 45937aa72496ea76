//! The queue section of a store snapshot.
//!
//! Version 1: the number of queues, then for each queue, in name order, a [`QueueHead`]
//! followed by its `tasks` [`TaskRecord`]s in id order — each a postcard value of its own,
//! so the section is written and read a task at a time, never whole in memory. The indexes
//! are not stored: they are rebuilt from the tasks.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Claim, Queue, Queues, Task, TaskId, TaskState};
use crate::snapshot::{Input, SnapshotError};
use crate::Revision;

/// The section's current version.
pub(crate) const VERSION: u8 = 1;

/// A queue's own fields, ahead of its tasks.
#[derive(Serialize, Deserialize)]
struct QueueHead<S> {
    name: S,
    next_id: TaskId,
    tasks: u64,
}

/// A claim as stored in snapshots.
#[derive(Serialize, Deserialize)]
struct ClaimRecord {
    token: Revision,
    lease_ms: u64,
    expires_at_ms: u64,
}

/// A task as stored in snapshots.
#[derive(Serialize, Deserialize)]
struct TaskRecord {
    id: TaskId,
    payload: Bytes,
    content_type: Option<String>,
    state: TaskState,
    priority: i64,
    max_attempts: u32,
    attempt: u32,
    enqueued_at_ms: u64,
    not_before_ms: u64,
    claim: Option<ClaimRecord>,
    worker: Option<String>,
    last_error: Option<String>,
    result: Option<Bytes>,
    finished_at_ms: Option<u64>,
    dedupe_key: Option<String>,
    revision: Revision,
}

impl From<&Task> for TaskRecord {
    fn from(t: &Task) -> Self {
        TaskRecord {
            id: t.id,
            payload: t.payload.clone(),
            content_type: t.content_type.clone(),
            state: t.state,
            priority: t.priority,
            max_attempts: t.max_attempts,
            attempt: t.attempt,
            enqueued_at_ms: t.enqueued_at_ms,
            not_before_ms: t.not_before_ms,
            claim: t.claim.as_ref().map(|c| ClaimRecord {
                token: c.token,
                lease_ms: c.lease_ms,
                expires_at_ms: c.expires_at_ms,
            }),
            worker: t.worker.clone(),
            last_error: t.last_error.clone(),
            result: t.result.clone(),
            finished_at_ms: t.finished_at_ms,
            dedupe_key: t.dedupe_key.clone(),
            revision: t.revision,
        }
    }
}

impl From<TaskRecord> for Task {
    fn from(r: TaskRecord) -> Self {
        Task {
            id: r.id,
            payload: r.payload,
            content_type: r.content_type,
            state: r.state,
            priority: r.priority,
            max_attempts: r.max_attempts,
            attempt: r.attempt,
            enqueued_at_ms: r.enqueued_at_ms,
            not_before_ms: r.not_before_ms,
            claim: r.claim.map(|c| Claim {
                token: c.token,
                lease_ms: c.lease_ms,
                expires_at_ms: c.expires_at_ms,
            }),
            worker: r.worker,
            last_error: r.last_error,
            result: r.result,
            finished_at_ms: r.finished_at_ms,
            dedupe_key: r.dedupe_key,
            revision: r.revision,
        }
    }
}

/// Writes the section's body: each queue's head, then its tasks, one postcard value each.
pub(crate) fn encode(queues: &Queues, mut out: impl std::io::Write) -> Result<(), postcard::Error> {
    postcard::to_io(&queues.iter().len(), &mut out)?;
    for (name, q) in queues.iter() {
        let head = QueueHead {
            name: name.as_str(),
            next_id: q.next_id,
            tasks: q.tasks.len() as u64,
        };
        postcard::to_io(&head, &mut out)?;
        for t in q.tasks.values() {
            postcard::to_io(&TaskRecord::from(t), &mut out)?;
        }
    }
    Ok(())
}

fn inconsistent(message: String) -> SnapshotError {
    SnapshotError::Inconsistent(message)
}

/// Checks a task against its queue before it is restored.
fn check(name: &str, q: &Queue, t: &Task) -> Result<(), SnapshotError> {
    if t.id == 0 || t.id >= q.next_id {
        return Err(inconsistent(format!(
            "queue {name:?} has task {} but its next id is {}",
            t.id, q.next_id
        )));
    }
    if q.tasks.get_max().is_some_and(|(last, _)| *last >= t.id) {
        return Err(inconsistent(format!(
            "queue {name:?}: task {} is out of order",
            t.id
        )));
    }
    if (t.state == TaskState::Running) != t.claim.is_some() {
        return Err(inconsistent(format!(
            "queue {name:?}: task {} is {} with{} a claim",
            t.id,
            t.state.as_str(),
            if t.claim.is_some() { "" } else { "out" }
        )));
    }
    let unfinished = matches!(t.state, TaskState::Pending | TaskState::Running);
    if let Some(k) = t.dedupe_key.as_deref().filter(|_| unfinished) {
        if let Some(other) = q.deduped(k) {
            return Err(inconsistent(format!(
                "queue {name:?}: tasks {other} and {} both hold dedupe key {k:?}",
                t.id
            )));
        }
    }
    Ok(())
}

/// Reads the section a task at a time; `now_ms` (the snapshot's time) decides which pending
/// tasks are ready.
pub(crate) fn read<R: std::io::Read>(
    version: u8,
    input: &mut Input<R>,
    now_ms: u64,
) -> Result<Queues, SnapshotError> {
    if version != VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "queue",
            version,
        });
    }
    let mut queues = Queues::default();
    let count: usize = input.value()?;
    let mut last: Option<String> = None;
    for _ in 0..count {
        let head: QueueHead<String> = input.value()?;
        if last.as_ref().is_some_and(|l| *l >= head.name) {
            return Err(inconsistent(format!(
                "queue {:?} is out of order",
                head.name
            )));
        }
        let mut q = Queue {
            next_id: head.next_id,
            ..Queue::default()
        };
        for _ in 0..head.tasks {
            let record: TaskRecord = input.value()?;
            let task = Task::from(record);
            check(&head.name, &q, &task)?;
            q.put(task, now_ms);
        }
        queues.by_name.insert(head.name.clone(), q);
        last = Some(head.name);
    }
    Ok(queues)
}

/// Decodes the section from its joined bytes (the same bytes [`read`] reads).
pub(crate) fn decode(version: u8, body: &[u8], now_ms: u64) -> Result<Queues, SnapshotError> {
    let mut input = Input::new(body);
    let queues = read(version, &mut input, now_ms)?;
    if !input.at_end()? {
        return Err(inconsistent(
            "the queue section has bytes after its tasks".into(),
        ));
    }
    Ok(queues)
}
