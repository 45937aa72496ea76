//! The key-value sections of a store snapshot: the keys, and the tombstones.
//!
//! Keys, version 1: a postcard sequence of [`KeyRecord`], sorted by key. [`KvRecord`] is also
//! the key layout of the change-history section and of snapshot format 1.
//!
//! Tombstones, version 1: the revision they are recorded since, then a postcard sequence of
//! (key, revision of its deletion), sorted by key.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{KeyValue, Kv};
use crate::snapshot::{seq, Input, SnapshotError};
use crate::{LeaseId, Revision};

/// The section's current version.
pub(crate) const VERSION: u8 = 1;

/// A key's value and metadata as stored in snapshots.
#[derive(Serialize, Deserialize)]
pub(crate) struct KvRecord {
    value: Bytes,
    create_revision: Revision,
    mod_revision: Revision,
    version: u64,
    lease: Option<LeaseId>,
}

impl From<&KeyValue> for KvRecord {
    fn from(kv: &KeyValue) -> Self {
        KvRecord {
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

impl From<KvRecord> for KeyValue {
    fn from(r: KvRecord) -> Self {
        KeyValue {
            value: r.value,
            create_revision: r.create_revision,
            mod_revision: r.mod_revision,
            version: r.version,
            lease: r.lease,
        }
    }
}

/// A key with its value.
#[derive(Serialize, Deserialize)]
pub(crate) struct KeyRecord<S> {
    pub(crate) key: S,
    pub(crate) kv: KvRecord,
}

pub(crate) fn encode(kv: &Kv, out: impl std::io::Write) -> Result<(), postcard::Error> {
    let keys = seq(kv.iter().map(|(key, kv)| KeyRecord {
        key: key.as_str(),
        kv: kv.into(),
    }));
    postcard::to_io(&keys, out).map(drop)
}

/// Decodes the keys; attaching them to their leases is the caller's (it knows the leases).
pub(crate) fn decode(
    version: u8,
    body: &[u8],
) -> Result<BTreeMap<String, KeyValue>, SnapshotError> {
    if version != VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "kv",
            version,
        });
    }
    let records: Vec<KeyRecord<String>> = postcard::from_bytes(body)?;
    Ok(records
        .into_iter()
        .map(|r| (r.key, KeyValue::from(r.kv)))
        .collect())
}

/// Reads the keys a record at a time (the streaming twin of [`decode`], same bytes).
pub(crate) fn read<R: std::io::Read>(
    version: u8,
    input: &mut Input<R>,
) -> Result<BTreeMap<String, KeyValue>, SnapshotError> {
    if version != VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "kv",
            version,
        });
    }
    let count: usize = input.value()?;
    let mut keys = BTreeMap::new();
    for _ in 0..count {
        let r: KeyRecord<String> = input.value()?;
        keys.insert(r.key, KeyValue::from(r.kv));
    }
    Ok(keys)
}

/// The tombstone section's current version.
pub(crate) const TOMBSTONES_VERSION: u8 = 1;

pub(crate) fn encode_tombstones(kv: &Kv, out: impl std::io::Write) -> Result<(), postcard::Error> {
    let tombstones = seq(kv.tombstones().map(|(k, rev)| (k.as_str(), *rev)));
    postcard::to_io(&(kv.tombstones_since(), tombstones), out).map(drop)
}

/// The revision tombstones are recorded since, and the tombstones.
pub(crate) fn decode_tombstones(
    version: u8,
    body: &[u8],
) -> Result<(Revision, BTreeMap<String, Revision>), SnapshotError> {
    if version != TOMBSTONES_VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "tombstones",
            version,
        });
    }
    let (since, tombstones): (Revision, Vec<(String, Revision)>) = postcard::from_bytes(body)?;
    Ok((since, tombstones.into_iter().collect()))
}

/// Reads the tombstones a record at a time (the streaming twin of [`decode_tombstones`]).
pub(crate) fn read_tombstones<R: std::io::Read>(
    version: u8,
    input: &mut Input<R>,
) -> Result<(Revision, BTreeMap<String, Revision>), SnapshotError> {
    if version != TOMBSTONES_VERSION {
        return Err(SnapshotError::UnknownSectionVersion {
            section: "tombstones",
            version,
        });
    }
    let since: Revision = input.value()?;
    let count: usize = input.value()?;
    let mut tombstones = BTreeMap::new();
    for _ in 0..count {
        let (key, rev): (String, Revision) = input.value()?;
        tombstones.insert(key, rev);
    }
    Ok((since, tombstones))
}
