//! The snapshot format of the store: a deliberate, versioned encoding, converted by hand from
//! the in-memory structures so that a refactor of those never changes what is on disk.
//!
//! Format 3 (today): `3 | postcard(Header) | section* | 0`, where each section is
//! `tag u8 | version u8 | chunk* | 0u32` and a chunk is `length u32 LE | bytes` (at most
//! 64 KiB): the body is the chunks joined. Chunks let a section be written as it is encoded
//! ([`Store::write_snapshot`]), never whole in memory. There is one section per capability
//! (its module owns the body's encoding) plus the change history:
//!
//! | tag | section | body |
//! |---|---|---|
//! | 1 | kv | [`crate::kv::snapshot`] |
//! | 2 | lease | [`crate::lease::snapshot`] |
//! | 3 | history | [`history`] |
//! | 4 | tombstones | [`crate::kv::snapshot`] |
//! | 5 | queue | [`crate::queue::snapshot`] |
//!
//! A new capability adds a section with the next tag; a snapshot without it (taken before the
//! capability existed) restores that capability empty (tombstones: recorded from the
//! snapshot's revision on). An unknown tag or section version is
//! refused: silently dropping state would be worse than not starting. Format 2 (the same
//! sections, each behind its byte length) is decoded by [`v2`], format 1 (one postcard tuple)
//! by [`v1`]. Golden fixtures under `tests/fixtures` pin all three.

mod history;
mod read;
mod v1;
mod v2;

pub(crate) use read::Input;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::history::History;
use crate::kv::{self, KeyValue, Kv};
use crate::lease::{self, Leases};
use crate::queue::{self, Queues};
use crate::{ChangeSet, Revision, Store, StoreConfig};

/// Version byte in front of every encoded store snapshot.
const FORMAT: u8 = 3;

/// The tag that ends the list of sections.
const END: u8 = 0;

const TAG_KV: u8 = 1;
const TAG_LEASE: u8 = 2;
const TAG_HISTORY: u8 = 3;
const TAG_TOMBSTONES: u8 = 4;
const TAG_QUEUE: u8 = 5;

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
}

/// The decoded contents of a snapshot, before they are checked against each other.
pub(super) struct Parts {
    revision: Revision,
    now_ms: u64,
    keys: BTreeMap<String, KeyValue>,
    tombstones: BTreeMap<String, Revision>,
    tombstones_since: Revision,
    leases: Leases,
    queues: Queues,
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

/// Decodes the sections (tag → (version, body)) of a format-2 or format-3 snapshot.
fn decode_sections(
    revision: Revision,
    now_ms: u64,
    sections: &BTreeMap<u8, (u8, &[u8])>,
) -> Result<Parts, SnapshotError> {
    let keys = match sections.get(&TAG_KV) {
        Some(&(v, b)) => kv::snapshot::decode(v, b)?,
        None => BTreeMap::new(),
    };
    let (tombstones_since, tombstones) = match sections.get(&TAG_TOMBSTONES) {
        Some(&(v, b)) => kv::snapshot::decode_tombstones(v, b)?,
        None => (revision, BTreeMap::new()),
    };
    let leases = match sections.get(&TAG_LEASE) {
        Some(&(v, b)) => lease::snapshot::decode(v, b)?,
        None => Leases::default(),
    };
    let queues = match sections.get(&TAG_QUEUE) {
        Some(&(v, b)) => queue::snapshot::decode(v, b, now_ms)?,
        None => Queues::default(),
    };
    let (compacted, history) = match sections.get(&TAG_HISTORY) {
        Some(&(v, b)) => history::decode(v, b)?,
        None => (revision, Vec::new()),
    };
    Ok(Parts {
        revision,
        now_ms,
        keys,
        tombstones,
        tombstones_since,
        leases,
        queues,
        compacted,
        history,
    })
}

fn known_tag(tag: u8) -> bool {
    matches!(
        tag,
        TAG_KV | TAG_LEASE | TAG_HISTORY | TAG_TOMBSTONES | TAG_QUEUE
    )
}

/// Largest chunk a section is written in.
const CHUNK: usize = 64 << 10;

/// Writes a section's body as chunks (`length u32 LE | bytes`), then a zero length: a section
/// goes out as it is encoded, in at most [`CHUNK`] bytes of memory.
struct Chunks<'a, W: Write> {
    out: &'a mut W,
    buf: Vec<u8>,
    /// The first error writing to `out` (postcard reports only that writing failed).
    error: Option<io::Error>,
}

