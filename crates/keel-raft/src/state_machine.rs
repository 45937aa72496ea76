//! openraft's `RaftStateMachine` over keel-state's `Store`, with snapshot files on disk.
//!
//! `apply` takes the committed entries openraft hands it and applies every request under one
//! hold of the write lock; then, holding only the read lock, it publishes the change sets and
//! the new revision; only then, with no lock held, does it answer the waiting requests, so a
//! client that hears "done" reads its write, and so does any watcher it tells.

use std::io;
use std::path::Path;
use std::sync::{Arc, RwLock};

use futures_util::{Stream, StreamExt};
use keel_state::{ChangeSet, Outcome, Store, StoreConfig};
use keel_storage::SnapshotStore;
use openraft::storage::{ApplyResponder, EntryResponder, RaftStateMachine};
use openraft::{EntryPayload, OptionalSend, RaftSnapshotBuilder};
use tokio::sync::{broadcast, watch};

use crate::codec;
use crate::{LogId, Snapshot, SnapshotData, SnapshotMeta, StoredMembership, TypeConfig};

/// How many applied change sets a slow subscriber may fall behind before it is told it lagged
/// (it then catches up from the store's history).
const CHANGE_FEED_CAPACITY: usize = 4096;

struct Applied {
    store: Store,
    last_applied: Option<LogId>,
    membership: StoredMembership,
}

