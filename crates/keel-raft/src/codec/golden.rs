//! Golden bytes of the Raft layer's persisted formats: log entries (blank, a batch of
//! requests, a membership), the vote, the purge point and snapshot metadata.
//!
//! Current-format fixtures are under `tests/fixtures/codec`; files written by the build of
//! 2026-11-24 (before the purge point had a version byte) are read from the old data
//! directory fixture in `crates/keel/tests/fixtures/datadir-v1`. Rewrite current-format
//! fixtures only on purpose, with `KEEL_BLESS=1`.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use keel_state::{KvCommand, LeaseCommand, Request};
use openraft::{BasicNode, EntryPayload};

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/codec")
        .join(name)
}

fn old_datadir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../keel/tests/fixtures/datadir-v1/data/raft")
}

/// Compares `bytes` with the fixture file, or rewrites it under `KEEL_BLESS=1`.
fn pinned(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(
        want, bytes,
        "the encoding behind {name} changed: bump its version, keep a decoder for the old \\
         one, and re-bless with KEEL_BLESS=1"
    );
}

fn log_id(term: u64, node_id: u64, index: u64) -> LogId {
    LogIdV1 {
        term,
        node_id,
        index,
    }
    .into()
}

fn membership() -> Membership {
    let nodes = BTreeMap::from([
        (1, BasicNode::new("127.0.0.1:7001")),
        (2, BasicNode::new("127.0.0.1:7002")),
    ]);
    Membership::new(vec![BTreeSet::from([1, 2])], nodes).unwrap()
}

fn entries() -> Vec<(&'static str, Entry)> {
    let batch = Batch(
        vec![
            Request {
                now_ms: 1_764_000_000_123,
                command: KvCommand::Put {
                    key: "k".into(),
                    value: "v".into(),
                    lease: Some(2),
                    if_revision: None,
                }
                .into(),
            },
            Request {
                now_ms: 1_764_000_000_124,
                command: LeaseCommand::Grant { ttl_ms: 10_000 }.into(),
            },
        ]
        .into(),
    );
    vec![
        (
            "entry-blank.bin",
            Entry::new(log_id(2, 1, 7), EntryPayload::Blank),
        ),
        (
            "entry-batch.bin",
            Entry::new(log_id(2, 1, 8), EntryPayload::Normal(batch)),
        ),
        (
            "entry-membership.bin",
            Entry::new(log_id(3, 2, 9), EntryPayload::Membership(membership())),
        ),
    ]
}

#[test]
fn log_entries_have_pinned_bytes() {
    for (name, entry) in entries() {
        let bytes = encode_entry(&entry);
        pinned(name, &bytes);
        let back = decode_entry(entry.log_id.index, &bytes).unwrap();
        assert_eq!(back, entry, "{name}");
    }
}

/// An entry written while requests were log payload format 2 (until 2026-12-07) holds the
/// same batch.
#[test]
fn an_entry_of_format_2_requests_still_decodes() {
    let (_, entry) = entries().swap_remove(1);
    let old = std::fs::read(fixture("entry-batch-request-v2.bin")).unwrap();
    assert_eq!(decode_entry(entry.log_id.index, &old).unwrap(), entry);
}

#[test]
fn the_vote_has_pinned_bytes_and_old_votes_read() {
    let vote = Vote::new_committed(5, 1);
    pinned("vote.bin", &encode_vote(&vote));
    assert_eq!(decode_vote(&encode_vote(&vote)).unwrap(), vote);
    let old = keel_storage::read_meta(&old_datadir().join("vote"))
        .unwrap()
        .unwrap();
    assert_eq!(
        encode_vote(&decode_vote(&old).unwrap()),
        old,
        "the old vote re-encodes alike"
    );
}

#[test]
fn the_purge_point_has_a_version_byte_and_old_ones_read() {
    let id = log_id(2, 1, 56);
    let bytes = encode_purged(&id);
    assert_eq!(bytes[0], 1);
    pinned("purged.bin", &bytes);
    assert_eq!(decode_purged(&bytes).unwrap(), id);
    let old = keel_storage::read_meta(&old_datadir().join("purged"))
        .unwrap()
        .unwrap();
    assert_eq!(old.len(), 24, "written before the version byte");
    let old_id = decode_purged(&old).unwrap();
    assert_eq!(
        encode_purged(&old_id)[1..],
        old[..],
        "same fields, now behind a version byte"
    );
    assert!(decode_purged(&[9; 25]).is_err());
    assert!(decode_purged(&[1; 26]).is_err());
}

#[test]
fn snapshot_metadata_has_pinned_bytes() {
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(3, 2, 74)),
        last_membership: StoredMembership::new(Some(log_id(3, 2, 9)), membership()),
    };
    let bytes = encode_snapshot_meta(&meta, "74-3");
    pinned("snapshot-meta.bin", &bytes);
    let back = decode_snapshot_meta(&bytes).unwrap();
    assert_eq!(back.last_log_id, meta.last_log_id);
    assert_eq!(back.last_membership, meta.last_membership);
}