impl<W: Write> Chunks<'_, W> {
    fn emit(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let len = u32::try_from(self.buf.len()).map_err(io::Error::other)?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

impl<W: Write> Write for Chunks<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if self.buf.len() >= CHUNK {
            if let Err(e) = self.emit() {
                let message = e.to_string();
                self.error = Some(e);
                return Err(io::Error::other(message));
            }
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one section: tag, version, then the chunks of the body `encode` writes.
fn write_section<W: Write>(
    out: &mut W,
    tag: u8,
    version: u8,
    encode: impl FnOnce(&mut Chunks<'_, W>) -> Result<(), postcard::Error>,
) -> io::Result<()> {
    out.write_all(&[tag, version])?;
    let mut chunks = Chunks {
        out,
        buf: Vec::with_capacity(CHUNK + 1024),
        error: None,
    };
    if let Err(e) = encode(&mut chunks) {
        return Err(chunks
            .error
            .take()
            .unwrap_or_else(|| io::Error::other(format!("encoding section {tag}: {e}"))));
    }
    chunks.emit()?;
    out.write_all(&0u32.to_le_bytes())
}

impl Store {
    /// Encodes the whole store (every capability's state and the kept history) as versioned
    /// bytes, in memory. [`Store::write_snapshot`] streams the same bytes.
    pub fn encode_snapshot(&self) -> Vec<u8> {
        self.write_snapshot(Vec::new())
            .expect("writing into a Vec cannot fail")
    }

    /// Writes the snapshot to `out` section by section as it is encoded, holding at most one
    /// chunk of it in memory. Returns `out`.
    pub fn write_snapshot<W: Write>(&self, mut out: W) -> io::Result<W> {
        let header = Header {
            revision: self.revision,
            now_ms: self.now_ms,
        };
        out.write_all(&[FORMAT])?;
        postcard::to_io(&header, &mut out).map_err(io::Error::other)?;
        write_section(&mut out, TAG_KV, kv::snapshot::VERSION, |w| {
            kv::snapshot::encode(&self.kv, w)
        })?;
        write_section(&mut out, TAG_LEASE, lease::snapshot::VERSION, |w| {
            lease::snapshot::encode(&self.leases, w)
        })?;
        write_section(&mut out, TAG_HISTORY, history::VERSION, |w| {
            history::encode(&self.history, w)
        })?;
        write_section(
            &mut out,
            TAG_TOMBSTONES,
            kv::snapshot::TOMBSTONES_VERSION,
            |w| kv::snapshot::encode_tombstones(&self.kv, w),
        )?;
        write_section(&mut out, TAG_QUEUE, queue::snapshot::VERSION, |w| {
            queue::snapshot::encode(&self.queues, w)
        })?;
        out.write_all(&[END])?;
        Ok(out)
    }

    /// SHA-256 of the replicated state: the revision, the time of the last request, and
    /// every capability's state as its snapshot section encodes it (not the history, whose
    /// length is each node's own setting). Equal on every node that applied the same log.
    pub fn state_digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        let header = Header {
            revision: self.revision,
            now_ms: self.now_ms,
        };
        // Into a hasher, as into a Vec, encoding cannot fail: these are the snapshot's own
        // encoders, whose every type postcard can write.
        postcard::to_io(&header, &mut h).expect("hashing cannot fail");
        kv::snapshot::encode(&self.kv, &mut h).expect("hashing cannot fail");
        lease::snapshot::encode(&self.leases, &mut h).expect("hashing cannot fail");
        kv::snapshot::encode_tombstones(&self.kv, &mut h).expect("hashing cannot fail");
        queue::snapshot::encode(&self.queues, &mut h).expect("hashing cannot fail");
        h.finalize().into()
    }

    /// Rebuilds a store from [`Store::encode_snapshot`] output (or an older format). `config`
    /// is this node's own setting; the history is trimmed to it.
    pub fn decode_snapshot(config: StoreConfig, bytes: &[u8]) -> Result<Store, SnapshotError> {
        Self::read_snapshot(config, bytes)
    }

    /// Like [`Store::decode_snapshot`], reading the snapshot from `reader` as it decodes it:
    /// the keys and tombstones are decoded a record at a time, so restoring holds the state
    /// and a buffer, not the snapshot's bytes. (Formats 1 and 2 are read whole first.)
    pub fn read_snapshot(config: StoreConfig, reader: impl Read) -> Result<Store, SnapshotError> {
        let mut input = Input::new(reader);
        let parts = match input.byte()? {
            None => return Err(SnapshotError::Empty),
            Some(FORMAT) => read::read_v3(&mut input)?,
            Some(2) => v2::decode(&input.rest()?)?,
            Some(1) => v1::decode(&input.rest()?)?,
            Some(v) => return Err(SnapshotError::UnknownFormat(v)),
        };
        let Parts {
            revision,
            now_ms,
            keys,
            tombstones,
            tombstones_since,
            mut leases,
            queues,
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
            queues,
            history,
        })
    }
}
