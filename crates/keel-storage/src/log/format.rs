//! The bytes of a log segment: its header and its records.
//!
//! Segment file `{first_index:020}.seg`:
//! - header (32 bytes): `KEELLOG\0` | version u32 | reserved u32 | first index u64 |
//!   crc32 of the preceding 24 bytes | 4 zero bytes;
//! - records: length u32 (of what follows the checksum) | crc32 u32 (of index and data) |
//!   index u64 | data;
//! - zeros up to the preallocated size. A zero length marks the end.

use std::path::{Path, PathBuf};

use crate::fsutil::{u32_at, u64_at};

const MAGIC: &[u8; 8] = b"KEELLOG\0";
/// The segment format version this build writes and reads.
pub(super) const VERSION: u32 = 1;
/// Bytes before the first record.
pub(super) const HEADER_LEN: u64 = 32;
/// Bytes of a record before its data: length + crc + index.
pub(super) const RECORD_HEAD: usize = 16;
/// Records larger than this are refused (and treated as damage when read).
pub(super) const MAX_RECORD: usize = 1 << 30;

/// The file name of the segment whose first record is `first`.
pub(super) fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

/// The first index named by a segment file name, if it is one.
pub(super) fn segment_first_index(path: &Path) -> Option<u64> {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".seg"))
        .and_then(|n| n.parse::<u64>().ok())
}

pub(super) fn encode_header(first: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h[16..24].copy_from_slice(&first.to_le_bytes());
    let crc = crc32fast::hash(&h[..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// What a segment's first bytes say.
pub(super) enum Header {
    /// A valid header of this version, for a segment starting at the expected index.
    Valid,
    /// Not a header (damaged, or never completely written).
    Bad,
    /// A valid header of a format version this build does not know.
    UnknownVersion(u32),
}

pub(super) fn check_header(buf: &[u8], first: u64) -> Header {
    let intact = buf.len() >= HEADER_LEN as usize
        && &buf[..8] == MAGIC
        && crc32fast::hash(&buf[..24]) == u32_at(buf, 24)
        && u64_at(buf, 16) == first;
    match (intact, intact && u32_at(buf, 8) == VERSION) {
        (false, _) => Header::Bad,
        (true, true) => Header::Valid,
        (true, false) => Header::UnknownVersion(u32_at(buf, 8)),
    }
}

/// Appends one record to `buf`.
pub(super) fn encode_record(buf: &mut Vec<u8>, index: u64, data: &[u8]) {
    let len = (8 + data.len()) as u32;
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(data);
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&h.finalize().to_le_bytes());
    buf.extend_from_slice(&index.to_le_bytes());
    buf.extend_from_slice(data);
}

/// One record parsed from a segment, or why it could not be.
pub(super) enum Parsed {
    Record {
        index: u64,
        data_at: usize,
        data_len: usize,
        next: usize,
    },
    End,
    Bad {
        /// Where the damaged bytes end, as far as the record's length can tell.
        extent_end: usize,
        reason: &'static str,
        /// The record's length is zero but data follows: a hole where writes were lost.
        hole: bool,
    },
}

/// Parses the record at byte `at` of a whole segment `buf`.
pub(super) fn parse_record(buf: &[u8], at: usize) -> Parsed {
    if at + 4 > buf.len() {
        return Parsed::End;
    }
    let len = u32_at(buf, at) as usize;
    if len == 0 {
        return if buf[at..].iter().all(|&b| b == 0) {
            Parsed::End
        } else {
            Parsed::Bad {
                extent_end: at + 4,
                reason: "zero length before non-zero data",
                hole: true,
            }
        };
    }
    if !(8..=MAX_RECORD).contains(&len) || at + 8 + len > buf.len() {
        return Parsed::Bad {
            extent_end: buf.len(),
            reason: "record length out of range",
            hole: false,
        };
    }
    let crc = u32_at(buf, at + 4);
    let body = &buf[at + 8..at + 8 + len];
    if crc32fast::hash(body) != crc {
        return Parsed::Bad {
            extent_end: at + 8 + len,
            reason: "checksum mismatch",
            hole: false,
        };
    }
    Parsed::Record {
        index: u64_at(buf, at + 8),
        data_at: at + RECORD_HEAD,
        data_len: len - 8,
        next: at + 8 + len,
    }
}
