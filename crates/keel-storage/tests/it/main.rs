//! Tests of the log through its public API, including damage on disk.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use keel_storage::{Error, Log, LogOptions};

mod golden;
mod sim_disk;

fn small() -> LogOptions {
    LogOptions {
        segment_bytes: 4096,
        cache_bytes: 1024,
    }
}

fn rec(i: u64) -> (u64, Vec<u8>) {
    (
        i,
        format!("record-{i}-{}", "x".repeat((i % 50) as usize)).into_bytes(),
    )
}

/// Appends and waits until the flusher reports durability.
fn append_sync(log: &Log, records: Vec<(u64, Vec<u8>)>) {
    let (tx, rx) = mpsc::channel();
    log.append(records, move |r| tx.send(r.is_ok()).unwrap())
        .unwrap();
    assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap());
}

fn check_all(log: &Log, range: std::ops::Range<u64>) {
    let got = log.read(range.clone()).unwrap();
    assert_eq!(got.len() as u64, range.end - range.start);
    for (i, data) in got {
        assert_eq!(&data[..], &rec(i).1[..], "record {i}");
    }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    v.sort();
    v
}

#[test]
fn append_read_reopen_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    for chunk in (1..=300u64).collect::<Vec<_>>().chunks(7) {
        append_sync(&log, chunk.iter().map(|&i| rec(i)).collect());
    }
    assert!(segments(dir.path()).len() > 3, "small segments rotate");
    check_all(&log, 1..301);
    log.close();
    let (log, report) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(report.records, 300);
    assert!(report.cut_torn_tail.is_none());
    assert_eq!(
        (log.first_index().unwrap(), log.last_index().unwrap()),
        (Some(1), Some(300))
    );
    check_all(&log, 1..301);
    append_sync(&log, vec![rec(301)]);
    check_all(&log, 250..302);
}

#[test]
fn many_concurrent_appends_share_syncs_and_all_complete() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), LogOptions::default()).unwrap();
    let (tx, rx) = mpsc::channel();
    for i in 1..=2000u64 {
        let tx = tx.clone();
        log.append(vec![rec(i)], move |r| tx.send((i, r.is_ok())).unwrap())
            .unwrap();
    }
    let mut done = 0;
    while done < 2000 {
        let (_, ok) = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(ok);
        done += 1;
    }
    check_all(&log, 1..2001);
}

/// Writes records 1..=10 durably into a closed log in `dir`; returns its one segment's path
/// and bytes, for a test to damage.
fn ten_records_on_disk(dir: &Path) -> (PathBuf, Vec<u8>) {
    let (log, _) = Log::open(dir, LogOptions::default()).unwrap();
    append_sync(&log, (1..=10).map(rec).collect());
    log.close();
    drop(log);
    let seg = segments(dir).pop().unwrap();
    let raw = std::fs::read(&seg).unwrap();
    (seg, raw)
}

#[test]
fn torn_tail_is_cut_and_log_continues() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, raw) = ten_records_on_disk(dir.path());
    // Simulate a crash in the middle of writing record 11: its header and half its body.
    let end = raw.iter().rposition(|&b| b != 0).unwrap() + 1;
    let mut torn = Vec::new();
    torn.extend_from_slice(&(8u32 + 100).to_le_bytes());
    torn.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    torn.extend_from_slice(&11u64.to_le_bytes());
    torn.extend_from_slice(&[7u8; 40]);
    let mut raw = raw;
    raw[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&seg, raw).unwrap();

    let (log, report) = Log::open(dir.path(), LogOptions::default()).unwrap();
    let (path, offset) = report.cut_torn_tail.expect("cut");
    assert_eq!((path, offset), (seg, end as u64));
    assert_eq!(log.last_index().unwrap(), Some(10));
    append_sync(&log, vec![rec(11)]);
    log.close();
    let (log, report) = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert!(report.cut_torn_tail.is_none());
    check_all(&log, 1..12);
}

#[test]
fn corruption_before_the_tail_refuses_to_open() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, mut raw) = ten_records_on_disk(dir.path());
    raw[32 + 16 + 3] ^= 0x40; // inside record 1's data
    std::fs::write(&seg, raw).unwrap();
    match Log::open(dir.path(), LogOptions::default()) {
        Err(Error::Corrupt { path, offset, .. }) => {
            assert_eq!(path, seg);
            assert_eq!(offset, 32);
        }
        other => panic!("expected corruption error, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_hole_in_the_newest_segment_ends_the_log_there() {
    // A failed sync loses the writes it covered (zeros on disk) while later writes may still
    // reach the disk: records 6..=10 were never acknowledged, so the log ends at 5.
    let dir = tempfile::tempdir().unwrap();
    let (seg, mut raw) = ten_records_on_disk(dir.path());
    let at = |index: u64| -> usize {
        // Walk the records: 16-byte head (length covers index + data), then data.
        let mut off = 32;
        for _ in 1..index {
            off += 8 + u32::from_le_bytes(raw[off..off + 4].try_into().unwrap()) as usize;
        }
        off
    };
    let (hole_start, hole_end) = (at(6), at(8));
    raw[hole_start..hole_end].fill(0);
    std::fs::write(&seg, &raw).unwrap();
    let (log, report) = Log::open(dir.path(), LogOptions::default()).unwrap();
    assert_eq!(report.cut_torn_tail, Some((seg, hole_start as u64)));
    assert_eq!(log.last_index().unwrap(), Some(5));
    check_all(&log, 1..6);
    append_sync(&log, vec![rec(6)]);
    check_all(&log, 1..7);
}

#[test]
fn truncate_then_append_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    append_sync(&log, (1..=120).map(rec).collect());
    log.truncate(50).unwrap();
    assert_eq!(log.last_index().unwrap(), Some(49));
    let replaced: Vec<(u64, Vec<u8>)> = (50..=60)
        .map(|i| (i, format!("new-{i}").into_bytes()))
        .collect();
    append_sync(&log, replaced.clone());
    log.close();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.last_index().unwrap(), Some(60));
    check_all(&log, 1..50);
    let got = log.read(50..61).unwrap();
    assert_eq!(
        got.into_iter()
            .map(|(i, d)| (i, d.to_vec()))
            .collect::<Vec<_>>(),
        replaced
    );
}

#[test]
fn purge_drops_old_segments_and_jumps_start_fresh_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    append_sync(&log, (1..=200).map(rec).collect::<Vec<_>>()[..100].to_vec());
    append_sync(&log, (101..=200).map(rec).collect());
    let before = segments(dir.path()).len();
    log.purge(150).unwrap();
    assert!(segments(dir.path()).len() < before);
    assert_eq!(log.first_index().unwrap(), Some(151));
    assert_eq!(log.read(1..151).unwrap().len(), 0);
    check_all(&log, 151..201);
    // A snapshot installed from elsewhere moves the log far ahead.
    log.purge(1000).unwrap();
    assert_eq!(log.last_index().unwrap(), None);
    append_sync(&log, vec![rec(1001), rec(1002)]);
    log.close();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    assert_eq!(log.last_index().unwrap(), Some(1002));
    check_all(&log, 1001..1003);
}

#[test]
fn out_of_order_append_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), small()).unwrap();
    append_sync(&log, vec![rec(1), rec(2)]);
    assert!(log.append(vec![rec(2)], |_| {}).is_err());
    assert!(log.append(vec![rec(3), rec(5)], |_| {}).is_err());
}
