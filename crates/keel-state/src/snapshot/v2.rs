//! Store snapshot format 2, as written for a few hours on 2026-11-25:
//! `2 | postcard(Header) | section*`, each section `tag u8 | version u8 | length u64 LE |
//! body`, the header counting the sections. Frozen; only decoded. (Format 3 frames the same
//! sections in chunks, so that they can be written as they are encoded.)

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{decode_sections, known_tag, Parts, SnapshotError};
use crate::Revision;

#[derive(Deserialize)]
struct Header {
    revision: Revision,
    now_ms: u64,
    sections: u32,
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
        if !known_tag(tag) {
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

/// Decodes the bytes after a format-2 version byte.
pub(super) fn decode(body: &[u8]) -> Result<Parts, SnapshotError> {
    let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(body)?;
    let sections = split_sections(rest, header.sections)?;
    decode_sections(header.revision, header.now_ms, &sections)
}
