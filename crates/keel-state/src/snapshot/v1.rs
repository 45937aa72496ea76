//! Store snapshot format 1, as written until 2026-11-25: one postcard tuple of header, keys,
//! leases and history. Frozen; only decoded, so that snapshots taken then still load.

use serde::Deserialize;

use super::history::{ChangeSetRecord, KeyEventRecord};
use super::{Parts, SnapshotError};
use crate::kv::snapshot::KeyRecord;
use crate::lease::snapshot::LeaseRecord;
use crate::lease::Leases;
use crate::{Event, KeyValue, LeaseId, Revision};

#[derive(Deserialize)]
struct HeaderV1 {
    revision: Revision,
    now_ms: u64,
    next_lease_id: LeaseId,
    compacted: Revision,
    key_count: u64,
}

#[derive(Deserialize)]
struct StoreV1 {
    header: HeaderV1,
    keys: Vec<KeyRecord<String>>,
    leases: Vec<LeaseRecord>,
    history: Vec<ChangeSetRecord<KeyEventRecord<String>>>,
}

/// Decodes the bytes after a format-1 version byte.
pub(super) fn decode(body: &[u8]) -> Result<Parts, SnapshotError> {
    let s: StoreV1 = postcard::from_bytes(body)?;
    if s.keys.len() as u64 != s.header.key_count {
        return Err(SnapshotError::Inconsistent(format!(
            "header says {} keys, found {}",
            s.header.key_count,
            s.keys.len()
        )));
    }
    Ok(Parts {
        revision: s.header.revision,
        now_ms: s.header.now_ms,
        keys: s
            .keys
            .into_iter()
            .map(|r| (r.key, KeyValue::from(r.kv)))
            .collect(),
        tombstones: Default::default(),
        tombstones_since: s.header.revision,
        leases: Leases::from_records(s.header.next_lease_id, s.leases)?,
        queues: Default::default(),
        compacted: s.header.compacted,
        history: s
            .history
            .into_iter()
            .map(|set| set.into_change_set(|e| Event::Key(e.into())))
            .collect(),
    })
}
