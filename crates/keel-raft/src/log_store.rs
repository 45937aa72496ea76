//! openraft's `RaftLogStorage` over keel-storage's segmented log.
//!
//! `append` writes the entries and returns at once; the log's flusher reports them durable to
//! openraft later (`IOFlushed`), so the next entries are written while a sync runs. The vote
//! and the purge point live in small metadata files beside the log.

use std::collections::VecDeque;
use std::fmt::Debug;
use std::io;
use std::ops::{Bound, RangeBounds};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader};

use crate::codec;
use crate::{Entry, LogId, TypeConfig, Vote};

fn io_err(e: keel_storage::Error) -> io::Error {
    io::Error::other(e.to_string())
}

/// Most entries, and bytes of their encoding, kept in [`Recent`].
const RECENT_ENTRIES: usize = 4096;
const RECENT_BYTES: usize = 16 << 20;

/// The entries appended last, as they were handed over: the state machine reads every entry
/// back to apply it, and finds it here without reading or decoding the log (a batch is
/// shared, so a copy costs a reference count).
#[derive(Default)]
struct Recent {
    entries: VecDeque<(Entry, usize)>,
    bytes: usize,
}

impl Recent {
    fn first(&self) -> Option<u64> {
        self.entries.front().map(|(e, _)| e.log_id.index)
    }

    fn push(&mut self, entry: Entry, bytes: usize) {
        let continues = self
            .entries
            .back()
            .is_none_or(|(last, _)| last.log_id.index + 1 == entry.log_id.index);
        if !continues {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += bytes;
        self.entries.push_back((entry, bytes));
        while self.entries.len() > RECENT_ENTRIES || self.bytes > RECENT_BYTES {
            match self.entries.pop_front() {
                Some((_, b)) => self.bytes -= b,
                None => break,
            }
        }
    }

    /// The entries `start..end`, if all of them are here.
    fn get(&self, start: u64, end: u64) -> Option<Vec<Entry>> {
        let first = self.first()?;
        let len = self.entries.len() as u64;
        if start < first || end > first + len || start > end {
            return None;
        }
        let range = (start - first) as usize..(end - first) as usize;
        Some(self.entries.range(range).map(|(e, _)| e.clone()).collect())
    }

    /// Forgets the entries after `last` (all, if `None`).
    fn truncate_after(&mut self, last: Option<u64>) {
        while let Some((e, b)) = self.entries.back() {
            if last.is_some_and(|l| e.log_id.index <= l) {
                break;
            }
            self.bytes -= *b;
            self.entries.pop_back();
        }
    }

    /// Forgets the entries up to and including `upto`.
    fn purge(&mut self, upto: u64) {
        while let Some((e, b)) = self.entries.front() {
            if e.log_id.index > upto {
                break;
            }
            self.bytes -= *b;
            self.entries.pop_front();
        }
    }
}

#[derive(Default)]
struct Meta {
    vote: Option<Vote>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// The Raft log: entries in keel-storage's log, the vote and purge point in metadata files.
#[derive(Clone)]
pub struct LogStore {
    log: keel_storage::Log,
    dir: PathBuf,
    meta: Arc<Mutex<Meta>>,
    recent: Arc<Mutex<Recent>>,
    commit_index: metrics::Gauge,
    last_index: metrics::Gauge,
}

impl LogStore {
    /// Opens the log under `dir`, recovering entries, vote and purge point.
    pub fn open(
        dir: &Path,
        opts: keel_storage::LogOptions,
    ) -> Result<(LogStore, keel_storage::OpenReport), keel_storage::Error> {
        Self::open_on(Arc::new(keel_storage::OsDisk), dir, opts)
    }

