//! A node whose log is on a simulated disk, with writers proposing concurrently (so entries
//! are pipelined: one is written while the one before is being synced), loses power at a
//! random moment, or first sees a sync fail. Restarted on what the disk kept, it must hold
//! every write that was acknowledged.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keel_raft::{Node, NodeConfig};
use keel_state::{KvCommand, KvOutcome, Outcome};
use keel_storage::sim::SimDisk;
use proptest::prelude::*;

fn config(dir: &std::path::Path, snapshot_every: u64) -> NodeConfig {
    NodeConfig {
        snapshot_every,
        history: 1000,
        segment_bytes: 4096,
        ..NodeConfig::new(1, dir.to_owned(), "127.0.0.1:1".into())
    }
}

/// When the power goes.
#[derive(Debug, Clone)]
enum Cut {
    /// As the n-th file write from the start is attempted.
    AtWrite(u64),
    /// Soon after the n-th file sync from the start.
    AfterSyncs(u64),
}

#[derive(Debug, Clone)]
struct Case {
    writers: usize,
    cut: Cut,
    /// This sync fails first (counted like the crash), if any.
    fail_sync: Option<u64>,
    snapshot_every: u64,
    seed: u64,
}

fn case() -> impl Strategy<Value = Case> {
    let cut = prop_oneof![
        (1u64..300).prop_map(Cut::AtWrite),
        (1u64..80).prop_map(Cut::AfterSyncs),
    ];
    (
        1usize..8,
        cut,
        prop::option::weighted(0.3, 1u64..40),
        prop_oneof![Just(1_000_000u64), 5u64..40],
        any::<u64>(),
    )
        .prop_map(|(writers, cut, fail_sync, snapshot_every, seed)| Case {
            writers,
            cut,
            fail_sync,
            snapshot_every,
            seed,
        })
}

/// Writes until the power goes; returns the acknowledged writes (key, revision) and what the
/// disk kept.
async fn write_until_the_power_goes(
    dir: &std::path::Path,
    case: &Case,
) -> Result<(Vec<(String, u64)>, SimDisk), TestCaseError> {
    let disk = SimDisk::new();
    let node = Node::start_on(Arc::new(disk.clone()), config(dir, case.snapshot_every))
        .await
        .map_err(|e| TestCaseError::fail(format!("start: {e}")))?;
    prop_assert!(node.wait_ready(Duration::from_secs(10)).await, "ready");
    let start_syncs = disk.syncs();
    if let Some(n) = case.fail_sync {
        disk.fail_sync_after(n);
    }
    let crash_after_syncs = match case.cut {
        Cut::AtWrite(n) => {
            disk.crash_at_write(n, case.seed);
            u64::MAX
        }
        Cut::AfterSyncs(n) => n,
    };
    let node = Arc::new(node);
    let acked = Arc::new(Mutex::new(Vec::<(String, u64)>::new()));
    let mut writers = Vec::new();
    for w in 0..case.writers {
        let (node, acked) = (node.clone(), acked.clone());
        writers.push(tokio::spawn(async move {
            for i in 0..400 {
                let key = format!("w{w}/{i:04}");
                let put = KvCommand::Put {
                    key: key.clone(),
                    value: key.clone().into_bytes().into(),
                    lease: None,
                    if_revision: None,
                };
                match node.propose(put.into()).await {
                    Ok(Outcome::Kv(KvOutcome::Put { revision })) => {
                        acked.lock().unwrap().push((key, revision))
                    }
                    Ok(other) => panic!("unexpected outcome {other:?}"),
                    Err(_) => return,
                }
            }
        }));
    }
    // Cut the power once the disk has synced enough, or it went at its write, or the writers
    // are done.
    let target = start_syncs.saturating_add(crash_after_syncs);
    let synced = {
        let disk = disk.clone();
        tokio::task::spawn_blocking(move || disk.wait_for_syncs(target, Duration::from_secs(20)))
    };
    let all_writers = futures_util::future::join_all(writers);
    tokio::pin!(all_writers);
    let finished = tokio::select! {
        _ = synced => None,
        results = &mut all_writers => Some(results),
    };
    let image = disk.crash(case.seed);
    let results = match finished {
        Some(results) => results,
        None => tokio::time::timeout(Duration::from_secs(20), all_writers)
            .await
            .map_err(|_| TestCaseError::fail("a writer hung after the power cut"))?,
    };
    for r in results {
        r.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let node = Arc::into_inner(node).expect("writers are done");
    let _ = tokio::time::timeout(Duration::from_secs(10), node.shutdown()).await;
    Ok((acked, image))
}

/// Restarts on what the disk kept and checks every acknowledged write.
async fn restart_and_check(
    dir: &std::path::Path,
    case: &Case,
    acked: &[(String, u64)],
    image: SimDisk,
) -> Result<(), TestCaseError> {
    let node = Node::start_on(Arc::new(image), config(dir, case.snapshot_every))
        .await
        .map_err(|e| TestCaseError::fail(format!("restart after the power cut: {e}")))?;
    prop_assert!(node.wait_ready(Duration::from_secs(10)).await, "ready");
    node.state().read(|s| -> Result<(), TestCaseError> {
        for (key, revision) in acked {
            let kv = s.get(key, None).unwrap();
            let kv = kv.ok_or_else(|| {
                TestCaseError::fail(format!(
                    "acknowledged write {key} (revision {revision}) lost"
                ))
            })?;
            prop_assert_eq!(&kv.value[..], key.as_bytes());
            prop_assert_eq!(kv.mod_revision, *revision);
        }
        Ok(())
    })?;
    node.shutdown().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn acknowledged_writes_survive_a_power_cut(case in case()) {
        let runtime = || {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        };
        let tmp = tempfile::tempdir().unwrap();
        // The first process: its runtime, and every task on it, ends with it (as a process
        // that lost its disk would), so nothing of it still writes while the next one starts.
        let rt = runtime();
        let (acked, image) = rt.block_on(write_until_the_power_goes(tmp.path(), &case))?;
        rt.shutdown_timeout(Duration::from_secs(10));
        runtime().block_on(restart_and_check(tmp.path(), &case, &acked, image))?;
    }
}
