//! Encoding of Raft log entries, votes and snapshot metadata into the bytes that
//! `keel-storage` keeps. A deliberate, versioned format: one version byte, then fields.
//!
//! Entry: version u8 = 1 | term u64 | leader node u64 | kind u8 (0 blank, 1 batch of
//! requests, 2 membership) | payload. A batch is a u32 count, then per request a u32 length
//! and the request's own encoding; a membership is its postcard encoding.

use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StorageIOError, Vote,
};

use crate::{StorageError, TypeConfig};

const ENTRY_FORMAT: u8 = 1;
const VOTE_FORMAT: u8 = 1;
const SNAPSHOT_META_FORMAT: u8 = 1;

pub(crate) fn read_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_logs(openraft::AnyError::error(e.to_string())).into()
}

fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], StorageError> {
    if b.len() < n {
        return Err(read_err("log entry is truncated"));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_u32(b: &mut &[u8]) -> Result<u32, StorageError> {
    let mut a = [0u8; 4];
    a.copy_from_slice(take(b, 4)?);
    Ok(u32::from_le_bytes(a))
}

fn take_u64(b: &mut &[u8]) -> Result<u64, StorageError> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(b, 8)?);
    Ok(u64::from_le_bytes(a))
}

pub(crate) fn encode_entry(e: &Entry<TypeConfig>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(ENTRY_FORMAT);
    out.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&e.log_id.leader_id.node_id.to_le_bytes());
    match &e.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(batch) => {
            out.push(1);
            out.extend_from_slice(&(batch.0.len() as u32).to_le_bytes());
            for req in &batch.0 {
                let bytes = req.encode();
                out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                out.extend_from_slice(&bytes);
            }
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            out =
                postcard::to_extend(m, out).expect("serialising plain data into a Vec cannot fail");
        }
    }
    out
}

pub(crate) fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry<TypeConfig>, StorageError> {
    let mut b = bytes;
    let version = take(&mut b, 1)?[0];
    if version != ENTRY_FORMAT {
        return Err(read_err(format!(
            "log entry {index} has unknown format {version}"
        )));
    }
    let term = take_u64(&mut b)?;
    let node = take_u64(&mut b)?;
    let log_id = LogId::new(CommittedLeaderId::new(term, node), index);
    let kind = take(&mut b, 1)?[0];
    let payload = match kind {
        0 => EntryPayload::Blank,
        1 => {
            let count = take_u32(&mut b)? as usize;
            let mut requests = Vec::with_capacity(count.min(4096));
            for _ in 0..count {
                let len = take_u32(&mut b)? as usize;
                requests.push(keel_state::Request::decode(take(&mut b, len)?).map_err(read_err)?);
            }
            EntryPayload::Normal(crate::Batch(requests))
        }
        2 => EntryPayload::Membership(
            postcard::from_bytes::<Membership<u64, openraft::BasicNode>>(b).map_err(read_err)?,
        ),
        k => return Err(read_err(format!("log entry {index} has unknown kind {k}"))),
    };
    Ok(Entry { log_id, payload })
}

pub(crate) fn encode_vote(v: &Vote<u64>) -> Vec<u8> {
    let mut out = vec![VOTE_FORMAT];
    out.extend_from_slice(&v.leader_id.term.to_le_bytes());
    out.extend_from_slice(&v.leader_id.node_id.to_le_bytes());
    out.push(u8::from(v.committed));
    out
}

pub(crate) fn decode_vote(bytes: &[u8]) -> Result<Vote<u64>, StorageError> {
    let mut b = bytes;
    if take(&mut b, 1)?[0] != VOTE_FORMAT {
        return Err(read_err("vote file has unknown format"));
    }
    let term = take_u64(&mut b)?;
    let node = take_u64(&mut b)?;
    let committed = take(&mut b, 1)?[0] == 1;
    Ok(if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

pub(crate) fn encode_log_id(id: &LogId<u64>) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
    out
}

pub(crate) fn decode_log_id(bytes: &[u8]) -> Result<LogId<u64>, StorageError> {
    let mut b = bytes;
    let term = take_u64(&mut b)?;
    let node = take_u64(&mut b)?;
    let index = take_u64(&mut b)?;
    Ok(LogId::new(CommittedLeaderId::new(term, node), index))
}

pub(crate) fn encode_snapshot_meta(meta: &SnapshotMeta<u64, openraft::BasicNode>) -> Vec<u8> {
    postcard::to_extend(meta, vec![SNAPSHOT_META_FORMAT])
        .expect("serialising plain data into a Vec cannot fail")
}

pub(crate) fn decode_snapshot_meta(
    bytes: &[u8],
) -> Result<SnapshotMeta<u64, openraft::BasicNode>, StorageError> {
    match bytes.split_first() {
        Some((&SNAPSHOT_META_FORMAT, rest)) => postcard::from_bytes(rest).map_err(read_err),
        _ => Err(read_err("snapshot metadata has unknown format")),
    }
}
