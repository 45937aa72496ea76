//! Golden bytes of keel-storage's own file formats: a log segment, a metadata file and a
//! snapshot file. Rewrite a fixture only on purpose, with `KEEL_BLESS=1`, and bump the
//! format's version when the bytes change.

use std::path::{Path, PathBuf};

use keel_storage::{read_meta, write_meta, Log, LogOptions, SnapshotStore};

use super::{append_sync, rec};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn pinned(name: &str, bytes: &[u8]) {
    let path = fixture(name);
    if std::env::var_os("KEEL_BLESS").is_some() {
        std::fs::write(&path, bytes).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(want, bytes, "the bytes of {name} changed");
}

const SEGMENT: &str = "00000000000000000001.seg";

/// A segment's written part: its header and records up to the first zero byte run that
/// follows the last record (the rest is preallocated zeros).
fn written_part(segment: &[u8], records_end: usize) -> &[u8] {
    assert!(
        segment[records_end..].iter().all(|&b| b == 0),
        "preallocated space is zero"
    );
    &segment[..records_end]
}

#[test]
fn a_log_segment_has_pinned_bytes_and_reads_back() {
    let opts = LogOptions {
        segment_bytes: 4096,
        cache_bytes: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = Log::open(dir.path(), opts.clone()).unwrap();
    append_sync(&log, (1..=3).map(rec).collect());
    log.close();
    drop(log);
    let bytes = std::fs::read(dir.path().join(SEGMENT)).unwrap();
    assert_eq!(bytes.len(), 4096);
    // Header (32 bytes), then three records of a 16-byte head and their data.
    let end = 32 + (1..=3).map(|i| 16 + rec(i).1.len()).sum::<usize>();
    pinned("segment-v1.bin", written_part(&bytes, end));

    // The fixture, padded as a preallocated segment, opens and reads back.
    let dir = tempfile::tempdir().unwrap();
    let mut file = std::fs::read(fixture("segment-v1.bin")).unwrap();
    file.resize(4096, 0);
    std::fs::write(dir.path().join(SEGMENT), file).unwrap();
    let (log, report) = Log::open(dir.path(), opts).unwrap();
    assert_eq!(report.records, 3);
    let got = log.read(1..4).unwrap();
    for (i, data) in got {
        assert_eq!(&data[..], &rec(i).1[..]);
    }
}

#[test]
fn a_metadata_file_has_pinned_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vote");
    write_meta(&path, b"payload bytes").unwrap();
    pinned("meta-v1.bin", &std::fs::read(&path).unwrap());
    let fixed = dir.path().join("fixed");
    std::fs::copy(fixture("meta-v1.bin"), &fixed).unwrap();
    assert_eq!(
        read_meta(&fixed).unwrap().as_deref(),
        Some(&b"payload bytes"[..])
    );
}

#[test]
fn a_snapshot_file_has_pinned_bytes() {
    let bytes = SnapshotStore::encode(b"meta", b"the body");
    pinned("snapshot-file-v1.bin", &bytes);
    let (meta, body) = SnapshotStore::decode(Path::new("fixture"), &bytes).unwrap();
    assert_eq!((&meta[..], &body[..]), (&b"meta"[..], &b"the body"[..]));
}
