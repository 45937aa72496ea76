//! Restart recovery, snapshots with log purge, torn tails and corruption.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{eventually, Server};

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// The last log index a snapshot file covers, from its name `{index:020}-{term:020}.snap`.
fn snapshot_index(path: &Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.split('-').next().unwrap().parse().unwrap()
}

/// The log index the log is purged up to (0 if never), from the `raft/purged` metadata file:
/// a 16-byte header, then term, node and index as little-endian u64s.
fn purged_index(data_dir: &Path) -> u64 {
    match std::fs::read(data_dir.join("raft/purged")) {
        Ok(raw) if raw.len() >= 40 => u64::from_le_bytes(raw[32..40].try_into().unwrap()),
        _ => 0,
    }
}

async fn write_keys(s: &Server, n: usize) {
    let c = s.client();
    for i in 0..n {
        c.put(
            &format!("k/{i:05}"),
            format!("value-{i}"),
            &Default::default(),
        )
        .await
        .unwrap();
    }
}

async fn check_keys(s: &Server, n: usize) {
    let c = s.client();
    let page = c
        .list(&keel_client::ListOptions {
            prefix: "k/".into(),
            limit: Some(10_000),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), n);
    for (i, kv) in page.items.iter().enumerate() {
        assert_eq!(kv.key, format!("k/{i:05}"));
        assert_eq!(kv.value.as_deref(), Some(format!("value-{i}").as_str()));
    }
}

