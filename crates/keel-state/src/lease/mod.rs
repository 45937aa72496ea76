//! Leases: a time to live that keys can be attached to; when it runs out, the keys go.

mod command;
pub(crate) mod snapshot;

use imbl::{OrdMap, OrdSet};

pub(crate) use command::apply;
pub use command::{LeaseCommand, LeaseError, LeaseGranted, LeaseOutcome};

use crate::LeaseId;

/// A lease and the keys attached to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// Time to live in milliseconds.
    pub ttl_ms: u64,
    /// When it runs out, in the leader's clock (ms since the Unix epoch).
    pub expires_at_ms: u64,
    /// Keys attached to it.
    pub keys: OrdSet<String>,
}

/// A lease without its key list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseSummary {
    /// Its id.
    pub id: LeaseId,
    /// Time to live in milliseconds.
    pub ttl_ms: u64,
    /// When it runs out.
    pub expires_at_ms: u64,
    /// How many keys are attached.
    pub key_count: usize,
}

impl Lease {
    /// The lease without its key list.
    pub fn summary(&self) -> LeaseSummary {
        LeaseSummary {
            id: self.id,
            ttl_ms: self.ttl_ms,
            expires_at_ms: self.expires_at_ms,
            key_count: self.keys.len(),
        }
    }
}

/// Every lease, and the id the next grant gets. Persistent maps and sets, so that cloning is
/// O(1) (see [`crate::kv::Kv`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Leases {
    by_id: OrdMap<LeaseId, Lease>,
    /// Every lease by its deadline: the next to run out in O(log n).
    by_deadline: OrdSet<(u64, LeaseId)>,
    next_id: LeaseId,
}

impl Default for Leases {
    fn default() -> Self {
        Leases {
            by_id: OrdMap::new(),
            by_deadline: OrdSet::new(),
            next_id: 1,
        }
    }
}

impl Leases {
    pub(crate) fn get(&self, id: LeaseId) -> Option<&Lease> {
        self.by_id.get(&id)
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &Lease> {
        self.by_id.values()
    }

    pub(crate) fn next_id(&self) -> LeaseId {
        self.next_id
    }

    /// Refuses a lease id that does not exist; `None` (no lease) is fine.
    pub(crate) fn check(&self, lease: Option<LeaseId>) -> Result<(), LeaseError> {
        match lease {
            Some(id) if !self.by_id.contains_key(&id) => Err(LeaseError::NotFound(id)),
            _ => Ok(()),
        }
    }

    /// Records that `key` is attached to `lease` (if it exists).
    pub(crate) fn attach(&mut self, lease: Option<LeaseId>, key: &str) {
        if let Some(l) = lease.and_then(|id| self.by_id.get_mut(&id)) {
            l.keys.insert(key.to_owned());
        }
    }

    /// Records that `key` is no longer attached to `lease` (if it exists).
    pub(crate) fn detach(&mut self, lease: Option<LeaseId>, key: &str) {
        if let Some(l) = lease.and_then(|id| self.by_id.get_mut(&id)) {
            l.keys.remove(key);
        }
    }

    /// Leases whose deadline is at or before `now_ms`, earliest first.
    pub(crate) fn expired(&self, now_ms: u64) -> Vec<LeaseId> {
        self.by_deadline
            .iter()
            .take_while(|&&(at, _)| at <= now_ms)
            .map(|&(_, id)| id)
            .collect()
    }

    /// The earliest deadline, if any lease exists.
    pub(crate) fn next_deadline(&self) -> Option<u64> {
        self.by_deadline.get_min().map(|&(at, _)| at)
    }

    /// Adds a lease (or replaces one with the same id), keeping the deadline index.
    pub(crate) fn insert(&mut self, lease: Lease) {
        if let Some(old) = self.by_id.get(&lease.id) {
            self.by_deadline.remove(&(old.expires_at_ms, old.id));
        }
        self.by_deadline.insert((lease.expires_at_ms, lease.id));
        self.by_id.insert(lease.id, lease);
    }

    /// Removes a lease, keeping the deadline index.
    pub(crate) fn remove(&mut self, id: LeaseId) -> Option<Lease> {
        let lease = self.by_id.remove(&id)?;
        self.by_deadline.remove(&(lease.expires_at_ms, id));
        Some(lease)
    }

    /// Moves a lease's deadline, keeping the index; its time to live, if it exists.
    pub(crate) fn renew(&mut self, id: LeaseId, expires_at_ms: u64) -> Option<u64> {
        let lease = self.by_id.get_mut(&id)?;
        self.by_deadline.remove(&(lease.expires_at_ms, id));
        lease.expires_at_ms = expires_at_ms;
        self.by_deadline.insert((expires_at_ms, id));
        Some(lease.ttl_ms)
    }
}
