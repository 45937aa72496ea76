//! Encoding of Raft log entries, votes, purge points and snapshot metadata into the bytes that
//! `keel-storage` keeps. A deliberate, versioned format that does not depend on openraft's
//! types: membership and snapshot metadata are converted by hand into keel's own structs
//! ([`MembershipV1`], [`SnapshotMetaV1`]) before postcard encodes them, so an openraft
//! upgrade that reshapes its serde types cannot change what is on disk.
//!
//! Entry: version u8 = 1 | term u64 | leader node u64 | kind u8 (0 blank, 1 batch of
//! requests, 2 membership) | payload. A batch is a u32 count, then per request a u32 length
//! and the request's own encoding; a membership is the postcard encoding of [`MembershipV1`].
//!
//! Vote: version u8 = 1 | term u64 | node u64 | committed u8.
//! Purge point: version u8 = 1 | term u64 | node u64 | index u64. (Before 2026-11-25 it had
//! no version byte; those 24-byte files are still read.)
//! Snapshot metadata: version u8 = 1 | postcard of [`SnapshotMetaV1`].
//!
//! These byte layouts are exactly those openraft 0.9's serde types produced under postcard,
//! which is what keel wrote before it moved to openraft 0.10: data directories written then
//! read back unchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io;

use openraft::entry::RaftEntry;
use openraft::impls::leader_id_adv::LeaderId;
use openraft::{BasicNode, EntryPayload};
use serde::{Deserialize, Serialize};

use crate::{Batch, Entry, LogId, Membership, SnapshotMeta, StoredMembership, Vote};

const ENTRY_FORMAT: u8 = 1;
const VOTE_FORMAT: u8 = 1;
const SNAPSHOT_META_FORMAT: u8 = 1;
const PURGED_FORMAT: u8 = 1;

/// A log or metadata file whose bytes do not decode.
pub(crate) fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn take<'a>(b: &mut &'a [u8], n: usize, what: &str) -> io::Result<&'a [u8]> {
    if b.len() < n {
        return Err(invalid(format!("{what} is truncated")));
    }
    let (head, rest) = b.split_at(n);
    *b = rest;
    Ok(head)
}

fn take_u32(b: &mut &[u8], what: &str) -> io::Result<u32> {
    let mut a = [0u8; 4];
    a.copy_from_slice(take(b, 4, what)?);
    Ok(u32::from_le_bytes(a))
}

fn take_u64(b: &mut &[u8], what: &str) -> io::Result<u64> {
    let mut a = [0u8; 8];
    a.copy_from_slice(take(b, 8, what)?);
    Ok(u64::from_le_bytes(a))
}

/// A log id as stored: openraft 0.9's `LogId { leader_id: { term, node_id }, index }`.
#[derive(Serialize, Deserialize)]
struct LogIdV1 {
    term: u64,
    node_id: u64,
    index: u64,
}

impl From<&LogId> for LogIdV1 {
    fn from(l: &LogId) -> Self {
        LogIdV1 {
            term: l.leader_id.term,
            node_id: l.leader_id.node_id,
            index: l.index,
        }
    }
}

impl From<LogIdV1> for LogId {
    fn from(l: LogIdV1) -> Self {
        LogId::new(
            LeaderId {
                term: l.term,
                node_id: l.node_id,
            },
            l.index,
        )
    }
}

/// A node as stored: openraft's `BasicNode { addr }`.
#[derive(Serialize, Deserialize)]
struct NodeV1 {
    addr: String,
}

/// A membership as stored: openraft 0.9's `Membership { configs, nodes }`.
#[derive(Serialize, Deserialize)]
pub(crate) struct MembershipV1 {
    configs: Vec<BTreeSet<u64>>,
    nodes: BTreeMap<u64, NodeV1>,
}

