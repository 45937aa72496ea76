//! Snapshots taken while writers run are consistent: each one, restored on its own, is
//! exactly the state at its revision.

use std::sync::Arc;
use std::time::Duration;

use keel_raft::{Node, NodeConfig};
use keel_state::{KvCommand, ListQuery, Store, StoreConfig};
use keel_storage::SnapshotStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_taken_while_eight_writers_run_are_the_state_at_their_revision() {
    let dir = tempfile::tempdir().unwrap();
    let config = NodeConfig {
        snapshot_every: 40,
        history: 1_000_000,
        ..NodeConfig::new(1, dir.path().to_owned(), "127.0.0.1:1".into())
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
    // Read the newest snapshot file each time a write is applied, until the writers are done
    // (at most a minute).
    let mut applied = node.state().revision();
    let all_written = futures_util::future::join_all(writers);
    tokio::pin!(all_written);
    let deadline = tokio::time::sleep(Duration::from_secs(60));
    tokio::pin!(deadline);
    let mut seen: Vec<(std::path::PathBuf, Vec<u8>)> = Vec::new();
    loop {
        tokio::select! {
            done = &mut all_written => {
                for w in done {
                    w.unwrap();
                }
                break;
            }
            changed = applied.changed() => changed.unwrap(),
            () = &mut deadline => panic!("the writers did not finish within a minute"),
        }
        if let Some(file) = snapshots.load_newest().unwrap() {
            if !seen.iter().any(|(p, _)| *p == file.path) {
                seen.push((file.path.clone(), file.body));
            }
        }
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
