//! The snapshot format of the store: a deliberate, versioned encoding, converted by hand from
//! the in-memory structures so that a refactor of those never changes what is on disk.
//!
//! Format 2 (today): `2 | postcard(Header) | section*`, where each section is
//! `tag u8 | version u8 | length u64 LE | body` and the header counts the sections. There is
//! one section per capability (its module owns the body's encoding) plus the change history:
//!
//! | tag | section | body |
//! |---|---|---|
//! | 1 | kv | [`crate::kv::snapshot`] |
//! | 2 | lease | [`crate::lease::snapshot`] |
//! | 3 | history | [`history`] |
//! | 4 | tombstones | [`crate::kv::snapshot`] |
//!
//! A new capability adds a section with the next tag; a snapshot without it (taken before the
//! capability existed) restores that capability empty (tombstones: recorded from the
//! snapshot's revision on). An unknown tag or section version is
//! refused: silently dropping state would be worse than not starting. Format 1 (one postcard
//! tuple) is still decoded by [`v1`]. Golden fixtures under `tests/fixtures` pin both.

mod history;
mod v1;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::kv::{self, KeyValue, Kv};
use crate::lease::{self, Leases};
use crate::{ChangeSet, Revision, Store, StoreConfig};

/// Version byte in front of every encoded store snapshot.
const FORMAT: u8 = 2;

const TAG_KV: u8 = 1;
const TAG_LEASE: u8 = 2;
const TAG_HISTORY: u8 = 3;
const TAG_TOMBSTONES: u8 = 4;

/// Why snapshot bytes could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Written by a format this build does not know.
    #[error("unknown store snapshot format version {0}")]
    UnknownFormat(u8),
    /// Empty input.
    #[error("empty store snapshot")]
    Empty,
    /// A section this build does not know (written by a newer build).
    #[error("store snapshot has a section with unknown tag {0}")]
    UnknownSection(u8),
    /// A section version this build does not know.
    #[error("store snapshot section {section} has unknown version {version}")]
    UnknownSectionVersion {
        /// The section's name.
        section: &'static str,
        /// Its version byte.
        version: u8,
    },
    /// The bytes do not decode.
    #[error("malformed store snapshot: {0}")]
    Malformed(#[from] postcard::Error),
    /// The bytes decode but describe an impossible state.
    #[error("inconsistent store snapshot: {0}")]
    Inconsistent(String),
}

#[derive(Serialize, Deserialize)]
struct Header {
    revision: Revision,
    now_ms: u64,
    sections: u32,
}

/// The decoded contents of a snapshot, before they are checked against each other.
pub(super) struct Parts {
    revision: Revision,
    now_ms: u64,
    keys: BTreeMap<String, KeyValue>,
    tombstones: BTreeMap<String, Revision>,
    tombstones_since: Revision,
    leases: Leases,
    compacted: Revision,
    history: Vec<ChangeSet>,
}

/// Serialises a sequence from an exact-size iterator without collecting it first.
pub(crate) struct Seq<I>(std::cell::RefCell<Option<I>>);

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

pub(crate) fn seq<I: ExactSizeIterator>(iter: I) -> Seq<I> {
    Seq(std::cell::RefCell::new(Some(iter)))
}

