//! The store: one field of state per capability, the change history, and the `apply` entry
//! point that hands each command to its family.

use std::sync::Arc;

use crate::history::History;
use crate::kv::{self, Kv};
use crate::lease::{self, Leases};
use crate::queue::{self, Queue, Queues, TaskId};
use crate::writes::Writes;
use crate::{
    txn, Applied, ChangeSet, Command, KeyValue, Lease, LeaseId, Outcome, Request, Revision,
};

/// Settings that shape the store but are not part of the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// How many revisions of change history to keep for past reads and watches.
    pub history: u64,
}

impl StoreConfig {
    /// The default of [`StoreConfig::history`].
    pub const DEFAULT_HISTORY: u64 = 10_000;
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            history: Self::DEFAULT_HISTORY,
        }
    }
}

/// Why a read could not be served.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// The revision is older than the kept history.
    #[error(
        "revision {requested} is compacted; the oldest readable revision is {compact_revision}"
    )]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The oldest revision that can be read.
        compact_revision: Revision,
    },
    /// The revision has not happened yet.
    #[error("revision {requested} is ahead of the store's revision {current}")]
    FutureRevision {
        /// The revision asked for.
        requested: Revision,
        /// The store's revision.
        current: Revision,
    },
}

/// A range read: keys under `prefix`, after `after`, at most `limit`, as of `revision`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListQuery {
    /// Only keys starting with this.
    pub prefix: String,
    /// Only keys sorting strictly after this.
    pub after: Option<String>,
    /// At most this many items.
    pub limit: usize,
    /// Read as of this revision (default: now).
    pub revision: Option<Revision>,
}

/// One page of a range read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListPage {
    /// The revision the page was read at.
    pub revision: Revision,
    /// Keys and values, sorted by key.
    pub items: Vec<(String, KeyValue)>,
    /// Whether more keys follow the last one returned.
    pub more: bool,
}

/// The replicated state. Changed only by [`Store::apply`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    pub(crate) config: StoreConfig,
    /// The revision of the last change.
    pub(crate) revision: Revision,
    /// The latest request time applied; never decreases.
    pub(crate) now_ms: u64,
    /// Keys and values.
    pub(crate) kv: Kv,
    /// Leases.
    pub(crate) leases: Leases,
    /// Task queues.
    pub(crate) queues: Queues,
    /// Recent change sets, for past reads and resuming watchers.
    pub(crate) history: History,
}

impl Store {
    /// An empty store at revision 0.
    pub fn new(config: StoreConfig) -> Self {
        let history = History::new(config.history, 0);
        Store {
            config,
            revision: 0,
            now_ms: 0,
            kv: Kv::default(),
            leases: Leases::default(),
            queues: Queues::default(),
            history,
        }
    }

    /// Applies one command. Deterministic: the same store and request always give the same
    /// result and the same new store. A refused command changes nothing.
    pub fn apply(&mut self, request: &Request) -> Applied {
        // Time never runs backwards inside the state machine, whatever the leader's clock does.
        self.now_ms = self.now_ms.max(request.now_ms);
        let mut w = Writes::after(self.revision, self.now_ms);
        let result = match &request.command {
            Command::Kv(c) => kv::apply(c, &mut self.kv, &mut self.leases, &mut w).map(Outcome::Kv),
            Command::Lease(c) => {
                lease::apply(c, &mut self.leases, &mut self.kv, &mut w).map(Outcome::Lease)
            }
            Command::Txn(t) => {
                let state = txn::TxnState {
                    kv: &mut self.kv,
                    leases: &mut self.leases,
                    queues: &mut self.queues,
                };
                txn::apply(t, state, &mut w).map(Outcome::Txn)
            }
            Command::Queue(c) => queue::apply(c, &mut self.queues, &mut w).map(Outcome::Queue),
        };
        let outcome = result.unwrap_or_else(|e| {
            debug_assert!(
                w.events.is_empty(),
                "a refused command wrote {:?}",
                w.events
            );
            Outcome::Rejected(e)
        });
        let changes = self.commit(w);
        Applied { outcome, changes }
    }

