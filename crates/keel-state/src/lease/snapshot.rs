//! The lease section of a store snapshot.
//!
//! Version 1: the next lease id, then a postcard sequence of [`LeaseRecord`] by id. The keys
//! attached to each lease are not stored: they are rebuilt from the keys' own lease field.

use serde::{Deserialize, Serialize};

use super::{Lease, Leases};
use crate::snapshot::{seq, SnapshotError};
use crate::LeaseId;

/// The section's current version.
pub(crate) const VERSION: u8 = 1;

/// A lease as stored in snapshots (format 1 stores the same record).
#[derive(Serialize, Deserialize)]
pub(crate) struct LeaseRecord {
    pub(crate) id: LeaseId,
    pub(crate) ttl_ms: u64,
    pub(crate) expires_at_ms: u64,
}

impl From<LeaseRecord> for Lease {
    fn from(r: LeaseRecord) -> Self {
        Lease {
            id: r.id,
            ttl_ms: r.ttl_ms,
            expires_at_ms: r.expires_at_ms,
            keys: imbl::OrdSet::new(),
        }
    }
}

impl Leases {
    /// Leases from their records, with no keys attached yet.
    pub(crate) fn from_records(
        next_id: LeaseId,
        records: Vec<LeaseRecord>,
    ) -> Result<Self, SnapshotError> {
        let mut leases = Leases {
            next_id,
            ..Leases::default()
        };
        for r in records {
            if r.id >= next_id {
                return Err(SnapshotError::Inconsistent(format!(
                    "lease {} exists but the next lease id is {next_id}",
                    r.id
                )));
            }
            leases.insert(Lease::from(r));
        }
        Ok(leases)
    }
}

pub(crate) fn encode(leases: &Leases, out: impl std::io::Write) -> Result<(), postcard::Error> {
    let records = seq(leases.iter().map(|l| LeaseRecord {
        id: l.id,
        ttl_ms: l.ttl_ms,
        expires_at_ms: l.expires_at_ms,
    }));
    postcard::to_io(&(leases.next_id(), records), out).map(drop)
}

pub(crate) fn decode(version: u8, body: &[u8]) -> Result<Leases, SnapshotError> {
    if version != VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "lease",
            version,
        });
    }
    let (next_id, records): (LeaseId, Vec<LeaseRecord>) = postcard::from_bytes(body)?;
    Leases::from_records(next_id, records)
}