/// Appends one section: its tag, version and length, then the body `encode` appends.
fn section(out: Vec<u8>, tag: u8, version: u8, encode: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Vec<u8> {
    let mut out = out;
    out.extend_from_slice(&[tag, version]);
    let len_at = out.len();
    out.extend_from_slice(&[0; 8]);
    let mut out = encode(out);
    let len = (out.len() - len_at - 8) as u64;
    out[len_at..len_at + 8].copy_from_slice(&len.to_le_bytes());
    out
}

/// Splits the sections after the header into (tag, version, body), refusing duplicates.
fn split_sections(mut rest: &[u8], count: u32) -> Result<BTreeMap<u8, (u8, &[u8])>, SnapshotError> {
    let mut sections = BTreeMap::new();
    for _ in 0..count {
        let truncated = || SnapshotError::Inconsistent("a section is truncated".into());
        let (head, after) = rest.split_at_checked(10).ok_or_else(truncated)?;
        let (tag, version) = (head[0], head[1]);
        let mut len = [0u8; 8];
        len.copy_from_slice(&head[2..10]);
        let len = usize::try_from(u64::from_le_bytes(len)).map_err(|_| truncated())?;
        let (body, after) = after.split_at_checked(len).ok_or_else(truncated)?;
        if !matches!(tag, TAG_KV | TAG_LEASE | TAG_HISTORY | TAG_TOMBSTONES) {
            return Err(SnapshotError::UnknownSection(tag));
        }
        if sections.insert(tag, (version, body)).is_some() {
            return Err(SnapshotError::Inconsistent(format!(
                "section {tag} appears twice"
            )));
        }
        rest = after;
    }
    if !rest.is_empty() {
        return Err(SnapshotError::Inconsistent(format!(
            "{} bytes follow the last section",
            rest.len()
        )));
    }
    Ok(sections)
}

fn decode_v2(body: &[u8]) -> Result<Parts, SnapshotError> {
    let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(body)?;
    let sections = split_sections(rest, header.sections)?;
    let keys = match sections.get(&TAG_KV) {
        Some(&(v, b)) => kv::snapshot::decode(v, b)?,
        None => BTreeMap::new(),
    };
    let (tombstones_since, tombstones) = match sections.get(&TAG_TOMBSTONES) {
        Some(&(v, b)) => kv::snapshot::decode_tombstones(v, b)?,
        None => (header.revision, BTreeMap::new()),
    };
    let leases = match sections.get(&TAG_LEASE) {
        Some(&(v, b)) => lease::snapshot::decode(v, b)?,
        None => Leases::default(),
    };
    let (compacted, history) = match sections.get(&TAG_HISTORY) {
        Some(&(v, b)) => history::decode(v, b)?,
        None => (header.revision, Vec::new()),
    };
    Ok(Parts {
        revision: header.revision,
        now_ms: header.now_ms,
        keys,
        tombstones,
        tombstones_since,
        leases,
        compacted,
        history,
    })
}

impl Store {
    /// Encodes the whole store (every capability's state and the kept history) as versioned
    /// bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        let header = Header {
            revision: self.revision,
            now_ms: self.now_ms,
            sections: 4,
        };
        let out = postcard::to_extend(&header, vec![FORMAT])
            .expect("serialising plain data into a Vec cannot fail");
        let out = section(out, TAG_KV, kv::snapshot::VERSION, |o| {
            kv::snapshot::encode(&self.kv, o)
        });
        let out = section(out, TAG_LEASE, lease::snapshot::VERSION, |o| {
            lease::snapshot::encode(&self.leases, o)
        });
        let out = section(out, TAG_HISTORY, history::VERSION, |o| {
            history::encode(&self.history, o)
        });
        section(out, TAG_TOMBSTONES, kv::snapshot::TOMBSTONES_VERSION, |o| {
            kv::snapshot::encode_tombstones(&self.kv, o)
        })
    }

    /// Rebuilds a store from [`Store::encode_snapshot`] output (or format 1). `config` is this
    /// node's own setting; the history is trimmed to it.
    pub fn decode_snapshot(config: StoreConfig, bytes: &[u8]) -> Result<Store, SnapshotError> {
        let parts = match bytes.split_first() {
            None => return Err(SnapshotError::Empty),
            Some((&FORMAT, rest)) => decode_v2(rest)?,
            Some((&1, rest)) => v1::decode(rest)?,
            Some((&v, _)) => return Err(SnapshotError::UnknownFormat(v)),
        };
        let Parts {
            revision,
            now_ms,
            keys,
            tombstones,
            tombstones_since,
            mut leases,
            compacted,
            history,
        } = parts;
        for (key, kv) in &keys {
            if let Some(id) = kv.lease {
                if leases.get(id).is_none() {
                    return Err(SnapshotError::Inconsistent(format!(
                        "key {key:?} names missing lease {id}"
                    )));
                }
                leases.attach(Some(id), key);
            }
        }
        let contiguous = history
            .iter()
            .zip(compacted + 1..)
            .all(|(set, expected)| set.revision == expected)
            && history.last().map_or(compacted, |l| l.revision) == revision;
        if !contiguous {
            return Err(SnapshotError::Inconsistent(
                "history is not contiguous".into(),
            ));
        }
        let history = History::restore(config.history, compacted, history);
        Ok(Store {
            config,
            revision,
            now_ms,
            kv: Kv::from_parts(keys, tombstones, tombstones_since),
            leases,
            history,
        })
    }
}
