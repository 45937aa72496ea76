//! Keys and values: the state of the key-value capability and the writes every family makes
//! to it (a lease revoke deletes keys; a transaction writes them).

mod command;
mod read;
pub(crate) mod snapshot;

use std::collections::BTreeMap;

use imbl::OrdMap;
use std::ops::Bound;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub(crate) use command::apply;
pub use command::{KvCommand, KvError, KvOutcome};
pub(crate) use read::{get_at, list_at};

use crate::lease::Leases;
use crate::writes::Writes;
use crate::{Event, KeyEvent, KeyEventKind, LeaseId, Revision};

/// One key's value and metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    /// The raw value bytes.
    pub value: Bytes,
    /// Revision at which the key was (last) created.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// Number of writes since the key was created (1 after creation).
    pub version: u64,
    /// The lease the key is attached to, if any.
    pub lease: Option<LeaseId>,
}

/// A key's value and metadata in serialisable form, as carried in outcomes (the Raft
/// response type); never persisted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyValueWire {
    /// The value.
    pub value: Bytes,
    /// See [`KeyValue::create_revision`].
    pub create_revision: Revision,
    /// See [`KeyValue::mod_revision`].
    pub mod_revision: Revision,
    /// See [`KeyValue::version`].
    pub version: u64,
    /// See [`KeyValue::lease`].
    pub lease: Option<LeaseId>,
}

impl From<KeyValueWire> for KeyValue {
    fn from(w: KeyValueWire) -> Self {
        KeyValue {
            value: w.value,
            create_revision: w.create_revision,
            mod_revision: w.mod_revision,
            version: w.version,
            lease: w.lease,
        }
    }
}

impl From<&KeyValue> for KeyValueWire {
    fn from(kv: &KeyValue) -> Self {
        KeyValueWire {
            value: kv.value.clone(),
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
            version: kv.version,
            lease: kv.lease,
        }
    }
}

/// Every key, sorted, and when each deleted key went.
///
/// Tombstones make "did a key under P change after revision R?" exact for any R, however far
/// behind the change history: a key that exists changed after R if its `mod_revision` is
/// above R; a key that does not exist changed after R if its tombstone is. A tombstone is kept
/// until its key is written again. Tombstones are recorded from `tombstones_since` on (0 for
/// a store that always had them; a store restored from a snapshot without them starts at the
/// snapshot's revision, and answers "changed" for an older R it cannot know about).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
///
/// Both maps are persistent (structurally shared): cloning a `Kv` is O(1), so a snapshot can
/// take the state in an instant and encode it while applying goes on.
pub(crate) struct Kv {
    keys: OrdMap<String, KeyValue>,
    tombstones: OrdMap<String, Revision>,
    tombstones_since: Revision,
}

impl Kv {
    pub(crate) fn from_parts(
        keys: BTreeMap<String, KeyValue>,
        tombstones: BTreeMap<String, Revision>,
        tombstones_since: Revision,
    ) -> Self {
        Kv {
            keys: keys.into_iter().collect(),
            tombstones: tombstones.into_iter().collect(),
            tombstones_since,
        }
    }

    /// Deleted keys (not written since) with the revision of their deletion.
    pub(crate) fn tombstones(&self) -> impl ExactSizeIterator<Item = (&String, &Revision)> {
        self.tombstones.iter()
    }

    /// The revision from which on every deletion has a tombstone.
    pub(crate) fn tombstones_since(&self) -> Revision {
        self.tombstones_since
    }

    /// Whether `key` was written or deleted after revision `after`.
    pub(crate) fn key_changed_after(&self, key: &str, after: Revision) -> bool {
        match self.keys.get(key) {
            Some(kv) => kv.mod_revision > after,
            None => {
                after < self.tombstones_since
                    || self.tombstones.get(key).is_some_and(|&rev| rev > after)
            }
        }
    }

