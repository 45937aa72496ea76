//! openraft's `RaftLogStorage` over keel-storage's segmented log.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, RaftLogReader, StorageIOError, Vote};

use crate::codec;
use crate::{StorageError, TypeConfig};

fn write_err(e: impl std::fmt::Display) -> StorageError {
    StorageIOError::write_logs(AnyError::error(e.to_string())).into()
}

#[derive(Default)]
struct Meta {
    vote: Option<Vote<u64>>,
    last_purged: Option<LogId<u64>>,
    committed: Option<LogId<u64>>,
}

/// The Raft log: entries in keel-storage's log, the vote and purge point in metadata files.
#[derive(Clone)]
pub struct LogStore {
    log: keel_storage::Log,
    dir: PathBuf,
    meta: Arc<Mutex<Meta>>,
}

impl LogStore {
    /// Opens the log under `dir`, recovering entries, vote and purge point.
    pub fn open(
        dir: &Path,
        opts: keel_storage::LogOptions,
    ) -> Result<(LogStore, keel_storage::OpenReport), keel_storage::Error> {
        let (log, report) = keel_storage::Log::open(&dir.join("log"), opts)?;
        let vote = keel_storage::read_meta(&dir.join("vote"))?;
        let purged = keel_storage::read_meta(&dir.join("purged"))?;
        let corrupt = |name: &str, e: StorageError| keel_storage::Error::Corrupt {
            path: dir.join(name),
            offset: 0,
            reason: e.to_string(),
        };
        let mut meta = Meta::default();
        if let Some(v) = vote {
            meta.vote = Some(codec::decode_vote(&v).map_err(|e| corrupt("vote", e))?);
        }
        if let Some(p) = purged {
            let id = codec::decode_log_id(&p).map_err(|e| corrupt("purged", e))?;
            log.purge(id.index)?;
            meta.last_purged = Some(id);
        }
        let store = LogStore {
            log,
            dir: dir.to_owned(),
            meta: Arc::new(Mutex::new(meta)),
        };
        Ok((store, report))
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Index of the last purged entry, if any.
    pub fn last_purged_index(&self) -> Option<u64> {
        self.meta().last_purged.map(|l| l.index)
    }

    /// The underlying log (to close it at shutdown).
    pub fn log(&self) -> &keel_storage::Log {
        &self.log
    }

    fn read_range(&self, start: u64, end: u64) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let records = self.log.read(start..end).map_err(codec::read_err)?;
        records
            .into_iter()
            .map(|(i, b)| codec::decode_entry(i, &b))
            .collect()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError> {
        let start = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(&e) => e + 1,
            Bound::Excluded(&e) => e,
            Bound::Unbounded => u64::MAX,
        };
        self.read_range(start, end)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id = self.meta().last_purged;
        let last_log_id = match self.log.last_index() {
            Some(i) => self.read_range(i, i + 1)?.pop().map(|e| e.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError> {
        keel_storage::write_meta(&self.dir.join("vote"), &codec::encode_vote(vote)).map_err(
            |e| StorageError::from(StorageIOError::write_vote(AnyError::error(e.to_string()))),
        )?;
        self.meta().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError> {
        Ok(self.meta().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<u64>>) -> Result<(), StorageError> {
        if let Some(c) = committed {
            metrics::gauge!("keel_raft_commit_index").set(c.index as f64);
        }
        self.meta().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError> {
        Ok(self.meta().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<(u64, Vec<u8>)> = entries
            .into_iter()
            .map(|e| (e.log_id.index, codec::encode_entry(&e)))
            .collect();
        self.log
            .append(records, move |r| callback.log_io_completed(r))
            .map_err(write_err)
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        self.log.truncate(log_id.index).map_err(write_err)
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError> {
        // Record the purge point durably before any file goes, so that a restart never finds
        // a log that starts later than it believes.
        keel_storage::write_meta(&self.dir.join("purged"), &codec::encode_log_id(&log_id))
            .map_err(write_err)?;
        self.meta().last_purged = Some(log_id);
        self.log.purge(log_id.index).map_err(write_err)
    }
}