    fn commit(&mut self, w: Writes) -> Option<Arc<ChangeSet>> {
        if w.events.is_empty() {
            return None;
        }
        self.revision = w.revision;
        let set = Arc::new(ChangeSet {
            revision: w.revision,
            events: w.events,
        });
        self.history.push(set.clone());
        Some(set)
    }

    // ---- reads ----

    /// The current store revision.
    pub fn revision(&self) -> Revision {
        self.revision
    }

    /// The oldest revision that can still be read.
    pub fn compact_revision(&self) -> Revision {
        self.history.compacted()
    }

    /// The latest time the state machine has seen (ms since the Unix epoch).
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }

    /// How many keys exist.
    pub fn key_count(&self) -> usize {
        self.kv.len()
    }

    /// How many leases exist.
    pub fn lease_count(&self) -> usize {
        self.leases.iter().len()
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// A key's value now, or as of revision `at`.
    pub fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, ReadError> {
        match at {
            None => Ok(self.kv.get(key).cloned()),
            Some(at) => {
                self.history.check_readable(self.revision, at)?;
                Ok(kv::get_at(&self.kv, &self.history, key, at))
            }
        }
    }

    /// A page of keys under a prefix, now or as of a past revision.
    pub fn list(&self, query: &ListQuery) -> Result<ListPage, ReadError> {
        if let Some(at) = query.revision {
            self.history.check_readable(self.revision, at)?;
        }
        Ok(kv::list_at(&self.kv, &self.history, self.revision, query))
    }

    /// Whether `key` was written or deleted after revision `after`: exact for any `after`,
    /// however far behind the change history (false for a revision not reached yet).
    pub fn key_changed_after(&self, key: &str, after: Revision) -> bool {
        self.kv.key_changed_after(key, after)
    }

    /// Whether any key under `prefix` was written or deleted after revision `after`: exact
    /// for any `after`. Answered from the history when it reaches back that far, else from
    /// the keys' revisions and the tombstones under the prefix.
    pub fn prefix_changed_after(&self, prefix: &str, after: Revision) -> bool {
        match self.changes_after(after) {
            Ok(mut sets) => sets.any(|set| set.key_events().any(|e| e.key.starts_with(prefix))),
            Err(ReadError::FutureRevision { .. }) => false,
            Err(ReadError::Compacted { .. }) => self.kv.prefix_changed_after(prefix, after),
        }
    }

    /// How many deleted keys have a tombstone (kept until the key is written again).
    pub fn tombstone_count(&self) -> usize {
        self.kv.tombstones().len()
    }

    /// A lease by id.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(id)
    }

    /// Every lease, by id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.iter()
    }

    /// Leases whose deadline is at or before `now_ms`.
    pub fn expired_leases(&self, now_ms: u64) -> Vec<LeaseId> {
        self.leases.expired(now_ms)
    }

    /// The earliest lease deadline, if any lease exists.
    pub fn next_lease_deadline(&self) -> Option<u64> {
        self.leases.next_deadline()
    }

    /// A queue by name (a queue exists from its first task).
    pub fn queue(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    /// Every queue, by name.
    pub fn queues(&self) -> impl ExactSizeIterator<Item = (&String, &Queue)> {
        self.queues.iter()
    }

    /// The earliest lease deadline of any running task.
    pub fn next_task_lease_deadline(&self) -> Option<u64> {
        self.queues.next_lease_deadline()
    }

    /// Running tasks whose lease has run out at `now_ms`, at most `limit`: (queue, task).
    pub fn expired_task_leases(&self, now_ms: u64, limit: usize) -> Vec<(String, TaskId)> {
        self.queues.expired_leases(now_ms, limit)
    }

    /// When the longest-finished done task (of any queue) finished.
    pub fn oldest_done_task_at(&self) -> Option<u64> {
        self.queues.oldest_done_at()
    }

    /// Change sets after revision `after` (exclusive), oldest first: the feed for watchers
    /// that resume from a revision.
    pub fn changes_after(
        &self,
        after: Revision,
    ) -> Result<impl Iterator<Item = &Arc<ChangeSet>>, ReadError> {
        self.history.check_readable(self.revision, after)?;
        Ok(self.history.after(after))
    }
}