    /// Whether any key under `prefix` was written or deleted after revision `after`. Scans the
    /// keys and tombstones under the prefix.
    pub(crate) fn prefix_changed_after(&self, prefix: &str, after: Revision) -> bool {
        if after < self.tombstones_since {
            return true;
        }
        let deleted = self
            .tombstones
            .range::<_, str>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .any(|(_, &rev)| rev > after);
        deleted
            || self
                .range(prefix, None)
                .any(|(_, kv)| kv.mod_revision > after)
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&KeyValue> {
        self.keys.get(key)
    }

    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &KeyValue)> {
        self.keys.iter()
    }

    /// Keys starting with `prefix`, sorting after `after` if given, in order.
    pub(crate) fn range<'a>(
        &'a self,
        prefix: &'a str,
        after: Option<&str>,
    ) -> impl Iterator<Item = (&'a String, &'a KeyValue)> + 'a {
        let lower = match after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_owned()),
            _ => Bound::Included(prefix.to_owned()),
        };
        self.keys
            .range((lower, Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
    }

    /// Writes a key at `w`'s revision. The caller has checked that `lease`, if any, exists.
    pub(crate) fn put(
        &mut self,
        w: &mut Writes,
        leases: &mut Leases,
        key: &str,
        value: Bytes,
        lease: Option<LeaseId>,
    ) {
        let prev = self.keys.get(key).cloned();
        let kv = KeyValue {
            value,
            create_revision: prev.as_ref().map_or(w.revision, |p| p.create_revision),
            mod_revision: w.revision,
            version: prev.as_ref().map_or(1, |p| p.version + 1),
            lease,
        };
        let old_lease = prev.as_ref().and_then(|p| p.lease);
        if old_lease != lease {
            leases.detach(old_lease, key);
            leases.attach(lease, key);
        }
        if prev.is_none() {
            self.tombstones.remove(key);
        }
        self.keys.insert(key.to_owned(), kv.clone());
        w.events.push(Event::Key(KeyEvent {
            kind: KeyEventKind::Put,
            key: key.to_owned(),
            kv: Some(kv),
            prev,
        }));
    }

    /// Deletes a key at `w`'s revision; false if it was absent.
    pub(crate) fn remove(&mut self, w: &mut Writes, leases: &mut Leases, key: &str) -> bool {
        let Some(prev) = self.keys.remove(key) else {
            return false;
        };
        leases.detach(prev.lease, key);
        self.tombstones.insert(key.to_owned(), w.revision);
        w.events.push(Event::Key(KeyEvent {
            kind: KeyEventKind::Delete,
            key: key.to_owned(),
            kv: None,
            prev: Some(prev),
        }));
        true
    }

    /// Deletes every key under `prefix`; returns how many.
    pub(crate) fn remove_prefix(
        &mut self,
        w: &mut Writes,
        leases: &mut Leases,
        prefix: &str,
    ) -> u64 {
        let doomed: Vec<String> = self.range(prefix, None).map(|(k, _)| k.clone()).collect();
        for key in &doomed {
            self.remove(w, leases, key);
        }
        doomed.len() as u64
    }

    /// The value `key` would hold after adding `by`, or why it cannot.
    pub(crate) fn incremented(&self, key: &str, by: i64) -> Result<i64, KvError> {
        let current = match self.keys.get(key) {
            None => 0,
            Some(kv) => std::str::from_utf8(&kv.value)
                .ok()
                .and_then(|s| s.parse::<i64>().ok())
                .ok_or_else(|| KvError::NotANumber(key.to_owned()))?,
        };
        current
            .checked_add(by)
            .ok_or_else(|| KvError::Overflow(key.to_owned()))
    }

    /// Stores `value` at `key` as a decimal string, keeping the key's lease.
    pub(crate) fn put_counter(
        &mut self,
        w: &mut Writes,
        leases: &mut Leases,
        key: &str,
        value: i64,
    ) {
        let lease = self.keys.get(key).and_then(|kv| kv.lease);
        self.put(w, leases, key, Bytes::from(value.to_string()), lease);
    }
}