impl From<&Membership> for MembershipV1 {
    fn from(m: &Membership) -> Self {
        MembershipV1 {
            configs: m.get_joint_config().clone(),
            nodes: m
                .nodes()
                .map(|(id, n)| {
                    (
                        *id,
                        NodeV1 {
                            addr: n.addr.clone(),
                        },
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<MembershipV1> for Membership {
    type Error = io::Error;

    fn try_from(m: MembershipV1) -> io::Result<Self> {
        let nodes: BTreeMap<u64, BasicNode> = m
            .nodes
            .into_iter()
            .map(|(id, n)| (id, BasicNode { addr: n.addr }))
            .collect();
        Membership::new(m.configs, nodes).map_err(invalid)
    }
}

/// A membership with the log id that set it, as stored.
#[derive(Serialize, Deserialize)]
struct StoredMembershipV1 {
    log_id: Option<LogIdV1>,
    membership: MembershipV1,
}

/// Snapshot metadata as stored: openraft 0.9's `SnapshotMeta`, including the snapshot id that
/// openraft 0.10 no longer has (written for readers of the old format, ignored when read).
#[derive(Serialize, Deserialize)]
pub(crate) struct SnapshotMetaV1 {
    last_log_id: Option<LogIdV1>,
    last_membership: StoredMembershipV1,
    snapshot_id: String,
}

fn encode_membership(m: &Membership, out: Vec<u8>) -> Vec<u8> {
    postcard::to_extend(&MembershipV1::from(m), out)
        .expect("serialising plain data into a Vec cannot fail")
}

fn decode_membership(bytes: &[u8]) -> io::Result<Membership> {
    postcard::from_bytes::<MembershipV1>(bytes)
        .map_err(invalid)?
        .try_into()
}

/// The bytes of a log entry.
pub(crate) fn encode_entry(e: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(match &e.payload {
        EntryPayload::Normal(batch) => {
            24 + batch.0.iter().map(|r| r.command.size_hint()).sum::<usize>()
        }
        _ => 64,
    });
    out.push(ENTRY_FORMAT);
    out.extend_from_slice(&e.log_id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&e.log_id.leader_id.node_id.to_le_bytes());
    match &e.payload {
        EntryPayload::Blank => out.push(0),
        EntryPayload::Normal(batch) => {
            out.push(1);
            out.extend_from_slice(&(batch.0.len() as u32).to_le_bytes());
            for req in batch.0.iter() {
                // Reserve the length, encode in place, then fill the length in.
                let at = out.len();
                out.extend_from_slice(&[0; 4]);
                out = req.encode_into(out);
                let len = (out.len() - at - 4) as u32;
                out[at..at + 4].copy_from_slice(&len.to_le_bytes());
            }
        }
        EntryPayload::Membership(m) => {
            out.push(2);
            out = encode_membership(m, out);
        }
    }
    out
}

/// Decodes the entry at `index` from its bytes.
pub(crate) fn decode_entry(index: u64, bytes: &[u8]) -> io::Result<Entry> {
    let what = format!("log entry {index}");
    let mut b = bytes;
    let version = take(&mut b, 1, &what)?[0];
    if version != ENTRY_FORMAT {
        return Err(invalid(format!("{what} has unknown format {version}")));
    }
    let term = take_u64(&mut b, &what)?;
    let node = take_u64(&mut b, &what)?;
    let log_id = LogId::new(
        LeaderId {
            term,
            node_id: node,
        },
        index,
    );
    let kind = take(&mut b, 1, &what)?[0];
    let payload = match kind {
        0 => EntryPayload::Blank,
        1 => {
            let count = take_u32(&mut b, &what)? as usize;
            let mut requests = Vec::with_capacity(count.min(4096));
            for _ in 0..count {
                let len = take_u32(&mut b, &what)? as usize;
                let request = keel_state::Request::decode(take(&mut b, len, &what)?)
                    .map_err(|e| invalid(format!("{what}: {e}")))?;
                requests.push(request);
            }
            EntryPayload::Normal(Batch(requests.into()))
        }
        2 => EntryPayload::Membership(decode_membership(b)?),
        k => return Err(invalid(format!("{what} has unknown kind {k}"))),
    };
    Ok(Entry::new(log_id, payload))
}

pub(crate) fn encode_vote(v: &Vote) -> Vec<u8> {
    let mut out = vec![VOTE_FORMAT];
    out.extend_from_slice(&v.leader_id.term.to_le_bytes());
    out.extend_from_slice(&v.leader_id.node_id.to_le_bytes());
    out.push(u8::from(v.committed));
    out
}

pub(crate) fn decode_vote(bytes: &[u8]) -> io::Result<Vote> {
    let mut b = bytes;
    if take(&mut b, 1, "vote")?[0] != VOTE_FORMAT {
        return Err(invalid("vote file has unknown format"));
    }
    let term = take_u64(&mut b, "vote")?;
    let node = take_u64(&mut b, "vote")?;
    let committed = take(&mut b, 1, "vote")?[0] == 1;
    Ok(if committed {
        Vote::new_committed(term, node)
    } else {
        Vote::new(term, node)
    })
}

/// The bytes of the purge point.
pub(crate) fn encode_purged(id: &LogId) -> Vec<u8> {
    let mut out = Vec::with_capacity(25);
    out.push(PURGED_FORMAT);
    out.extend_from_slice(&id.leader_id.term.to_le_bytes());
    out.extend_from_slice(&id.leader_id.node_id.to_le_bytes());
    out.extend_from_slice(&id.index.to_le_bytes());
    out
}

/// Decodes the purge point, with or without its version byte (files written before it had
/// one are exactly 24 bytes long).
pub(crate) fn decode_purged(bytes: &[u8]) -> io::Result<LogId> {
    let mut b = match bytes.len() {
        24 => bytes,
        _ => match bytes.split_first() {
            Some((&PURGED_FORMAT, rest)) => rest,
            _ => return Err(invalid("purge point file has unknown format")),
        },
    };
    let term = take_u64(&mut b, "purge point")?;
    let node = take_u64(&mut b, "purge point")?;
    let index = take_u64(&mut b, "purge point")?;
    if !b.is_empty() {
        return Err(invalid("purge point file is too long"));
    }
    Ok(LogIdV1 {
        term,
        node_id: node,
        index,
    }
    .into())
}

/// The bytes of snapshot metadata; `snapshot_id` names the snapshot in logs.
pub(crate) fn encode_snapshot_meta(meta: &SnapshotMeta, snapshot_id: &str) -> Vec<u8> {
    let m = SnapshotMetaV1 {
        last_log_id: meta.last_log_id.as_ref().map(LogIdV1::from),
        last_membership: StoredMembershipV1 {
            log_id: meta.last_membership.log_id().as_ref().map(LogIdV1::from),
            membership: MembershipV1::from(meta.last_membership.membership()),
        },
        snapshot_id: snapshot_id.to_owned(),
    };
    postcard::to_extend(&m, vec![SNAPSHOT_META_FORMAT])
        .expect("serialising plain data into a Vec cannot fail")
}

pub(crate) fn decode_snapshot_meta(bytes: &[u8]) -> io::Result<SnapshotMeta> {
    let rest = match bytes.split_first() {
        Some((&SNAPSHOT_META_FORMAT, rest)) => rest,
        _ => return Err(invalid("snapshot metadata has unknown format")),
    };
    let m: SnapshotMetaV1 = postcard::from_bytes(rest).map_err(invalid)?;
    Ok(SnapshotMeta {
        last_log_id: m.last_log_id.map(LogId::from),
        last_membership: StoredMembership::new(
            m.last_membership.log_id.map(LogId::from),
            m.last_membership.membership.try_into()?,
        ),
    })
}

#[cfg(test)]
mod golden;
