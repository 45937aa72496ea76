//! Lease commands (grant, keep alive, revoke, expire, refresh all), their outcomes and
//! refusals.

use serde::{Deserialize, Serialize};

use super::{Lease, Leases};
use crate::kv::Kv;
use crate::writes::Writes;
use crate::{CommandError, LeaseId, Revision};

/// A change to leases. Persisted: add variants only at the end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseCommand {
    /// Create a lease.
    Grant {
        /// Time to live in milliseconds.
        ttl_ms: u64,
    },
    /// Restart a lease's time to live from the request's time.
    KeepAlive {
        /// The lease.
        id: LeaseId,
    },
    /// Delete a lease and every key attached to it.
    Revoke {
        /// The lease.
        id: LeaseId,
    },
    /// Revoke those of `ids` whose deadline has passed at the request's time. Proposed by the
    /// leader when it sees deadlines pass; a lease kept alive in the meantime survives.
    Expire {
        /// Candidates for expiry.
        ids: Vec<LeaseId>,
    },
    /// Give every lease its full time to live again, from the request's time. Proposed by a
    /// new leader so that downtime or a leader change never mass-expires leases.
    RefreshAll,
}

impl LeaseCommand {
    pub(crate) fn size_hint(&self) -> usize {
        match self {
            LeaseCommand::Expire { ids } => ids.len() * 8,
            LeaseCommand::Grant { .. }
            | LeaseCommand::KeepAlive { .. }
            | LeaseCommand::Revoke { .. }
            | LeaseCommand::RefreshAll => 0,
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        match self {
            LeaseCommand::Grant { .. } => "lease_grant",
            LeaseCommand::KeepAlive { .. } => "lease_keepalive",
            LeaseCommand::Revoke { .. } => "lease_revoke",
            LeaseCommand::Expire { .. } => "lease_expire",
            LeaseCommand::RefreshAll => "lease_refresh_all",
        }
    }
}

/// A granted or renewed lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseGranted {
    /// Its id.
    pub id: LeaseId,
    /// Its time to live, in milliseconds.
    pub ttl_ms: u64,
}

/// What a lease command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseOutcome {
    /// A lease was granted or kept alive.
    Granted(LeaseGranted),
    /// A lease was revoked (and its keys deleted).
    Revoked {
        /// The store revision after the revoke.
        revision: Revision,
        /// How many keys were deleted with it.
        deleted: u64,
    },
    /// Leases expired (possibly none of the candidates).
    Expired {
        /// The leases actually revoked.
        ids: Vec<LeaseId>,
        /// The store revision afterwards.
        revision: Revision,
    },
    /// Every lease was given its full time to live again.
    Refreshed {
        /// How many leases there are.
        leases: u64,
    },
}

/// Why a lease command (or a key write naming a lease) was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum LeaseError {
    /// The lease does not exist.
    #[error("lease {0} not found")]
    NotFound(LeaseId),
    /// A lease TTL of zero.
    #[error("a lease needs a positive time to live")]
    InvalidTtl,
}

/// Removes a lease and deletes its keys; how many keys, or `None` if there is no such lease.
fn revoke(leases: &mut Leases, kv: &mut Kv, w: &mut Writes, id: LeaseId) -> Option<u64> {
    let lease = leases.remove(id)?;
    let mut deleted = 0;
    for key in &lease.keys {
        if kv.remove(w, leases, key) {
            deleted += 1;
        }
    }
    Some(deleted)
}

/// Applies a lease command: every check first, then the writes.
pub(crate) fn apply(
    cmd: &LeaseCommand,
    leases: &mut Leases,
    kv: &mut Kv,
    w: &mut Writes,
) -> Result<LeaseOutcome, CommandError> {
    let now = w.now_ms;
    match cmd {
        LeaseCommand::Grant { ttl_ms } => {
            if *ttl_ms == 0 {
                return Err(LeaseError::InvalidTtl.into());
            }
            let id = leases.next_id;
            leases.next_id += 1;
            let lease = Lease {
                id,
                ttl_ms: *ttl_ms,
                expires_at_ms: now.saturating_add(*ttl_ms),
                keys: imbl::OrdSet::new(),
            };
            leases.insert(lease);
            Ok(LeaseOutcome::Granted(LeaseGranted {
                id,
                ttl_ms: *ttl_ms,
            }))
        }
        LeaseCommand::KeepAlive { id } => {
            let ttl_ms = leases
                .get(*id)
                .map(|l| l.ttl_ms)
                .ok_or(LeaseError::NotFound(*id))?;
            leases.renew(*id, now.saturating_add(ttl_ms));
            Ok(LeaseOutcome::Granted(LeaseGranted { id: *id, ttl_ms }))
        }
        LeaseCommand::Revoke { id } => {
            let deleted = revoke(leases, kv, w, *id).ok_or(LeaseError::NotFound(*id))?;
            Ok(LeaseOutcome::Revoked {
                revision: w.revision_after(),
                deleted,
            })
        }
        LeaseCommand::Expire { ids } => {
            let mut expired = Vec::new();
            for &id in ids {
                let due = leases.get(id).is_some_and(|l| l.expires_at_ms <= now);
                if due && revoke(leases, kv, w, id).is_some() {
                    expired.push(id);
                }
            }
            Ok(LeaseOutcome::Expired {
                ids: expired,
                revision: w.revision_after(),
            })
        }
        LeaseCommand::RefreshAll => {
            let renewals: Vec<(LeaseId, u64)> = leases.iter().map(|l| (l.id, l.ttl_ms)).collect();
            for (id, ttl_ms) in renewals {
                leases.renew(id, now.saturating_add(ttl_ms));
            }
            Ok(LeaseOutcome::Refreshed {
                leases: leases.by_id.len() as u64,
            })
        }
    }
}
