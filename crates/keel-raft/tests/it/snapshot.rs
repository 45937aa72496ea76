//! Snapshots taken while writers run are consistent: each one, restored on its own, is
//! exactly the state at its revision.

use std::sync::Arc;
use std::time::Duration;

use keel_raft::{Clock, Node, NodeConfig};
use keel_state::{KvCommand, ListQuery, Store, StoreConfig};
use keel_storage::SnapshotStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_while_eight_writers_run_are_the_state_at_their_revision() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        node_id: 1,
        data_dir: dir.path().to_owned(),
        advertise_addr: "127.0.0.1:1".into(),
        snapshot_every: 40,
        history: 1_000_000,
        segment_bytes: 1 << 20,
        clock: Clock::system(),
    };
    let node = Arc::new(Node::start(config).await.unwrap());
    assert!(node.wait_ready(Duration::from_secs(10)).await);
    let snapshots = SnapshotStore::open(&dir.path().join("snapshots")).unwrap();
    let mut writers = Vec::new();
    for w in 0..8 {
        let node = node.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..150u32 {
                // Overwrites and deletes as well as new keys.
                let key = format!("w{w}/{}", i % 40);
                let command = if i % 7 == 3 {
                    KvCommand::Delete {
                        key,
                        if_revision: None,
                    }
                } else {
                    KvCommand::Put {
                        key,
                        value: format!("{w}-{i}").into_bytes().into(),
                        lease: None,
                        if_revision: None,
                    }
                };
                node.propose(command.into()).await.unwrap();
            }
        }));
    }
    // Read every snapshot file that appears while the writers run.
    let mut seen = Vec::new();
    while !writers.iter().all(|w| w.is_finished()) {
        if let Some(file) = snapshots.load_newest().unwrap() {
            if !seen.iter().any(|(p, _)| *p == file.path) {
                seen.push((file.path.clone(), file.body));
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for w in writers {
        w.await.unwrap();
    }
    assert!(seen.len() >= 3, "only {} snapshots seen", seen.len());
    let all = |revision| ListQuery {
        limit: usize::MAX,
        revision,
        ..ListQuery::default()
    };
    for (path, body) in &seen {
        let restored = Store::decode_snapshot(StoreConfig::default(), body).unwrap();
        let at = restored.revision();
        let then = node.state().read(|s| s.list(&all(Some(at)))).unwrap();
        assert_eq!(
            restored.list(&all(None)).unwrap().items,
            then.items,
            "{} is not the state at revision {at}",
            path.display()
        );
    }
}
