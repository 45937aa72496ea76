//! The store: every key, lease and recent change, and the `apply` entry point.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use crate::history::History;
use crate::{
    Applied, ChangeSet, Command, Event, EventKind, KeyValue, Lease, LeaseId, Outcome, Request,
    Revision,
};

/// Settings that shape the store but are not part of the replicated state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// How many revisions of change history to keep for past reads and watches.
    pub history: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { history: 10_000 }
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
    pub(crate) revision: Revision,
    pub(crate) now_ms: u64,
    pub(crate) keys: BTreeMap<String, KeyValue>,
    pub(crate) leases: BTreeMap<LeaseId, Lease>,
    pub(crate) next_lease_id: LeaseId,
    pub(crate) history: History,
}

/// The writes of one command, all at `revision`.
pub(crate) struct Batch {
    pub(crate) revision: Revision,
    pub(crate) events: Vec<Event>,
}

impl Store {
    /// An empty store at revision 0.
    pub fn new(config: StoreConfig) -> Self {
        let history = History::new(config.history, 0);
        Store {
            config,
            revision: 0,
            now_ms: 0,
            keys: BTreeMap::new(),
            leases: BTreeMap::new(),
            next_lease_id: 1,
            history,
        }
    }

    /// Applies one command. Deterministic: the same store and request always give the same
    /// result and the same new store.
    pub fn apply(&mut self, request: &Request) -> Applied {
        // Time never runs backwards inside the state machine, whatever the leader's clock does.
        self.now_ms = self.now_ms.max(request.now_ms);
        let mut batch = Batch {
            revision: self.revision + 1,
            events: Vec::new(),
        };
        let outcome = match &request.command {
            Command::Put {
                key,
                value,
                lease,
                if_revision,
            } => self.cmd_put(&mut batch, key, value, *lease, *if_revision),
            Command::Delete { key, if_revision } => self.cmd_delete(&mut batch, key, *if_revision),
            Command::DeletePrefix { prefix } => {
                let deleted = self.delete_prefix(&mut batch, prefix);
                Outcome::Deleted {
                    revision: self.revision_after(&batch),
                    deleted,
                }
            }
            Command::Incr { key, by } => self.cmd_incr(&mut batch, key, *by),
            Command::Txn(txn) => self.cmd_txn(&mut batch, txn),
            Command::LeaseGrant { ttl_ms } => self.cmd_lease_grant(*ttl_ms),
            Command::LeaseKeepAlive { id } => self.cmd_lease_keepalive(*id),
            Command::LeaseRevoke { id } => self.cmd_lease_revoke(&mut batch, *id),
            Command::LeaseExpire { ids } => self.cmd_lease_expire(&mut batch, ids),
            Command::LeaseRefreshAll => self.cmd_lease_refresh_all(),
        };
        let changes = self.commit(batch);
        Applied { outcome, changes }
    }

    /// The revision the store will have once `batch` is committed.
    pub(crate) fn revision_after(&self, batch: &Batch) -> Revision {
        if batch.events.is_empty() {
            self.revision
        } else {
            batch.revision
        }
    }

    fn commit(&mut self, batch: Batch) -> Option<Arc<ChangeSet>> {
        if batch.events.is_empty() {
            return None;
        }
        self.revision = batch.revision;
        let set = Arc::new(ChangeSet {
            revision: batch.revision,
            events: batch.events,
        });
        self.history.push(set.clone());
        Some(set)
    }

    /// Writes a key in `batch`. The caller has checked that `lease`, if any, exists.
    pub(crate) fn write_key(
        &mut self,
        batch: &mut Batch,
        key: &str,
        value: bytes::Bytes,
        lease: Option<LeaseId>,
    ) {
        let prev = self.keys.get(key).cloned();
        let kv = KeyValue {
            value,
            create_revision: prev.as_ref().map_or(batch.revision, |p| p.create_revision),
            mod_revision: batch.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != lease {
            if let Some(old) = old_lease.and_then(|id| self.leases.get_mut(&id)) {
                old.keys.remove(key);
            }
            if let Some(new) = lease.and_then(|id| self.leases.get_mut(&id)) {
                new.keys.insert(key.to_owned());
            }
        }
        self.keys.insert(key.to_owned(), kv.clone());
        batch.events.push(Event {
            kind: EventKind::Put,
            key: key.to_owned(),
            kv: Some(kv),
            prev,
        });
    }

    /// Deletes a key in `batch`; false if it was absent.
    pub(crate) fn remove_key(&mut self, batch: &mut Batch, key: &str) -> bool {
        let Some(prev) = self.keys.remove(key) else {
            return false;
        };
        if let Some(lease) = prev.lease.and_then(|id| self.leases.get_mut(&id)) {
            lease.keys.remove(key);
        }
        batch.events.push(Event {
            kind: EventKind::Delete,
            key: key.to_owned(),
            kv: None,
            prev: Some(prev),
        });
        true
    }

    /// Deletes every key under `prefix` in `batch`; returns how many.
    pub(crate) fn delete_prefix(&mut self, batch: &mut Batch, prefix: &str) -> u64 {
        let doomed: Vec<String> = self
            .prefix_range(prefix, None)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &doomed {
            self.remove_key(batch, key);
        }
        doomed.len() as u64
    }

    fn prefix_range<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a KeyValue)> + 'a {
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        self.keys
            .range::<String, _>((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
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
        self.keys.len()
    }

    /// How many leases exist.
    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    /// The configuration this store was built with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn check_revision(&self, at: Revision) -> Result<(), ReadError> {
        if at > self.revision {
            return Err(ReadError::FutureRevision {
                requested: at,
                current: self.revision,
            });
        }
        if at < self.history.compacted() {
            return Err(ReadError::Compacted {
                requested: at,
                compact_revision: self.history.compacted(),
            });
        }
        Ok(())
    }

