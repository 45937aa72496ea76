//! The applied-change feed and its history: the last N change sets, kept for reads at a past
//! revision and for watchers that resume from a revision.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::queue::TaskEvent;
use crate::{KeyValue, ReadError, Revision};

/// Whether a key was written or deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyEventKind {
    /// The key was created or overwritten.
    Put,
    /// The key was deleted.
    Delete,
}

/// One change on the applied-change feed, by family. Topics and the registry publish on the
/// same feed as they land.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A key was written or deleted.
    Key(KeyEvent),
    /// A task was enqueued, claimed, finished, put back or deleted.
    Task(TaskEvent),
}

impl Event {
    /// The key change, if this is one.
    pub fn as_key(&self) -> Option<&KeyEvent> {
        match self {
            Event::Key(e) => Some(e),
            Event::Task(_) => None,
        }
    }

    /// The task change, if this is one.
    pub fn as_task(&self) -> Option<&TaskEvent> {
        match self {
            Event::Task(e) => Some(e),
            Event::Key(_) => None,
        }
    }
}

/// One key's change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// Put or delete.
    pub kind: KeyEventKind,
    /// The key.
    pub key: String,
    /// The key after the change (`None` for a delete).
    pub kv: Option<KeyValue>,
    /// The key before the change (`None` if it was absent).
    pub prev: Option<KeyValue>,
}

/// Everything one command changed, at one revision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSet {
    /// The revision the command created.
    pub revision: Revision,
    /// The changes, in the order the command made them.
    pub events: Vec<Event>,
}

impl ChangeSet {
    /// The key changes of this set, in order.
    pub fn key_events(&self) -> impl Iterator<Item = &KeyEvent> {
        self.events.iter().filter_map(Event::as_key)
    }

    /// The task changes of this set, in order.
    pub fn task_events(&self) -> impl Iterator<Item = &TaskEvent> {
        self.events.iter().filter_map(Event::as_task)
    }
}

/// A bounded window of recent change sets. Invariant: every change set with a revision in
/// `(compacted, latest]` is held, in order, with no gaps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct History {
    limit: u64,
    sets: VecDeque<Arc<ChangeSet>>,
    compacted: Revision,
}

impl History {
    pub(crate) fn new(limit: u64, compacted: Revision) -> Self {
        History {
            limit,
            sets: VecDeque::new(),
            compacted,
        }
    }

    /// The oldest revision whose state can still be reconstructed.
    pub(crate) fn compacted(&self) -> Revision {
        self.compacted
    }

    /// Checks that revision `at` can be read from a store at `current`.
    pub(crate) fn check_readable(&self, current: Revision, at: Revision) -> Result<(), ReadError> {
        if at > current {
            return Err(ReadError::FutureRevision {
                requested: at,
                current,
            });
        }
        if at < self.compacted {
            return Err(ReadError::Compacted {
                requested: at,
                compact_revision: self.compacted,
            });
        }
        Ok(())
    }

    pub(crate) fn push(&mut self, set: Arc<ChangeSet>) {
        debug_assert!(self.sets.back().map_or(self.compacted, |s| s.revision) + 1 == set.revision);
        self.sets.push_back(set);
        self.trim();
    }

    fn trim(&mut self) {
        while self.sets.len() as u64 > self.limit {
            if let Some(old) = self.sets.pop_front() {
                self.compacted = old.revision;
            }
        }
    }

    /// Change sets with a revision above `after`, oldest first. The caller has checked that
    /// `after >= compacted`.
    pub(crate) fn after(
        &self,
        after: Revision,
    ) -> impl DoubleEndedIterator<Item = &Arc<ChangeSet>> {
        let skip = (after.saturating_sub(self.compacted) as usize).min(self.sets.len());
        self.sets.range(skip..)
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Arc<ChangeSet>> {
        self.sets.iter()
    }

    pub(crate) fn restore(limit: u64, compacted: Revision, sets: Vec<ChangeSet>) -> Self {
        let mut h = History {
            limit,
            sets: sets.into_iter().map(Arc::new).collect(),
            compacted,
        };
        h.trim();
        h
    }
}