struct Shared {
    applied: RwLock<Applied>,
    changes: broadcast::Sender<Arc<ChangeSet>>,
    revision: watch::Sender<u64>,
    /// Index of the last applied log entry (0 before any).
    applied_index: watch::Sender<u64>,
    /// Counts applied batches that held a command which may set an earlier deadline
    /// ([`keel_state::Command::sets_deadline`]).
    deadlines: watch::Sender<u64>,
}

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Applied> {
        self.applied.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Applied> {
        self.applied.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Read access to the applied state, shared by every request handler.
#[derive(Clone)]
pub struct StateReader(Arc<Shared>);

impl StateReader {
    /// Runs `f` on the applied store. Keep `f` short: applying waits while it runs.
    pub fn read<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        f(&self.0.read().store)
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

    /// Changes after every applied batch that held a command which may set a deadline earlier
    /// than any before it (a key lease granted, a task claimed or its lease extended): the
    /// leader's expiry duties wake on it, whichever node proposed the command.
    pub fn deadlines(&self) -> watch::Receiver<u64> {
        self.0.deadlines.subscribe()
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> Option<u64> {
        self.0.read().last_applied.map(|l| l.index)
    }

    /// Waits until the log entry at `index` has been applied. False if the state machine
    /// went away first.
    pub(crate) async fn wait_applied(&self, index: u64) -> bool {
        let mut rx = self.0.applied_index.subscribe();
        let reached = rx.wait_for(|&applied| applied >= index).await.is_ok();
        reached
    }
}

/// Gauges the state machine sets after every apply, registered once.
struct Gauges {
    applied_index: metrics::Gauge,
    revision: metrics::Gauge,
    keys: metrics::Gauge,
    leases: metrics::Gauge,
    tombstones: metrics::Gauge,
    /// How long applying waited for the state's write lock: the stall readers (and a
    /// snapshot's capture) cause.
    apply_lock_wait: metrics::Histogram,
}

impl Gauges {
    fn new() -> Gauges {
        Gauges {
            applied_index: metrics::gauge!("keel_raft_applied_index"),
            revision: metrics::gauge!("keel_revision"),
            keys: metrics::gauge!("keel_keys"),
            leases: metrics::gauge!("keel_leases"),
            tombstones: metrics::gauge!("keel_tombstones"),
            apply_lock_wait: metrics::histogram!("keel_apply_lock_wait_seconds"),
        }
    }
}

/// The state machine that openraft drives.
pub struct StateMachine {
    shared: Arc<Shared>,
    gauges: Gauges,
    snapshots: SnapshotStore,
    config: StoreConfig,
    builds: u64,
}

fn io_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

fn snapshot_err(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl StateMachine {
    /// Opens the state machine from the newest valid snapshot in `dir`, or empty.
    pub fn open(dir: &Path, config: StoreConfig) -> io::Result<StateMachine> {
        let snapshots = SnapshotStore::open(dir).map_err(io_err)?;
        let mut applied = Applied {
            store: Store::new(config.clone()),
            last_applied: None,
            membership: StoredMembership::default(),
        };
        for path in snapshots.files_newest_first().map_err(io_err)? {
            if let Some((meta, store)) = read_snapshot_file(&path, &config)? {
                applied.store = store;
                applied.last_applied = meta.last_log_id;
                applied.membership = meta.last_membership;
                tracing::info!(snapshot = %path.display(), revision = applied.store.revision(), "loaded snapshot");
                break;
            }
        }
        let (changes, _) = broadcast::channel(CHANGE_FEED_CAPACITY);
        let (revision, _) = watch::channel(applied.store.revision());
        let (applied_index, _) = watch::channel(applied.last_applied.map_or(0, |l| l.index));
        let (deadlines, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            applied: RwLock::new(applied),
            changes,
            revision,
            applied_index,
            deadlines,
        });
        Ok(StateMachine {
            shared,
            gauges: Gauges::new(),
            snapshots,
            config,
            builds: 0,
        })
    }

    /// A read handle on the applied state.
    pub fn reader(&self) -> StateReader {
        StateReader(self.shared.clone())
    }

    fn publish(&self, sets: Vec<Arc<ChangeSet>>, applied: &Applied, deadline_set: bool) {
        let store = &applied.store;
        if let Some(l) = applied.last_applied {
            self.gauges.applied_index.set(l.index as f64);
            self.shared.applied_index.send_replace(l.index);
        }
        self.gauges.revision.set(store.revision() as f64);
        self.gauges.keys.set(store.key_count() as f64);
        self.gauges.leases.set(store.lease_count() as f64);
        self.gauges.tombstones.set(store.tombstone_count() as f64);
        self.shared.revision.send_replace(store.revision());
        for set in sets {
            // No subscribers is fine: the history keeps the change for later readers.
            let _ = self.shared.changes.send(set);
        }
        if deadline_set {
            self.shared
                .deadlines
                .send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Builds a snapshot from the state captured when the builder was made: an O(1) clone of the
/// store (its maps are persistent), encoded and saved on a blocking thread while applying
/// goes on.
pub struct SnapshotBuilder {
    meta: SnapshotMeta,
    snapshot_id: String,
    store: Store,
    snapshots: SnapshotStore,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    type SnapshotData = SnapshotData;

    async fn build_snapshot(&mut self) -> io::Result<Snapshot> {
        let store = std::mem::replace(&mut self.store, Store::new(StoreConfig::default()));
        let meta = codec::encode_snapshot_meta(&self.meta, &self.snapshot_id);
        let snapshots = self.snapshots.clone();
        let (index, term) = self
            .meta
            .last_log_id
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        // Encoded straight into the file, off the state's lock, never whole in memory.
        let (path, bytes) = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let saved =
                snapshots.save_streaming(index, term, &meta, |w| store.write_snapshot(w).map(drop));
            metrics::histogram!("keel_snapshot_save_seconds")
                .record(started.elapsed().as_secs_f64());
            saved
        })
        .await
        .map_err(io_err)?
        .map_err(io_err)?;
        tracing::info!(index, bytes, "snapshot saved");
        Ok(Snapshot {
            meta: self.meta.clone(),
            snapshot: SnapshotData { path },
        })
    }
}

/// What applying one entry produced, to answer once the write lock is released.
struct Answer {
    responder: ApplyResponder<TypeConfig>,
    outcomes: Vec<Outcome>,
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotData = SnapshotData;
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> io::Result<(Option<LogId>, StoredMembership)> {
        let g = self.shared.read();
        Ok((g.last_applied, g.membership.clone()))
    }

    async fn apply<Strm>(&mut self, mut entries: Strm) -> io::Result<()>
    where
        Strm: Stream<Item = io::Result<EntryResponder<TypeConfig>>> + Unpin + OptionalSend,
    {
        // Gather what is ready first: the write lock is never held across an await.
        let mut batch = Vec::new();
        while let Some(item) = entries.next().await {
            batch.push(item?);
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut sets = Vec::new();
        let mut deadline_set = false;
        let waited = std::time::Instant::now();
        let mut g = self.shared.write();
        self.gauges
            .apply_lock_wait
            .record(waited.elapsed().as_secs_f64());
        for (entry, responder) in batch {
            g.last_applied = Some(entry.log_id);
            let outcomes = match entry.payload {
                EntryPayload::Blank => Vec::new(),
                EntryPayload::Normal(batch) => batch
                    .0
                    .iter()
                    .map(|request| {
                        deadline_set |= request.command.sets_deadline();
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
            if let Some(responder) = responder {
                answers.push(Answer {
                    responder,
                    outcomes,
                });
            }
        }
        let g = std::sync::RwLockWriteGuard::downgrade(g);
        self.publish(sets, &g, deadline_set);
        drop(g);
        for a in answers {
            a.responder.send(a.outcomes);
        }
        Ok(())
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.builds += 1;
        let g = self.shared.read();
        let snapshot_id = match g.last_applied {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.builds),
            None => format!("0-0-{}", self.builds),
        };
        let meta = SnapshotMeta {
            last_log_id: g.last_applied,
            last_membership: g.membership.clone(),
        };
        // Applying waits only while the store is cloned (O(1) for its persistent maps).
        let started = std::time::Instant::now();
        let store = g.store.clone();
        drop(g);
        metrics::histogram!("keel_snapshot_capture_seconds")
            .record(started.elapsed().as_secs_f64());
        SnapshotBuilder {
            meta,
            snapshot_id,
            store,
            snapshots: self.snapshots.clone(),
        }
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: SnapshotData,
    ) -> io::Result<()> {
        let config = self.config.clone();
        let snapshots = self.snapshots.clone();
        let (index, term) = meta
            .last_log_id
            .map_or((0, 0), |l| (l.index, l.leader_id.term));
        let store = tokio::task::spawn_blocking(move || {
            let (_, store) = read_snapshot_file(&snapshot.path, &config)?
                .ok_or_else(|| snapshot_err(format!("{} is damaged", snapshot.path.display())))?;
            // A file received from the leader becomes one of this node's own snapshots.
            if snapshot.path != snapshots.path_for(index, term) {
                snapshots
                    .adopt(&snapshot.path, index, term)
                    .map_err(io_err)?;
            }
            Ok::<_, io::Error>(store)
        })
        .await
        .map_err(io_err)??;
        let mut g = self.shared.write();
        g.store = store;
        g.last_applied = meta.last_log_id;
        g.membership = meta.last_membership.clone();
        let g = std::sync::RwLockWriteGuard::downgrade(g);
        // A whole new state: its deadlines may be any.
        self.publish(Vec::new(), &g, true);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> io::Result<Option<Snapshot>> {
        let snapshots = self.snapshots.clone();
        // The newest file whose checksum holds, verified by streaming through it.
        tokio::task::spawn_blocking(move || {
            for path in snapshots.files_newest_first().map_err(io_err)? {
                let reader = match SnapshotStore::open_reader(&path) {
                    Ok(r) => r,
                    Err(keel_storage::Error::Corrupt { .. }) => continue,
                    Err(e) => return Err(io_err(e)),
                };
                let meta = codec::decode_snapshot_meta(reader.meta());
                match reader.finish() {
                    Ok(()) => {
                        return Ok(Some(Snapshot {
                            meta: meta?,
                            snapshot: SnapshotData { path },
                        }))
                    }
                    Err(keel_storage::Error::Corrupt { .. }) => continue,
                    Err(e) => return Err(io_err(e)),
                }
            }
            Ok(None)
        })
        .await
        .map_err(io_err)?
    }
}

/// Reads the snapshot file at `path`, streaming its store out of it: its metadata and the
/// store, or None if the file is damaged (its checksum does not hold: it is skipped, with a
/// warning). An intact file that does not decode is an error: it was written by a format
/// this build cannot read, and starting without it would lose state.
fn read_snapshot_file(
    path: &Path,
    config: &StoreConfig,
) -> io::Result<Option<(SnapshotMeta, Store)>> {
    let mut reader = match SnapshotStore::open_reader(path) {
        Ok(r) => r,
        Err(e @ keel_storage::Error::Corrupt { .. }) => {
            tracing::warn!(error = %e, "skipping damaged snapshot file");
            return Ok(None);
        }
        Err(e) => return Err(io_err(e)),
    };
    let meta = codec::decode_snapshot_meta(reader.meta());
    let store = Store::read_snapshot(config.clone(), &mut reader);
    match reader.finish() {
        Ok(()) => {}
        Err(e @ keel_storage::Error::Corrupt { .. }) => {
            tracing::warn!(error = %e, "skipping damaged snapshot file");
            return Ok(None);
        }
        Err(e) => return Err(io_err(e)),
    }
    let meta = meta.map_err(|e| snapshot_err(format!("{}: {e}", path.display())))?;
    let store = store.map_err(|e| snapshot_err(format!("{}: {e}", path.display())))?;
    Ok(Some((meta, store)))
}
