//! The snapshot format of the store: a deliberate, versioned encoding, converted by hand from
//! the in-memory structures so that a refactor of those never changes what is on disk.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::{ChangeSet, Event, EventKind, KeyValue, Lease, LeaseId, Revision, Store, StoreConfig};

/// Version byte in front of every encoded store snapshot.
const FORMAT: u8 = 1;

/// Why snapshot bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Written by a format this build does not know.
    #[error("unknown store snapshot format version {0}")]
    UnknownFormat(u8),
    /// Empty input.
    #[error("empty store snapshot")]
    Empty,
    /// The bytes do not decode.
    #[error("malformed store snapshot: {0}")]
    Malformed(#[from] postcard::Error),
    /// The bytes decode but describe an impossible state.
    #[error("inconsistent store snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct KvV1 {
    value: Bytes,
    create_revision: Revision,
    mod_revision: Revision,
    version: u64,
    lease: Option<LeaseId>,
}

#[derive(Serialize, Deserialize)]
struct KeyV1<S> {
    key: S,
    kv: KvV1,
}

#[derive(Serialize, Deserialize)]
struct LeaseV1 {
    id: LeaseId,
    ttl_ms: u64,
    expires_at_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct EventV1<S> {
    delete: bool,
    key: S,
    kv: Option<KvV1>,
    prev: Option<KvV1>,
}

#[derive(Serialize, Deserialize)]
struct ChangeSetV1<S> {
    revision: Revision,
    events: Vec<EventV1<S>>,
}

#[derive(Serialize, Deserialize)]
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
    keys: Vec<KeyV1<String>>,
    leases: Vec<LeaseV1>,
    history: Vec<ChangeSetV1<String>>,
}

fn kv_out(kv: &KeyValue) -> KvV1 {
    KvV1 {
        value: kv.value.clone(),
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

fn kv_in(kv: KvV1) -> KeyValue {
    KeyValue {
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
        version: kv.version,
        lease: kv.lease,
    }
}

/// Serialises a sequence from an exact-size iterator without collecting it first.
struct Seq<I>(std::cell::RefCell<Option<I>>);

impl<I, T> Serialize for Seq<I>
where
    I: ExactSizeIterator<Item = T>,
    T: Serialize,
{
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        match self.0.borrow_mut().take() {
            Some(iter) => s.collect_seq(iter),
            None => Err(serde::ser::Error::custom("sequence serialised twice")),
        }
    }
}

fn seq<I: ExactSizeIterator>(iter: I) -> Seq<I> {
    Seq(std::cell::RefCell::new(Some(iter)))
}

impl Store {
    /// Encodes the whole store (keys, leases and kept history) as versioned bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let header = HeaderV1 {
            revision: self.revision,
            now_ms: self.now_ms,
            next_lease_id: self.next_lease_id,
            compacted: self.history.compacted(),
            key_count: self.keys.len() as u64,
        };
        let keys = seq(self.keys.iter().map(|(k, kv)| KeyV1 {
            key: k.as_str(),
            kv: kv_out(kv),
        }));
        let leases = seq(self.leases.values().map(|l| LeaseV1 {
            id: l.id,
            ttl_ms: l.ttl_ms,
            expires_at_ms: l.expires_at_ms,
        }));
        let history: Vec<ChangeSetV1<&str>> = self
            .history
            .iter()
            .map(|set| ChangeSetV1 {
                revision: set.revision,
                events: set
                    .events
                    .iter()
                    .map(|e| EventV1 {
                        delete: e.kind == EventKind::Delete,
                        key: e.key.as_str(),
                        kv: e.kv.as_ref().map(kv_out),
                        prev: e.prev.as_ref().map(kv_out),
                    })
                    .collect(),
            })
            .collect();
        let body = (header, keys, leases, history);
        postcard::to_extend(&body, vec![FORMAT])
            .expect("serialising plain data into a Vec cannot fail")
    }

    /// Rebuilds a store from [`Store::encode_snapshot`] output. `config` is this node's own
    /// setting; the history is trimmed to it.
    pub fn decode_snapshot(config: StoreConfig, bytes: &[u8]) -> Result<Store, SnapshotError> {
        let body = match bytes.split_first() {
            None => return Err(SnapshotError::Empty),
            Some((&FORMAT, rest)) => rest,
            Some((&v, _)) => return Err(SnapshotError::UnknownFormat(v)),
        };
        let s: StoreV1 = postcard::from_bytes(body)?;
        if s.keys.len() as u64 != s.header.key_count {
            return Err(SnapshotError::Inconsistent(format!(
                "header says {} keys, found {}",
                s.header.key_count,
                s.keys.len()
            )));
        }
        let mut leases: BTreeMap<LeaseId, Lease> = s
            .leases
            .into_iter()
            .map(|l| {
                let lease = Lease {
                    id: l.id,
                    ttl_ms: l.ttl_ms,
                    expires_at_ms: l.expires_at_ms,
                    keys: BTreeSet::new(),
                };
                (l.id, lease)
            })
            .collect();
        let mut keys = BTreeMap::new();
        for KeyV1 { key, kv } in s.keys {
            if let Some(id) = kv.lease {
                let lease = leases.get_mut(&id).ok_or_else(|| {
                    SnapshotError::Inconsistent(format!("key {key:?} names missing lease {id}"))
                })?;
                lease.keys.insert(key.clone());
            }
            keys.insert(key, kv_in(kv));
        }
        let sets: Vec<ChangeSet> = s
            .history
            .into_iter()
            .map(|set| ChangeSet {
                revision: set.revision,
                events: set
                    .events
                    .into_iter()
                    .map(|e| Event {
                        kind: if e.delete {
                            EventKind::Delete
                        } else {
                            EventKind::Put
                        },
                        key: e.key,
                        kv: e.kv.map(kv_in),
                        prev: e.prev.map(kv_in),
                    })
                    .collect(),
            })
            .collect();
        let contiguous = sets
            .iter()
            .zip(s.header.compacted + 1..)
            .all(|(set, expected)| set.revision == expected)
            && sets.last().map_or(s.header.compacted, |l| l.revision) == s.header.revision;
        if !contiguous {
            return Err(SnapshotError::Inconsistent(
                "history is not contiguous".into(),
            ));
        }
        let history = History::restore(config.history, s.header.compacted, sets);
        Ok(Store {
            config,
            revision: s.header.revision,
            now_ms: s.header.now_ms,
            keys,
            leases,
            next_lease_id: s.header.next_lease_id,
            history,
        })
    }
}