    /// Opens the log under `dir` with its segments on `disk` (the metadata files are always
    /// on the operating system's file system).
    pub fn open_on(
        disk: Arc<dyn keel_storage::Disk>,
        dir: &Path,
        opts: keel_storage::LogOptions,
    ) -> Result<(LogStore, keel_storage::OpenReport), keel_storage::Error> {
        std::fs::create_dir_all(dir).map_err(|source| keel_storage::Error::Io {
            context: "creating raft directory",
            path: dir.to_owned(),
            source,
        })?;
        let (log, report) = keel_storage::Log::open_on(disk, &dir.join("log"), opts)?;
        let corrupt = |name: &str, e: io::Error| keel_storage::Error::Corrupt {
            path: dir.join(name),
            offset: 0,
            reason: e.to_string(),
        };
        let mut meta = Meta::default();
        if let Some(v) = keel_storage::read_meta(&dir.join("vote"))? {
            meta.vote = Some(codec::decode_vote(&v).map_err(|e| corrupt("vote", e))?);
        }
        if let Some(p) = keel_storage::read_meta(&dir.join("purged"))? {
            let id = codec::decode_purged(&p).map_err(|e| corrupt("purged", e))?;
            log.purge(id.index)?;
            meta.last_purged = Some(id);
        }
        let store = LogStore {
            log,
            dir: dir.to_owned(),
            meta: Arc::new(Mutex::new(meta)),
            recent: Arc::default(),
            commit_index: metrics::gauge!("keel_raft_commit_index"),
            last_index: metrics::gauge!("keel_raft_last_log_index"),
        };
        Ok((store, report))
    }

    fn meta(&self) -> std::sync::MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn recent(&self) -> std::sync::MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Index of the last purged entry, if any.
    pub fn last_purged_index(&self) -> Option<u64> {
        self.meta().last_purged.map(|l| l.index)
    }

    /// The underlying log (to close it at shutdown).
    pub fn log(&self) -> &keel_storage::Log {
        &self.log
    }

    fn read_range(&self, start: u64, end: u64) -> io::Result<Vec<Entry>> {
        if let Some(entries) = self.recent().get(start, end) {
            return Ok(entries);
        }
        let records = self.log.read(start..end).map_err(io_err)?;
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
    ) -> io::Result<Vec<Entry>> {
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

    async fn read_vote(&mut self) -> io::Result<Option<Vote>> {
        Ok(self.meta().vote)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> io::Result<LogState<TypeConfig>> {
        let last_purged_log_id = self.meta().last_purged;
        let last_log_id = match self.log.last_index().map_err(io_err)? {
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

    async fn save_vote(&mut self, vote: &Vote) -> io::Result<()> {
        keel_storage::write_meta(&self.dir.join("vote"), &codec::encode_vote(vote))
            .map_err(io_err)?;
        self.meta().vote = Some(*vote);
        Ok(())
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> io::Result<()> {
        if let Some(c) = committed {
            self.commit_index.set(c.index as f64);
        }
        self.meta().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> io::Result<Option<LogId>> {
        Ok(self.meta().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> io::Result<()>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut records = Vec::new();
        let mut appended = Vec::new();
        for entry in entries {
            let bytes = codec::encode_entry(&entry);
            let index = entry.log_id.index;
            appended.push((entry, bytes.len()));
            records.push((index, bytes));
        }
        if let Some((last, _)) = records.last() {
            self.last_index.set(*last as f64);
        }
        self.log
            .append(records, move |r| callback.io_completed(r))
            .map_err(io_err)?;
        // Readable from now on, as openraft requires of a returned append.
        let mut recent = self.recent();
        for (entry, bytes) in appended {
            recent.push(entry, bytes);
        }
        Ok(())
    }

    async fn truncate_after(&mut self, last_log_id: Option<LogId>) -> io::Result<()> {
        let from = last_log_id.map_or(0, |l| l.index + 1);
        self.recent().truncate_after(last_log_id.map(|l| l.index));
        self.log.truncate(from).map_err(io_err)
    }

    async fn purge(&mut self, log_id: LogId) -> io::Result<()> {
        // Record the purge point durably before any file goes, so that a restart never finds
        // a log that starts later than it believes.
        keel_storage::write_meta(&self.dir.join("purged"), &codec::encode_purged(&log_id))
            .map_err(io_err)?;
        self.meta().last_purged = Some(log_id);
        self.recent().purge(log_id.index);
        self.log.purge(log_id.index).map_err(io_err)
    }
}
