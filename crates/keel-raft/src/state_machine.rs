//! openraft's `RaftStateMachine` over keel-state's `Store`, with snapshot files on disk.

use std::io::Cursor;
use std::path::Path;
use std::sync::{Arc, RwLock};

use keel_state::{ChangeSet, Outcome, Store, StoreConfig};
use keel_storage::SnapshotStore;
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageIOError, StoredMembership,
};
use tokio::sync::{broadcast, watch};

use crate::codec;
use crate::{StorageError, TypeConfig};

/// How many applied change sets a slow subscriber may fall behind before it is told it lagged
/// (it then catches up from the store's history).
const CHANGE_FEED_CAPACITY: usize = 4096;

struct Applied {
    store: Store,
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
}

struct Shared {
    applied: RwLock<Applied>,
    changes: broadcast::Sender<Arc<ChangeSet>>,
    revision: watch::Sender<u64>,
}

/// Read access to the applied state, shared by every request handler.
#[derive(Clone)]
pub struct StateReader(Arc<Shared>);

impl StateReader {
    /// Runs `f` on the applied store. Keep `f` short: applying waits while it runs.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        let g = self.0.applied.read().unwrap_or_else(|p| p.into_inner());
        f(&g.store)
    }

    /// The change sets applied from now on, in revision order. A receiver that falls more
    /// than a few thousand behind gets `Lagged` and must catch up from the store's history.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<ChangeSet>> {
        self.0.changes.subscribe()
    }

    /// The store revision, updated after every applied batch.
    pub fn revision(&self) -> watch::Receiver<u64> {
        self.0.revision.subscribe()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> Option<u64> {
        let g = self.0.applied.read().unwrap_or_else(|p| p.into_inner());
        g.last_applied.map(|l| l.index)
    }
}

/// The state machine that openraft drives.
pub struct StateMachine {
    shared: Arc<Shared>,
    snapshots: SnapshotStore,
    config: StoreConfig,
    builds: u64,
}

fn io_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

fn snapshot_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::read_snapshot(None, AnyError::error(e.to_string())).into()
}

impl StateMachine {
    /// Opens the state machine from the newest valid snapshot in `dir`, or empty.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<StateMachine, StorageError> {
        let snapshots = SnapshotStore::open(dir).map_err(io_err)?;
        let mut applied = Applied {
            store: Store::new(config.clone()),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some(file) = snapshots.load_newest().map_err(snapshot_err)? {
            let meta = codec::decode_snapshot_meta(&file.meta)?;
            applied.store = Store::decode_snapshot(config.clone(), &file.body)
                .map_err(|e| snapshot_err(format!("{}: {e}", file.path.display())))?;
            applied.last_applied = meta.last_log_id;
            applied.membership = meta.last_membership;
            tracing::info!(snapshot = %file.path.display(), revision = applied.store.revision(), "loaded snapshot");
        }
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        let (revision, _) = watch::channel(applied.store.revision());
        let shared = Arc::new(Shared {
            applied: RwLock::new(applied),
            changes,
            revision,
        });
        Ok(StateMachine {
            shared,
            snapshots,
            config,
            builds: 0,
        })
    }

    /// A read handle on the applied state.
    pub fn reader(&self) -> StateReader {
        StateReader(self.shared.clone())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.shared
            .applied
            .write()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, sets: Vec<Arc<ChangeSet>>, store: &Store) {
        metrics::gauge!("keel_revision").set(store.revision() as f64);
        metrics::gauge!("keel_keys").set(store.key_count() as f64);
        metrics::gauge!("keel_leases").set(store.lease_count() as f64);
        self.shared.revision.send_replace(store.revision());
        for set in sets {
            // No subscribers is fine: the history keeps the change for later readers.
            let _ = self.shared.changes.send(set);
        }
    }
}

/// Builds a snapshot from the state captured when the builder was made.
pub struct SnapshotBuilder {
    meta: SnapshotMeta<u64, BasicNode>,
    file: Vec<u8>,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError> {
        let file = std::mem::take(&mut self.file);
        let snapshots = self.snapshots.clone();
        let (index, term) = self
            .meta
            .last_log_id
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        let started = std::time::Instant::now();
        let file =
            tokio::task::spawn_blocking(move || snapshots.save(index, term, &file).map(|_| file))
                .await
                .map_err(io_err)?
                .map_err(io_err)?;
        metrics::histogram!("keel_snapshot_save_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(index, bytes = file.len(), "snapshot saved");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: Box::new(Cursor::new(file)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError> {
        let g = self
            .shared
            .applied
            .read()
            .unwrap_or_else(|p| p.into_inner());
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Vec<Outcome>>, StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut outcomes = Vec::new();
        let mut sets = Vec::new();
        let mut g = self.write();
        for entry in entries {
            g.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch
                    .0
                    .iter()
                    .map(|request| {
                        let applied = g.store.apply(request);
                        sets.extend(applied.changes);
                        applied.outcome
                    })
                    .collect(),
                EntryPayload::Membership(m) => {
                    g.membership = StoredMembership::new(Some(entry.log_id), m);
                    Vec::new()
                }
            };
            outcomes.push(outcome);
        }
        if let Some(l) = g.last_applied {
            metrics::gauge!("keel_raft_applied_index").set(l.index as f64);
        }
        let g = std::sync::RwLockWriteGuard::downgrade(g);
        self.publish(sets, &g.store);
        Ok(outcomes)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builds += 1;
        let g = self
            .shared
            .applied
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let snapshot_id = match g.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.builds),
            None => format!("0-0-{}", self.builds),
        };
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
            snapshot_id,
        };
        // Applying waits while the store is encoded under the read lock: measure that stall.
        let started = std::time::Instant::now();
        let body = g.store.encode_snapshot();
        drop(g);
        let encode = started.elapsed();
        metrics::histogram!("keel_snapshot_encode_seconds").record(encode.as_secs_f64());
        tracing::debug!(
            encode_ms = encode.as_millis() as u64,
            bytes = body.len(),
            "snapshot encoded"
        );
        let file = SnapshotStore::encode(&codec::encode_snapshot_meta(&meta), &body);
        SnapshotBuilder {
            meta,
            file,
            snapshots: self.snapshots.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let file = snapshot.into_inner();
        let (_, body) =
            SnapshotStore::decode(Path::new("<received snapshot>"), &file).map_err(snapshot_err)?;
        let store = Store::decode_snapshot(self.config.clone(), &body).map_err(snapshot_err)?;
        let (index, term) = meta
            .last_log_id
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        let snapshots = self.snapshots.clone();
        tokio::task::spawn_blocking(move || snapshots.save(index, term, &file))
            .await
            .map_err(io_err)?
            .map_err(io_err)?;
        let mut g = self.write();
        g.store = store;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        let g = std::sync::RwLockWriteGuard::downgrade(g);
        self.publish(Vec::new(), &g.store);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError> {
        let snapshots = self.snapshots.clone();
        let newest = tokio::task::spawn_blocking(move || snapshots.load_newest())
            .await
            .map_err(io_err)?
            .map_err(snapshot_err)?;
        let Some(file) = newest else {
            return Ok(None);
        };
        let meta = codec::decode_snapshot_meta(&file.meta)?;
        let bytes = SnapshotStore::encode(&file.meta, &file.body);
        Ok(Some(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}