    /// A key's value now, or as of revision `at`.
    pub fn get(&self, key: &str, at: Option<Revision>) -> Result<Option<KeyValue>, ReadError> {
        let current = self.keys.get(key).cloned();
        let Some(at) = at else {
            return Ok(current);
        };
        self.check_revision(at)?;
        let mut kv = current;
        // Undo every later change to the key, newest first; what remains is the state at `at`.
        for set in self.history.after(at).rev() {
            for event in set.events.iter().filter(|e| e.key == key) {
                kv = event.prev.clone();
            }
        }
        Ok(kv)
    }

    /// A page of keys under a prefix, now or as of a past revision.
    pub fn list(&self, query: &ListQuery) -> Result<ListPage, ReadError> {
        let after = query.after.as_deref();
        let current = self.prefix_range(&query.prefix, after);
        let (revision, mut items): (Revision, Box<dyn Iterator<Item = (String, KeyValue)>>) =
            match query.revision {
                None => (
                    self.revision,
                    Box::new(current.map(|(k, v)| (k.clone(), v.clone()))),
                ),
                Some(at) => {
                    self.check_revision(at)?;
                    let overrides = self.undo_overrides(at, &query.prefix, after);
                    (at, Box::new(merge_overrides(current, overrides)))
                }
            };
        let page: Vec<(String, KeyValue)> = items.by_ref().take(query.limit).collect();
        let more = items.next().is_some();
        Ok(ListPage {
            revision,
            items: page,
            more,
        })
    }

    /// For each key under `prefix` (after `after`) changed since `at`, its value at `at`.
    fn undo_overrides(
        &self,
        at: Revision,
        prefix: &str,
        after: Option<&str>,
    ) -> BTreeMap<String, Option<KeyValue>> {
        let mut overrides = BTreeMap::new();
        for set in self.history.after(at).rev() {
            for event in &set.events {
                let in_range =
                    event.key.starts_with(prefix) && after.is_none_or(|a| event.key.as_str() > a);
                if in_range {
                    overrides.insert(event.key.clone(), event.prev.clone());
                }
            }
        }
        overrides
    }

    /// A lease by id.
    pub fn lease(&self, id: LeaseId) -> Option<&Lease> {
        self.leases.get(&id)
    }

    /// Every lease, by id.
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    /// Leases whose deadline is at or before `now_ms`.
    pub fn expired_leases(&self, now_ms: u64) -> Vec<LeaseId> {
        self.leases
            .values()
            .filter(|l| l.expires_at_ms <= now_ms)
            .map(|l| l.id)
            .collect()
    }

    /// The earliest lease deadline, if any lease exists.
    pub fn next_lease_deadline(&self) -> Option<u64> {
        self.leases.values().map(|l| l.expires_at_ms).min()
    }

    /// Change sets after revision `after` (exclusive), oldest first: the feed for watchers
    /// that resume from a revision.
    pub fn changes_after(
        &self,
        after: Revision,
    ) -> Result<impl Iterator<Item = &Arc<ChangeSet>>, ReadError> {
        self.check_revision(after)?;
        Ok(self.history.after(after))
    }
}

/// Merges the current range (sorted) with per-key overrides (sorted) into the range as of a
/// past revision: an override replaces the current value, `None` hides the key.
fn merge_overrides<'a>(
    current: impl Iterator<Item = (&'a String, &'a KeyValue)> + 'a,
    overrides: BTreeMap<String, Option<KeyValue>>,
) -> impl Iterator<Item = (String, KeyValue)> + 'a {
    let mut current = current.peekable();
    let mut overrides = overrides.into_iter().peekable();
    std::iter::from_fn(move || loop {
        let take_override = match (current.peek(), overrides.peek()) {
            (None, None) => return None,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some((ck, _)), Some((ok, _))) => ok <= *ck,
        };
        if take_override {
            let (key, value) = overrides.next()?;
            if current.peek().is_some_and(|(ck, _)| **ck == key) {
                current.next();
            }
            if let Some(kv) = value {
                return Some((key, kv));
            }
        } else {
            let (k, v) = current.next()?;
            return Some((k.clone(), v.clone()));
        }
    })
}
