//! openraft's storage conformance suite, run against keel's log and state-machine adapters.

#![allow(clippy::unwrap_used)] // tests fail loudly on any unexpected error

use keel_raft::{LogStore, StateMachine, TypeConfig};
use keel_state::StoreConfig;
use openraft::testing::log::{StoreBuilder, Suite};
use openraft::StorageError;

mod power_cut;
mod snapshot;

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError<TypeConfig>> {
        let dir = tempfile::tempdir().expect("temp dir");
        let opts = keel_storage::LogOptions {
            segment_bytes: 1 << 16,
            cache_bytes: 1 << 10,
        };
        let (log, _) = LogStore::open(&dir.path().join("raft"), opts).expect("open log");
        let sm = StateMachine::open(&dir.path().join("snapshots"), StoreConfig::default())
            .expect("open state machine");
        Ok((dir, log, sm))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder).await {
        panic!("storage suite failed: {e}");
    }
}
