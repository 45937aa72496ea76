//! Leases: a time to live that keys can be attached to; when it runs out, the keys go.

use std::collections::BTreeSet;

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
    pub keys: BTreeSet<String>,
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

mod commands {
    use std::collections::BTreeSet;

    use crate::store::Batch;
    use crate::{CommandError, Lease, LeaseGranted, LeaseId, Outcome, Store};

    impl Store {
        pub(crate) fn cmd_lease_grant(&mut self, ttl_ms: u64) -> Outcome {
            if ttl_ms == 0 {
                return Outcome::Rejected(CommandError::InvalidTtl);
            }
            let id = self.next_lease_id;
            self.next_lease_id += 1;
            let expires_at_ms = self.now_ms.saturating_add(ttl_ms);
            self.leases.insert(
                id,
                Lease {
                    id,
                    ttl_ms,
                    expires_at_ms,
                    keys: BTreeSet::new(),
                },
            );
            Outcome::Lease(LeaseGranted { id, ttl_ms })
        }

        pub(crate) fn cmd_lease_keepalive(&mut self, id: LeaseId) -> Outcome {
            let now = self.now_ms;
            match self.leases.get_mut(&id) {
                Some(lease) => {
                    lease.expires_at_ms = now.saturating_add(lease.ttl_ms);
                    Outcome::Lease(LeaseGranted {
                        id,
                        ttl_ms: lease.ttl_ms,
                    })
                }
                None => Outcome::Rejected(CommandError::LeaseNotFound(id)),
            }
        }

        /// Removes a lease and deletes its keys in `batch`; returns how many keys.
        fn revoke(&mut self, batch: &mut Batch, id: LeaseId) -> Option<u64> {
            let lease = self.leases.remove(&id)?;
            let mut deleted = 0;
            for key in &lease.keys {
                if self.remove_key(batch, key) {
                    deleted += 1;
                }
            }
            Some(deleted)
        }

        pub(crate) fn cmd_lease_revoke(&mut self, batch: &mut Batch, id: LeaseId) -> Outcome {
            match self.revoke(batch, id) {
                Some(deleted) => Outcome::Revoked {
                    revision: self.revision_after(batch),
                    deleted,
                },
                None => Outcome::Rejected(CommandError::LeaseNotFound(id)),
            }
        }

        pub(crate) fn cmd_lease_expire(&mut self, batch: &mut Batch, ids: &[LeaseId]) -> Outcome {
            let now = self.now_ms;
            let mut expired = Vec::new();
            for &id in ids {
                let due = self.leases.get(&id).is_some_and(|l| l.expires_at_ms <= now);
                if due && self.revoke(batch, id).is_some() {
                    expired.push(id);
                }
            }
            Outcome::Expired {
                ids: expired,
                revision: self.revision_after(batch),
            }
        }

        pub(crate) fn cmd_lease_refresh_all(&mut self) -> Outcome {
            let now = self.now_ms;
            for lease in self.leases.values_mut() {
                lease.expires_at_ms = now.saturating_add(lease.ttl_ms);
            }
            Outcome::Refreshed {
                leases: self.leases.len() as u64,
            }
        }
    }
}