#[tokio::test]
async fn restart_recovers_everything() {
    let s = Server::start(&[]);
    write_keys(&s, 200).await;
    let c = s.client();
    c.delete("k/00007", None).await.unwrap();
    c.put("k/00007", "value-7", &Default::default())
        .await
        .unwrap();
    let rev = c.list(&Default::default()).await.unwrap().revision;
    let s = s.restart();
    check_keys(&s, 200).await;
    let c = s.client();
    assert_eq!(c.list(&Default::default()).await.unwrap().revision, rev);
    let kv = c
        .get("k/00007", &Default::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((kv.version, kv.create_revision), (1, rev));
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains(&format!("revision={rev}")), "{log}");
    // History survives the restart: a past read still works.
    let old = c
        .get(
            "k/00007",
            &keel_client::GetOptions {
                revision: Some(8),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.mod_revision, 8);
}

#[tokio::test]
async fn snapshots_purge_the_log_and_restart_from_them() {
    let s = Server::start(&["--snapshot-every", "50", "--segment-size", "4096"]);
    write_keys(&s, 400).await;
    let snaps = s.data_dir.join("snapshots");
    let log_dir = s.data_dir.join("raft/log");
    let purged = eventually(Duration::from_secs(20), async || {
        let segs = files(&log_dir, "seg");
        let first: u64 = segs
            .first()
            .and_then(|p| p.file_stem()?.to_str()?.parse().ok())
            .unwrap_or(0);
        !files(&snaps, "snap").is_empty() && first > 300
    })
    .await;
    assert!(
        purged,
        "log was not purged after snapshots: {:?}",
        files(&log_dir, "seg")
    );
    assert!(
        files(&snaps, "snap").len() <= 2,
        "old snapshots are removed"
    );
    let s = s.restart();
    check_keys(&s, 400).await;
    write_keys(&s, 410).await;
    let s = s.crash_and_restart();
    check_keys(&s, 410).await;
}

fn last_segment(s: &Server) -> PathBuf {
    files(&s.data_dir.join("raft/log"), "seg")
        .pop()
        .expect("a segment")
}

#[tokio::test]
async fn torn_tail_is_cut_and_the_server_starts() {
    let mut s = Server::start(&[]);
    write_keys(&s, 50).await;
    s.stop();
    let seg = last_segment(&s);
    let mut raw = std::fs::read(&seg).unwrap();
    // Walk the records (length u32 | crc u32 | body of that length) to the end of the log.
    let mut end = 32;
    loop {
        let len = u32::from_le_bytes(raw[end..end + 4].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        end += 8 + len;
    }
    // A record header promising 200 bytes, followed by only 30: a write cut by a crash.
    let mut torn = (208u32).to_le_bytes().to_vec();
    torn.extend_from_slice(&0x1234_5678u32.to_le_bytes());
    torn.extend_from_slice(&[0xab; 30]);
    raw[end..end + torn.len()].copy_from_slice(&torn);
    std::fs::write(&seg, raw).unwrap();
    let s = s.restart();
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("torn"), "a warning names the torn tail: {log}");
    check_keys(&s, 50).await;
    write_keys(&s, 60).await;
    let s = s.restart();
    check_keys(&s, 60).await;
}

#[tokio::test]
async fn corruption_in_the_middle_refuses_to_start() {
    let mut s = Server::start(&[]);
    write_keys(&s, 50).await;
    s.stop();
    let seg = last_segment(&s);
    let mut raw = std::fs::read(&seg).unwrap();
    raw[32 + 16 + 2] ^= 0x01; // inside the first record
    std::fs::write(&seg, raw).unwrap();
    let err = Server::start_in(&s.data_dir, &[]).unwrap_err();
    assert_eq!(err.status.and_then(|st| st.code()), Some(2));
    let msg = err.stderr;
    assert!(msg.contains("corrupt data in"), "{msg}");
    assert!(msg.contains(seg.to_str().unwrap()), "names the file: {msg}");
    assert!(msg.contains("at byte offset 32"), "names the offset: {msg}");
}

#[tokio::test]
async fn a_damaged_snapshot_falls_back_to_the_older_one_and_both_damaged_refuse_to_start() {
    let mut s = Server::start(&["--snapshot-every", "50", "--segment-size", "4096"]);
    write_keys(&s, 200).await;
    let snaps = s.data_dir.join("snapshots");
    // Two snapshots kept, and the log purged up to one snapshot interval behind the newest:
    // the older snapshot and the log kept after it still reach the end; nothing older does.
    // (The purge follows the snapshot, so wait for both.)
    let purged_to_older = eventually(Duration::from_secs(20), async || {
        let kept = files(&snaps, "snap");
        kept.len() == 2 && purged_index(&s.data_dir) >= snapshot_index(&kept[0])
    })
    .await;
    assert!(
        purged_to_older,
        "snapshots {:?}, purged up to {}",
        files(&snaps, "snap"),
        purged_index(&s.data_dir)
    );
    s.stop();
    let damage = |path: &Path| {
        let mut raw = std::fs::read(path).unwrap();
        let mid = raw.len() / 2;
        raw[mid] ^= 0xff;
        std::fs::write(path, raw).unwrap();
    };
    // The newest damaged: the node starts from the older one and the log, and has every key.
    let kept = files(&snaps, "snap");
    damage(&kept[1]);
    let mut s2 = Server::start_in(&s.data_dir, &[]).expect("starts from the older snapshot");
    assert!(s2
        .stderr
        .lock()
        .unwrap()
        .contains("skipping damaged snapshot file"));
    check_keys(&s2, 200).await;
    s2.stop();
    // Both damaged (the older one now too): the log alone no longer reaches back, and the
    // node refuses to start.
    damage(&kept[0]);
    let err = match Server::start_in(&s.data_dir, &[]) {
        Ok(started) => panic!(
            "started with {:?}, purged up to {}: {}",
            files(&snaps, "snap"),
            purged_index(&s.data_dir),
            started.stderr.lock().unwrap()
        ),
        Err(e) => e,
    };
    assert_eq!(err.status.and_then(|st| st.code()), Some(2));
    assert!(
        err.stderr.contains("skipping damaged snapshot file"),
        "{}",
        err.stderr
    );
    assert!(err.stderr.contains("missing or damaged"), "{}", err.stderr);
}

#[tokio::test]
async fn a_storage_failure_stops_the_process_with_an_error() {
    let mut s = Server::start(&["--segment-size", "4096"]);
    let c = s.client();
    c.put("before", "ok", &Default::default()).await.unwrap();
    // Pull the log directory out from under the server: the open segment keeps working, but
    // the next segment cannot be created.
    std::fs::remove_dir_all(s.data_dir.join("raft/log")).unwrap();
    let mut refused = false;
    for i in 0..1000 {
        if c.put(&format!("k{i}"), "x".repeat(200), &Default::default())
            .await
            .is_err()
        {
            refused = true;
            break;
        }
    }
    assert!(refused, "writes must fail once the log cannot grow");
    let status = tokio::task::spawn_blocking(move || {
        let st = s.wait_exit(Duration::from_secs(20));
        (st, s)
    })
    .await
    .unwrap();
    let (status, s) = status;
    let log = s.stderr.lock().unwrap().clone();
    assert_eq!(status.and_then(|st| st.code()), Some(2), "{log}");
    assert!(log.contains("raft stopped"), "{log}");
}
