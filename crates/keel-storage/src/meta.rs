//! Small metadata files (the Raft vote, the purge point), replaced atomically.
//!
//! Format: `KEELMETA` | version u32 | length u32 | payload | crc32 of all before.

use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{replace_file, u32_at};

const MAGIC: &[u8; 8] = b"KEELMETA";
const VERSION: u32 = 1;

/// Durably replaces the metadata file at `path` with `payload`.
pub fn write_meta(path: &Path, payload: &[u8]) -> Result<()> {
    let mut buf = Vec::with_capacity(payload.len() + 20);
    buf.extend_from_slice(MAGIC);
    buf.extend_from_slice(&VERSION.to_le_bytes());
    buf.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    buf.extend_from_slice(payload);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    replace_file(path, &buf)
}

/// Reads a metadata file; `None` if it does not exist.
pub fn read_meta(path: &Path) -> Result<Option<Vec<u8>>> {
    let buf = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).ctx("reading", path),
    };
    let corrupt = |reason: &str| Error::Corrupt {
        path: path.to_owned(),
        offset: 0,
        reason: reason.into(),
    };
    if buf.len() < 20 || &buf[..8] != MAGIC {
        return Err(corrupt("not a keel metadata file"));
    }
    if u32_at(&buf, 8) != VERSION {
        return Err(corrupt("unknown metadata format version"));
    }
    let len = u32_at(&buf, 12) as usize;
    if buf.len() != 20 + len {
        return Err(corrupt("wrong length"));
    }
    if crc32fast::hash(&buf[..16 + len]) != u32_at(&buf, 16 + len) {
        return Err(corrupt("checksum mismatch"));
    }
    Ok(Some(buf[16..16 + len].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vote");
        assert_eq!(read_meta(&p).unwrap(), None);
        write_meta(&p, b"hello").unwrap();
        assert_eq!(read_meta(&p).unwrap().as_deref(), Some(&b"hello"[..]));
        let mut raw = std::fs::read(&p).unwrap();
        raw[17] ^= 1;
        std::fs::write(&p, raw).unwrap();
        assert!(matches!(read_meta(&p), Err(Error::Corrupt { .. })));
    }
}
