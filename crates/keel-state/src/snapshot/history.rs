//! The change-history section of a store snapshot.
//!
//! Version 1: the compacted revision, then a postcard sequence of change sets, each a revision
//! and its events; an event is tagged by family ([`EventRecord`]).

use serde::{Deserialize, Serialize};

use super::{seq, SnapshotError};
use crate::history::History;
use crate::kv::snapshot::KvRecord;
use crate::queue::{TaskEvent, TaskEventKind, TaskId, TaskState};
use crate::{ChangeSet, Event, KeyEvent, KeyEventKind, Revision};

/// The section's current version.
pub(crate) const VERSION: u8 = 1;

/// A key event as stored in snapshots (format 1 stores the same record, untagged).
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyEventRecord<S> {
    delete: bool,
    key: S,
    kv: Option<KvRecord>,
    prev: Option<KvRecord>,
}

impl<'a> From<&'a KeyEvent> for KeyEventRecord<&'a str> {
    fn from(e: &'a KeyEvent) -> Self {
        KeyEventRecord {
            delete: e.kind == KeyEventKind::Delete,
            key: e.key.as_str(),
            kv: e.kv.as_ref().map(Into::into),
            prev: e.prev.as_ref().map(Into::into),
        }
    }
}

impl From<KeyEventRecord<String>> for KeyEvent {
    fn from(r: KeyEventRecord<String>) -> Self {
        KeyEvent {
            kind: if r.delete {
                KeyEventKind::Delete
            } else {
                KeyEventKind::Put
            },
            key: r.key,
            kv: r.kv.map(Into::into),
            prev: r.prev.map(Into::into),
        }
    }
}

/// A task event as stored in snapshots. `kind` is [`TaskEventKind`] by position, `state`
/// [`TaskState`] (`None`: deleted).
#[derive(Serialize, Deserialize)]
struct TaskEventRecord<S> {
    queue: S,
    id: TaskId,
    kind: u8,
    state: Option<TaskState>,
    attempt: u32,
}

/// [`TaskEventKind`] by its code in records (the inverse of the match in `From<&TaskEvent>`):
/// add kinds only at the end.
const TASK_EVENT_KINDS: [TaskEventKind; 8] = [
    TaskEventKind::Enqueued,
    TaskEventKind::Claimed,
    TaskEventKind::Extended,
    TaskEventKind::Completed,
    TaskEventKind::Failed,
    TaskEventKind::LeaseExpired,
    TaskEventKind::Retried,
    TaskEventKind::Deleted,
];

impl<'a> From<&'a TaskEvent> for TaskEventRecord<&'a str> {
    fn from(e: &'a TaskEvent) -> Self {
        let kind = match e.kind {
            TaskEventKind::Enqueued => 0,
            TaskEventKind::Claimed => 1,
            TaskEventKind::Extended => 2,
            TaskEventKind::Completed => 3,
            TaskEventKind::Failed => 4,
            TaskEventKind::LeaseExpired => 5,
            TaskEventKind::Retried => 6,
            TaskEventKind::Deleted => 7,
        };
        TaskEventRecord {
            queue: e.queue.as_str(),
            id: e.id,
            kind,
            state: e.state,
            attempt: e.attempt,
        }
    }
}

impl TryFrom<TaskEventRecord<String>> for TaskEvent {
    type Error = SnapshotError;

    fn try_from(r: TaskEventRecord<String>) -> Result<Self, SnapshotError> {
        let kind = *TASK_EVENT_KINDS.get(r.kind as usize).ok_or_else(|| {
            SnapshotError::Inconsistent(format!("unknown task event kind {}", r.kind))
        })?;
        Ok(TaskEvent {
            queue: r.queue,
            id: r.id,
            kind,
            state: r.state,
            attempt: r.attempt,
        })
    }
}

/// An event of any family. Persisted: add variants only at the end.
#[derive(Serialize, Deserialize)]
enum EventRecord<S> {
    Key(KeyEventRecord<S>),
    Task(TaskEventRecord<S>),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct ChangeSetRecord<E> {
    pub(crate) revision: Revision,
    pub(crate) events: Vec<E>,
}

impl<E> ChangeSetRecord<E> {
    /// The change set, each event converted by `event`.
    pub(crate) fn into_change_set(self, event: impl FnMut(E) -> Event) -> ChangeSet {
        ChangeSet {
            revision: self.revision,
            events: self.events.into_iter().map(event).collect(),
        }
    }
}

pub(crate) fn encode(history: &History, out: impl std::io::Write) -> Result<(), postcard::Error> {
    let sets = seq(history.iter().map(|set| ChangeSetRecord {
        revision: set.revision,
        events: set
            .events
            .iter()
            .map(|e| match e {
                Event::Key(k) => EventRecord::Key(k.into()),
                Event::Task(t) => EventRecord::Task(t.into()),
            })
            .collect(),
    }));
    postcard::to_io(&(history.compacted(), sets), out).map(drop)
}

/// The compacted revision and the change sets.
pub(crate) fn decode(
    version: u8,
    body: &[u8],
) -> Result<(Revision, Vec<ChangeSet>), SnapshotError> {
    if version != VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "history",
            version,
        });
    }
    let (compacted, sets): (Revision, Vec<ChangeSetRecord<EventRecord<String>>>) =
        postcard::from_bytes(body)?;
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let mut events = Vec::with_capacity(set.events.len());
        for e in set.events {
            events.push(match e {
                EventRecord::Key(k) => Event::Key(k.into()),
                EventRecord::Task(t) => Event::Task(t.try_into()?),
            });
        }
        out.push(ChangeSet {
            revision: set.revision,
            events,
        });
    }
    Ok((compacted, out))
}
